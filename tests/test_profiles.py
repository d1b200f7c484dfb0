"""Device profiles (conf/device) and load traces: every shipped option loads, bad files fail in one line."""
from __future__ import annotations

import numpy as np
import pytest

from hode.profiles import FRAME4K_PIXELS, TILE_PIXELS, LoadTrace, load_profile
from hode.config import CONF_DIR, options
from hode.errors import ConfigError

from support.run import run_py

PAPER_DEVICES = {"gtx1070", "gtx1050", "jetson_nx", "jetson_tx2", "cpu"}


def test_paper_devices_are_shipped():
    assert PAPER_DEVICES <= set(options("device"))


@pytest.mark.parametrize("kind", options("device"))
def test_every_device_option_loads_with_sources(kind):
    p = load_profile(kind)
    assert {"yolov5n", "yolov5s", "yolov5m"} <= set(p.models)
    for m, t in p.models.items():
        assert 0 < t.tile_ms < t.frame4k_ms, (kind, m)
        assert t.source and t.source != "estimate", f"{kind}/{m}: say where the numbers come from"
    if kind != "cpu":  # a bigger model is never faster on the same device
        assert p.models["yolov5n"].tile_ms < p.models["yolov5s"].tile_ms < p.models["yolov5m"].tile_ms


def test_service_time_scales_with_pixels_and_noise_is_seeded():
    # the linear set: no fixed_ms stated, so the fixed part is the tile-4K line's intercept
    p = load_profile("jetson_nx", CONF_DIR / "device_sets" / "linear4k" / "jetson_nx.yaml")
    t = p.timing("yolov5s")
    assert p.base_s("yolov5s", TILE_PIXELS) == pytest.approx(t.tile_ms / 1000)
    assert p.base_s("yolov5s", FRAME4K_PIXELS) == pytest.approx(t.frame4k_ms / 1000)
    mid = p.base_s("yolov5s", (TILE_PIXELS + FRAME4K_PIXELS) // 2)
    assert t.tile_ms / 1000 < mid < t.frame4k_ms / 1000
    # below a tile: the line's fixed per-inference part stays (half a tile costs more than half)
    fixed_ms = t.tile_ms - (t.frame4k_ms - t.tile_ms) / (FRAME4K_PIXELS - TILE_PIXELS) * TILE_PIXELS
    assert fixed_ms > 0
    assert p.base_s("yolov5s", TILE_PIXELS // 2) == pytest.approx((fixed_ms + (t.tile_ms - fixed_ms) / 2) / 1000)
    assert p.base_s("yolov5s", 1) == pytest.approx(fixed_ms / 1000, rel=1e-3)
    shipped = load_profile("jetson_nx")  # 4K calibrated, fixed part stated: small items cost the same
    assert shipped.timing("yolov5s").fixed_ms == pytest.approx(fixed_ms, abs=1e-3)
    assert shipped.base_s("yolov5s", TILE_PIXELS // 2) == pytest.approx(p.base_s("yolov5s", TILE_PIXELS // 2), rel=1e-4)


def test_a_batched_item_skips_the_fixed_per_inference_cost():
    p = load_profile("jetson_nx")
    fixed = p.fixed_ms("yolov5s") / 1000
    for px in (TILE_PIXELS // 3, TILE_PIXELS, FRAME4K_PIXELS):
        assert p.base_s("yolov5s", px, batched=True) == pytest.approx(p.base_s("yolov5s", px) - fixed)
    cpu = load_profile("cpu")  # measured, no fixed part (its tile-4K line has a negative intercept)
    assert cpu.fixed_ms("yolov5n") == 0 and cpu.base_s("yolov5n", TILE_PIXELS, batched=True) == cpu.base_s("yolov5n", TILE_PIXELS)


def test_a_measured_profile_without_fixed_cost_scales_small_items_in_proportion():
    from hode.profiles import profile_from_dict
    p = profile_from_dict({"models": {"yolov5n": {"tile_ms": 50, "frame4k_ms": 1300, "source": "m"}}}, "cpu-like")
    assert p.base_s("yolov5n", TILE_PIXELS // 4) == pytest.approx(0.050 / 4)


def test_seeded_noise():
    p = load_profile("jetson_nx")
    a = [p.service_s("yolov5s", TILE_PIXELS, np.random.default_rng(1)) for _ in range(2)]
    b = p.service_s("yolov5s", TILE_PIXELS, np.random.default_rng(2))
    assert a[0] == a[1] != b


BAD = {
    "no_models": "name: x\n",
    "negative": "models:\n  yolov5n: {tile_ms: -1, frame4k_ms: 10}\n",
    "missing_key": "models:\n  yolov5n: {tile_ms: 5}\n",
    "unknown_key": "models:\n  yolov5n: {tile_ms: 5, frame4k_ms: 10, speed: 3}\n",
    "text_number": "models:\n  yolov5n: {tile_ms: fast, frame4k_ms: 10}\n",
    "noise": "models:\n  yolov5n: {tile_ms: 5, frame4k_ms: 10, noise: 2}\n",
    "not_yaml": "models: [unclosed\n  - {\n",
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_profile_file_is_one_line_config_error(tmp_path, case):
    f = tmp_path / f"{case}.yaml"
    f.write_text(BAD[case])
    with pytest.raises(ConfigError) as e:
        load_profile(case, f)
    assert "\n" not in str(e.value) and str(f) in str(e.value)


def test_unknown_device_and_model_name_the_options():
    with pytest.raises(ConfigError, match="available: .*gtx1070"):
        load_profile("gtx9999")
    with pytest.raises(ConfigError, match="no timing for model 'yolov5x'"):
        load_profile("gtx1070").timing("yolov5x")


def test_load_trace_factors_and_validation():
    tr = LoadTrace([{"node": "a", "start": 10, "end": 20, "factor": 3.0},
                    {"node": "a", "start": 15, "end": 30, "factor": 2.0}])
    assert [tr.factor("a", f) for f in (9, 10, 15, 20, 30)] == [1.0, 3.0, 6.0, 2.0, 1.0]
    assert tr.factor("b", 15) == 1.0
    tr.check_nodes(["a", "b"])
    with pytest.raises(ConfigError, match="node 'a', not in the topology"):
        tr.check_nodes(["b"])
    for bad in ({"node": "a", "start": 5, "end": 5, "factor": 2}, {"node": "a", "start": 0, "end": 5, "factor": 0},
                {"node": "a", "start": 0, "end": 5}, "a:0:5:2"):
        with pytest.raises(ConfigError):
            LoadTrace([bad])


def test_task_profile_writes_a_loadable_profile(tmp_path):
    from hode.tasks.profile import to_yaml

    timings = {"yolov5n": {"tile_ms": 12.5, "frame4k_ms": 300.0, "noise": 0.04, "source": "measured on 'cpu'"}}
    f = tmp_path / "box.yaml"
    f.write_text(to_yaml("box", "measured by task=profile on a test", timings))
    p = load_profile("box", f)
    assert p.name == "box" and p.timing("yolov5n").tile_ms == 12.5 and "measured" in p.timing("yolov5n").source


def test_the_shipped_paper_profiles_are_the_linear_set_calibrated_to_the_papers_infer4k(tmp_path):
    from experiments.calibrate_4k import LINEAR_SET, calibration_factor, write_set
    from hode.config import build, load_option

    k = calibration_factor("paper5", 6.02)
    assert 3 < k < 5  # linear-in-pixels 4K figures are ~4x faster than the paper's Infer-4K implies
    write_set(k, tmp_path, 6.02, "paper5")
    topo = build(load_option("topology", "paper5"))
    rate = sum(1000 / load_profile(n.device).timing(n.model).frame4k_ms for n in topo.nodes)
    assert rate == pytest.approx(6.02, rel=1e-3)  # the shipped profiles give Infer-4K the paper's rate
    for n in topo.nodes:
        shipped, linear = load_profile(n.device), load_profile(n.device, LINEAR_SET / f"{n.device}.yaml")
        # the committed profiles are what the script writes: nobody edited a number by hand
        assert (tmp_path / f"{n.device}.yaml").read_text() == (CONF_DIR / "device" / f"{n.device}.yaml").read_text()
        for px in (TILE_PIXELS, TILE_PIXELS // 3):  # tiles and small crops cost what the linear fit says
            assert shipped.base_s(n.model, px) == pytest.approx(linear.base_s(n.model, px), rel=1e-3)
    assert not (tmp_path / "cpu.yaml").exists()  # a measured profile is not calibrated


def test_fixed_cost_from_one_batch_hand_computed():
    from hode.tasks.profile import fixed_from_batch

    # fixed 4 + per-tile 2: one tile 6 ms, a batch of 8 costs 4 + 16 = 20 ms
    assert fixed_from_batch(6.0, 20.0, 8) == pytest.approx(4.0)
    assert fixed_from_batch(6.0, 48.0, 8) == 0.0  # batching bought nothing (a busy CPU): no fixed part
    assert fixed_from_batch(6.0, 4.0, 8) == 6.0  # clipped: never more than a tile


@pytest.mark.slow
def test_task_profile_times_a_real_batch_and_writes_its_fixed_cost(tmp_path):
    """Real yolov5n on this machine: one tile, one batch of two, one 4K frame; the YAML loads."""
    from omegaconf import OmegaConf

    from hode.config import compose_config
    from hode.tasks.profile import measure, to_yaml
    from hode.data.synthetic import SyntheticCrowd

    cfg = compose_config(["task=profile"])
    frame = next(iter(SyntheticCrowd(frames=1, seed=0))).image
    m = measure("yolov5n", cfg.detector, frame, warmup=1, runs=2, frame4k_runs=1, batch=2)
    assert m["batch"] == 2 and len(m["batch_runs_ms"]) == 1 and 0 <= m["fixed_ms"] <= m["tile_ms"]
    m["source"] = "test"
    f = tmp_path / "box.yaml"
    f.write_text(to_yaml("box", "test", {"yolov5n": m}))
    assert load_profile("box", f).fixed_ms("yolov5n") == pytest.approx(m["fixed_ms"])
    assert OmegaConf.load(f).models.yolov5n.fixed_ms == m["fixed_ms"]


@pytest.mark.slow
@pytest.mark.parametrize("batch", [1, -2, "eight"])
def test_task_profile_refuses_a_bad_batch(batch, tmp_path):
    p, _ = run_py(tmp_path, "task=profile", f"task.batch={batch}", "logger=none", expect_rc=None, timeout=120)
    assert p.returncode != 0 and "task.batch must be 0" in p.stderr.strip().splitlines()[-1]
