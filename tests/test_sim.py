"""runner=sim: FIFO queues on a virtual clock, load traces, determinism, camera-visible node states.

These tests use hand-made items on fixed profiles; their detections are put in the cache first, so
no detector runs. tests/test_sim_detections.py checks the real detections against runner=inline.
"""
from __future__ import annotations

import time

import numpy as np
import pytest

from hode.profiles import TILE_PIXELS
from hode.cluster.sim import SimBackend
from hode.cluster.topology import Topology
from hode.config import build, options
from hode.errors import ConfigError
from hode.types import Detections, WorkItem

from conftest import compose_config

TILE = (0, 0, 608, 704)  # a full padded tile: TILE_PIXELS pixels
assert (TILE[2] - TILE[0]) * (TILE[3] - TILE[1]) == TILE_PIXELS


def write_profiles(d, noise: float = 0.0) -> str:
    d.mkdir(exist_ok=True)
    for name, ms in (("fast", 100.0), ("slow", 250.0)):
        (d / f"{name}.yaml").write_text(f"name: {name}\nmodels:\n  yolov5n: {{tile_ms: {ms}, frame4k_ms: {ms * 10}, "
                                        f"noise: {noise}, source: test}}\n")
    return str(d)


def make_sim(tmp_path, noise=0.0, seed=0, load_trace=(), **kw) -> SimBackend:
    topo = Topology([{"name": "a", "model": "yolov5n", "device": "fast"},
                     {"name": "b", "model": "yolov5n", "device": "slow"}], name="pair")
    sim = SimBackend(topo, dataset="handmade", seed=seed, load_trace=list(load_trace), cache_dir=str(tmp_path / "cache"),
                     profiles_dir=write_profiles(tmp_path / f"profiles{noise}", noise), **kw)
    sim.start()
    return sim


def items(frame: int, n: int) -> list[WorkItem]:
    out = []
    for k in range(n):
        w = (TILE[0] + k, TILE[1], TILE[2] + k, TILE[3])  # same size, distinct windows
        out.append(WorkItem(frame, k, w, None, "tile"))
    return out


def submit(sim: SimBackend, frame: int, assignment: list[int]) -> list[WorkItem]:
    its = items(frame, len(assignment))
    store = sim.cache.store("yolov5n")
    for it in its:  # cached detections: no detector, no pixels needed
        store.put(frame, it.window, Detections([[1, 2, 3, 4 + it.item_id]], [0.9]))
    sim.submit(frame, its, assignment)
    return its


def drain(sim: SimBackend) -> list:
    out = []
    while (got := sim.poll()):
        out.append([(c.node, c.frame_id, c.item_id, round(c.started, 9), round(c.finished, 9), round(sim.now(), 9))
                    for c in got])
    return out


def test_fifo_queues_give_exact_completion_times(tmp_path):
    sim = make_sim(tmp_path)
    assert sim.now() == 0.0
    submit(sim, 0, [0, 0, 1, 0])  # node a: 0.1 s per tile, node b: 0.25 s
    c = sim.poll()
    assert [(x.node, x.item_id, x.submitted, x.started, x.finished) for x in c] == [(0, 0, 0.0, 0.0, pytest.approx(0.1))]
    assert sim.now() == pytest.approx(0.1)
    assert sim.poll(timeout=0.05) == [] and sim.now() == pytest.approx(0.15)  # waits at most the timeout
    submit(sim, 1, [1])  # at 0.15 behind b's first tile: starts at 0.25, not at 0.15
    got = drain(sim)
    assert got == [[(0, 0, 1, 0.1, 0.2, 0.2)], [(1, 0, 2, 0.0, 0.25, 0.25)], [(0, 0, 3, 0.2, 0.3, 0.3)],
                   [(1, 1, 0, 0.25, 0.5, 0.5)]]
    assert sim.poll() == [] and sim.now() == pytest.approx(0.5)  # nothing in flight: the clock stays
    st = sim.stats()
    assert [s["items"] for s in st] == [3, 2] and [s["busy_s"] for s in st] == [pytest.approx(0.3), pytest.approx(0.5)]


def test_batched_inference_spares_every_item_but_a_frames_first_its_fixed_cost(tmp_path):
    sim = make_sim(tmp_path, batched_inference=True)
    fixed = sim.core.profiles[0].fixed_ms("yolov5n") / 1000  # the tile-4K line's intercept: 51 ms of 100
    assert 0.04 < fixed < 0.06
    submit(sim, 0, [0, 0, 1, 0])  # node a gets three tiles of frame 0 in one batch, node b one
    a = [c for batch in drain(sim) for c in batch if c[0] == 0]
    assert [round(c[4] - c[3], 6) for c in a] == [0.1, round(0.1 - fixed, 6), round(0.1 - fixed, 6)]
    submit(sim, 1, [0])  # a new frame is a new batch: its first tile pays the fixed cost again
    (c,), = drain(sim)
    assert c[4] - c[3] == pytest.approx(0.1)
    (tmp_path / "plain").mkdir()
    plain = make_sim(tmp_path / "plain")
    submit(plain, 0, [0, 0, 1, 0])
    assert [round(c[4] - c[3], 6) for batch in drain(plain) for c in batch if c[0] == 0] == [0.1, 0.1, 0.1]
    (tmp_path / "bad").mkdir()
    with pytest.raises(ConfigError, match="batched_inference must be true or false"):
        make_sim(tmp_path / "bad", batched_inference="yes")


def test_detections_are_replayed_from_the_cache(tmp_path):
    sim = make_sim(tmp_path)
    its = submit(sim, 0, [0, 1])
    done = {c.item_id: c for c in sim.poll() + sim.poll()}
    assert [done[k].detections.boxes[0, 3] for k in (0, 1)] == [4, 5]
    assert sim.cache.misses == 0 and sim.cache.hits == len(its)


def test_states_are_what_the_camera_measured(tmp_path):
    sim = make_sim(tmp_path, load_trace=[{"node": "b", "start": 0, "end": 5, "factor": 2.0}])
    st = sim.states()
    assert [s.queue for s in st] == [0, 0] and [s.speed for s in st] == [1.0, 1.0]  # nothing measured yet
    assert [s.true_speed for s in st] == [pytest.approx(10.0), pytest.approx(2.0)]  # oracle: profile x trace
    submit(sim, 0, [0, 0, 1])
    assert [s.queue for s in sim.states()] == [2, 1]  # sent, not yet returned (even if some started)
    sim.poll()
    st = sim.states()
    assert [s.queue for s in st] == [1, 1] and st[0].speed == pytest.approx(10.0) and st[1].speed == 1.0


def test_load_trace_multiplies_service_times_of_its_frames(tmp_path):
    sim = make_sim(tmp_path, load_trace=[{"node": "a", "start": 1, "end": 2, "factor": 3.0}])
    for f in range(3):
        submit(sim, f, [0])
        drain(sim)
    # frames 0, 1, 2 on node a: 0.1, 0.3 (slowed three times), 0.1 s
    assert sim.now() == pytest.approx(0.5)
    assert sim.stats()[0]["busy_s"] == pytest.approx(0.5)


def test_noise_is_deterministic_for_a_seed(tmp_path):
    def run(seed):
        sim = make_sim(tmp_path, noise=0.2, seed=seed)
        submit(sim, 0, [0, 1, 0, 1, 0])
        submit(sim, 1, [1, 0, 0])
        return drain(sim)

    a, b, c = run(7), run(7), run(8)
    assert a == b and a != c
    finishes = [x[4] for step in a for x in step if x[0] == 0]
    assert len(set(np.round(np.diff([0.0] + finishes), 6))) > 1  # noisy, not all 0.1


def test_camera_overhead_fixed_and_measured(tmp_path):
    sim = make_sim(tmp_path, camera_overhead=0.05)
    submit(sim, 0, [0])
    (c,) = sim.poll()
    assert (c.submitted, c.started, c.finished) == (0.0, pytest.approx(0.05), pytest.approx(0.15))
    sim = make_sim(tmp_path, camera_overhead="measured")
    t0 = sim.now()
    time.sleep(0.05)  # the camera computing: the virtual clock runs with it
    assert sim.now() - t0 >= 0.05
    with pytest.raises(ConfigError, match="camera_overhead"):
        make_sim(tmp_path, camera_overhead="sometimes")


def test_bad_assignment_and_trace_node_are_config_errors(tmp_path):
    sim = make_sim(tmp_path)
    with pytest.raises(ConfigError, match="assignment names node 5"):
        submit(sim, 0, [5])
    with pytest.raises(ConfigError, match="node 'c', not in the topology"):
        make_sim(tmp_path, load_trace=[{"node": "c", "start": 0, "end": 2, "factor": 2.0}])


@pytest.mark.parametrize("runner", [r for r in options("runner") if r.startswith("sim")])
def test_every_sim_runner_option_builds_on_paper5(runner, tmp_path):
    cfg = compose_config([f"runner={runner}", "topology=paper5", f"runner.backend.cache_dir={tmp_path}"])
    topo = build(cfg.topology)
    sim = build(cfg.runner.backend, topology=topo, detector=cfg.detector, _recursive_=False)
    assert isinstance(sim, SimBackend) and sim.now() == 0.0 and len(sim.states()) == 5
    assert cfg.runner.in_flight >= 1 and cfg.runner.history >= 1
    if cfg.runner.load_trace:
        e = cfg.runner.load_trace[0]
        i = [n.name for n in topo].index(e.node)
        assert sim.core.factor(i, e.start) == e.factor and sim.core.factor(i, e.end) == 1.0


def test_dynamic_trace_on_a_topology_without_its_nodes_fails_in_one_line(tmp_path):
    cfg = compose_config(["runner=sim_dynamic", "topology=local2", f"runner.backend.cache_dir={tmp_path}"])
    with pytest.raises(ConfigError, match="not in the topology"):
        build(cfg.runner.backend, topology=build(cfg.topology), detector=cfg.detector, _recursive_=False)
