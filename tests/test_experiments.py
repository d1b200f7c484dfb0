"""Experiment definitions and sweeps: every figure's config composes at both sizes, a real tiny
multirun (joblib launcher) records its failing job and keeps the other's results, resume skips
finished jobs, one W&B group per sweep."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from hode.sweep import SweepJob, job_overrides
from hode.config import CONF_DIR, build, options

from support.run import run_py

FIGURES = ["fig2", "fig3", "fig8", "fig9", "fig11", "fig11_real", "fig12", "fig12_real", "fig13"]
VTEST_FRAMES = 795  # hode/assets.py: vtest.avi, 795 frames at 10 fps
METHODS = sorted(p.stem for p in (CONF_DIR / "experiment" / "method").glob("*.yaml"))


def compose_with_hydra(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=overrides, return_hydra_config=True)
    OmegaConf.set_struct(cfg, False)
    return cfg


def test_the_contract_names_exist() -> None:
    assert set(FIGURES + ["paper", "bench"]) <= set(options("experiment"))
    assert {"hode", "fourk", "elf", "salbs", "oracle"} <= set(METHODS)


@pytest.mark.parametrize("name", FIGURES + ["paper", "bench", "smoke"])
@pytest.mark.parametrize("size", ["quick", "full"])
def test_every_experiment_composes_at_both_sizes(name: str, size: str) -> None:
    cfg = compose_with_hydra([f"+experiment={name}", f"experiment.size={size}"])
    assert cfg.experiment.name == name
    assert set(cfg.experiment.get("sizes", {"quick": 0, "full": 0})) >= {"quick", "full"}
    assert str(cfg.hydra.sweep.dir).startswith(f"multirun/{name}/") and str(cfg.hydra.sweep.dir).endswith(size)
    assert "sweep_summary" in cfg.hydra.callbacks
    hydra = {k: OmegaConf.to_container(cfg.hydra[k], resolve=True) for k in ("sweeper", "launcher")}
    del cfg["hydra"]
    OmegaConf.to_container(cfg, resolve=True)  # every size-dependent value resolves
    plain = {"hydra": hydra}
    params = plain["hydra"]["sweeper"]["params"] or {}
    for key, value in params.items():
        for choice in str(value).split(","):
            if key == "+experiment/method":
                assert choice in METHODS
            elif (CONF_DIR / key).is_dir():  # a config group swept by option name
                assert choice in options(key), (key, choice)
    if plain["hydra"]["launcher"]["_target_"].endswith("JoblibLauncher"):
        assert 1 <= plain["hydra"]["launcher"]["n_jobs"] <= 2  # a 2-core machine
    if name in ("fig3",):  # timings: never two jobs at once
        assert not plain["hydra"]["launcher"]["_target_"].endswith("JoblibLauncher")


def test_sizes_change_the_work() -> None:
    quick = compose_with_hydra(["+experiment=fig11", "+experiment/method=hode"])
    full = compose_with_hydra(["+experiment=fig11", "+experiment/method=hode", "experiment.size=full"])
    assert quick.dataset.frames < full.dataset.frames
    assert (quick.scheduler.name, quick.filter.name, quick.topology.name, quick.runner.name) == ("dqn", "st", "paper5", "sim")
    f13 = compose_with_hydra(["+experiment=fig13", "+experiment/method=salbs"])
    assert f13.runner.name == "sim_dynamic" and max(e.end for e in f13.runner.load_trace) <= f13.dataset.frames
    f8 = compose_with_hydra(["+experiment=fig8"])
    assert f8.task.name == "train_filter" and len(f8.task.seeds.train) < 9


@pytest.mark.parametrize("method", METHODS)
def test_method_options_build(method: str) -> None:
    cfg = compose_with_hydra(["+experiment=fig11", f"+experiment/method={method}", "logger=none"])
    assert cfg.experiment.method == method
    missing = [str(c) for c in (cfg.filter.get("ckpt"), cfg.scheduler.get("ckpt")) if c and not Path(str(c)).exists()]
    if missing:  # the shipped filter / DQN checkpoints are made by the filter and scheduler training tasks
        pytest.skip(f"shipped weights missing: {missing}")
    build(cfg.filter)
    build(cfg.scheduler)


def _frame_numbers(ds) -> list[int]:
    """Footage frame numbers a dataset=video config reads (start, every, frames) from vtest.avi."""
    available = -(-(VTEST_FRAMES - ds.start) // ds.every)
    n = min(ds.frames, available) if ds.frames else available
    return [ds.start + k * ds.every for k in range(n)]


@pytest.mark.parametrize("method", ["fourk", "elf", "hode"])
def test_fig11_real_brings_the_coco_tiers_and_reaches_the_truth_frames(method: str) -> None:
    """dataset=video overridden inside an experiment still swaps in the COCO tiers and detector; the
    quick size reads at least 5 of the hand-checked truth frames (only those are scored), full all 14."""
    from hode.data.coco import load_truth

    for size, least in (("quick", 5), ("full", 14)):
        cfg = compose_with_hydra(["+experiment=fig11_real", f"+experiment/method={method}", f"experiment.size={size}"])
        del cfg["hydra"]
        cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
        assert (cfg.models.large, cfg.models.medium, cfg.models.small) == ("yolo11n_x2", "yolo11n_x2", "yolo11n")
        assert {n.model for n in cfg.topology.nodes} == {"yolo11n_x2", "yolo11n"} and cfg.topology.name == "paper5"
        assert cfg.detector.name == "yolo11n" and cfg.runner.name == "sim" and cfg.experiment.method == method
        ds = cfg.dataset
        assert ds._target_.endswith("VideoSource") and ds.path == "asset:vtest.avi"
        assert (ds.width, ds.height) == (2880, 2160)
        truth = set(load_truth(ds.gt))
        scored = sorted(truth & set(_frame_numbers(ds)))
        assert len(scored) >= least, (size, scored)
        assert 60 % ds.every == 0  # every truth frame (0, 60, ...) inside the span is read
    assert len(truth) == 14 and scored == sorted(truth)


def test_fig12_real_evaluates_the_filters_on_the_footage() -> None:
    cfg = compose_with_hydra(["+experiment=fig12_real"])
    assert (cfg.task.name, cfg.task.source, cfg.task.split) == ("eval_filter", "video", "all")
    assert cfg.dataset.path == "asset:vtest.avi" and (cfg.dataset.width, cfg.dataset.height) == (2880, 2160)
    assert cfg.filter.name == "st" and cfg.models.large == "yolo11n_x2" and Path(cfg.dataset.gt).is_file()
    assert list(cfg.task.filters) == ["st", "comp1", "comp2", "comp3", "oracle", "none"]
    full = compose_with_hydra(["+experiment=fig12_real", "experiment.size=full"])
    assert full.dataset.frames is None and list(full.task.guard_filters) == ["st", "comp1"]


def test_eval_filter_on_video_refuses_other_datasets_and_a_seed_split() -> None:
    from hode.errors import ConfigError
    from hode.filter.video_eval import video_sequences

    cfg = compose_with_hydra(["task=eval_filter"])
    with pytest.raises(ConfigError, match="task.source=video needs dataset=video, got hode.data.synthetic"):
        video_sequences(cfg.dataset, "all")
    with pytest.raises(ConfigError, match="task.split must be 'all' .* or 'time' .* got 'seed'"):
        video_sequences(cfg.dataset, "seed")


def test_paper_runs_each_real_figure_right_after_its_synthetic_twin() -> None:
    figs = list(compose_with_hydra(["+experiment=paper"]).experiment.figures)
    assert figs.index("fig11_real") == figs.index("fig11") + 1 and figs.index("fig12_real") == figs.index("fig12") + 1


def test_fourk_method_runs_the_detector_at_native_4k() -> None:
    cfg = compose_with_hydra(["+experiment=fig11", "+experiment/method=fourk"])
    assert cfg.scheduler.name == "fourk" and cfg.detector.imgsz == 3840


@pytest.mark.parametrize("imgsz", [640, 2048])
def test_fig2_letterboxes_the_whole_frame_to_each_imgsz(imgsz: int) -> None:
    """The detector's native-scale rule (crops larger than imgsz run at their own size) would run every
    Fig. 2 job at 3840 and draw a flat line; the sweep turns it off."""
    cfg = compose_with_hydra(["+experiment=fig2", "detector=yolov5s", f"detector.imgsz={imgsz}"])
    assert build(cfg.detector)._imgsz_for((2160, 3840, 3)) == imgsz


def test_sweep_job_groups_tags_and_identifies_jobs(tmp_path: Path) -> None:
    cfg = OmegaConf.create({"experiment": {"name": "fig11", "size": "quick", "resume": True},
                            "logger": {"_target_": "hode.logger.WandbLogger", "group": None},
                            "task": {"name": "run"}})
    job = SweepJob(cfg, tmp_path / "3", tmp_path, 3, ["+experiment=fig11", "scheduler=dqn", "experiment.resume=true"])
    job.prepare()
    assert cfg.logger.group == f"fig11-{tmp_path.name}" and list(cfg.logger.tags) == ["fig11", "size=quick"]
    null = OmegaConf.create({"logger": {"_target_": "hode.logger.NullLogger"}})
    SweepJob(null, tmp_path / "0", tmp_path, 0, []).prepare()
    assert "group" not in null.logger and "tags" not in null.logger  # NullLogger takes no such arguments
    assert not job.finished_before()  # nothing recorded yet
    job.ok()
    assert not job.finished_before()  # ok but no results.json: run again
    (tmp_path / "3" / "results.json").write_text("{}")
    assert job.finished_before()
    other = SweepJob(cfg, tmp_path / "3", tmp_path, 3, ["+experiment=fig11", "scheduler=salbs"])
    assert not other.finished_before()  # another job's results in that dir
    assert job_overrides(["b=1", "experiment.resume=true", "a=2"]) == ["a=2", "b=1"]


def test_job_json_never_keeps_a_secret_typed_on_the_command_line(tmp_path: Path) -> None:
    cfg = OmegaConf.create({"experiment": {"name": "fig11", "resume": True}, "task": {"name": "run"}})
    typed = ["scheduler=dqn", "+remote.password=hunter2", "runner.backend.token=abc123", "+wandb_api_key=k-9"]
    job = SweepJob(cfg, tmp_path / "0", tmp_path, 0, typed)
    job.ok()
    text = (tmp_path / "0" / "job.json").read_text()
    assert not any(secret in text for secret in ("hunter2", "abc123", "k-9"))
    assert json.loads(text)["overrides"] == ["scheduler=dqn", "+remote.password=***", "runner.backend.token=***",
                                             "+wandb_api_key=***"]
    (tmp_path / "0" / "results.json").write_text("{}")
    assert SweepJob(cfg, tmp_path / "0", tmp_path, 0, typed).finished_before()  # resume still recognises the job


def _sweep(tmp: Path, *extra: str) -> subprocess.CompletedProcess:
    return run_py(None, "-m", "+experiment=smoke", "logger=none", f"hydra.sweep.dir={tmp}", "dataset.width=512",
                  "dataset.height=384", "dataset.frames=1", "hydra.sweeper.params.seed=0", "tiling.pad=[16,16],[600,10]",
                  *extra, expect_rc=None, timeout=240)[0]


@pytest.mark.slow
def test_real_sweep_records_the_failing_job_and_resumes(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    p = _sweep(sweep)  # joblib launcher, two jobs in parallel; job 1 has an impossible padding
    assert p.returncode == 1, p.stdout[-2000:] + p.stderr[-2000:]  # the summary says a job failed
    ok, bad = json.loads((sweep / "0" / "job.json").read_text()), json.loads((sweep / "1" / "job.json").read_text())
    assert ok["status"] == "ok" and bad["status"] == "failed"
    assert bad["error"] == "tiling.pad [600, 10] must be smaller than tiling.tile 512"
    assert "tiling.pad=[600,10]" in bad["overrides"] and bad["experiment"] == "smoke"
    assert json.loads((sweep / "0" / "results.json").read_text())["frames"] == 1
    assert not (sweep / "1" / "results.json").exists()
    assert "1 ok, 1 failed" in p.stdout and "tiling.pad [600, 10]" in p.stdout

    from reports.__main__ import main as reports_main

    assert reports_main([str(sweep), "--wandb", "off"]) == 0
    md = (sweep / "REPORT.md").read_text()
    assert "Sweep `smoke`" in md and "**failed**: tiling.pad [600, 10] must be smaller" in md
    assert (sweep / "sweep_smoke.png").is_file()

    before = (sweep / "0" / "results.json").stat().st_mtime_ns
    p = _sweep(sweep, "experiment.resume=true")
    assert "resume: job 0" in p.stdout and "skipped" in p.stdout, p.stdout[-2000:]
    assert (sweep / "0" / "results.json").stat().st_mtime_ns == before  # not redone
    assert json.loads((sweep / "1" / "job.json").read_text())["status"] == "failed"  # redone, fails again


def test_an_unknown_size_is_one_clear_line() -> None:
    from hode.sweep import check_size
    from hode.errors import ConfigError

    cfg = compose_with_hydra(["+experiment=fig11", "experiment.size=medium"])
    with pytest.raises(ConfigError, match="experiment.size must be one of quick, full, got 'medium'"):
        check_size(cfg)
    check_size(compose_with_hydra(["+experiment=fig11", "experiment.size=full"]))
    check_size(compose_with_hydra([]))  # no experiment: nothing to check


def test_paper_refuses_an_unknown_figure() -> None:
    from experiments.paper import main as paper_main
    from hode.errors import ConfigError

    cfg = OmegaConf.create({"experiment": {"figures": ["fig11", "fig99"], "size": "quick"}})
    with pytest.raises(ConfigError, match="unknown figure 'fig99'"):
        paper_main(cfg)


def test_bench_applies_methods_to_one_config() -> None:
    from experiments.bench_headline import with_method

    cfg = compose_with_hydra(["runner=sim", "topology=paper5", "logger=none", "scheduler=roundrobin", "filter=none"])
    fourk, hode = with_method(cfg, "fourk"), with_method(cfg, "hode")
    assert (fourk.scheduler.name, fourk.filter.name, fourk.detector.imgsz) == ("fourk", "none", 3840)
    assert (hode.scheduler.name, hode.filter.name, hode.detector.imgsz) == ("dqn", "st", 704)
    assert cfg.scheduler.name == "roundrobin"  # the base config is untouched


def test_bench_states_infer4ks_ceiling_from_the_profiles() -> None:
    from experiments.bench_headline import fourk_ceiling

    cfg = compose_with_hydra(["runner=sim", "topology=paper5", "logger=none"])
    assert fourk_ceiling(cfg) == pytest.approx(6.02, rel=1e-3)  # the shipped profiles: the paper's Infer-4K
    linear = compose_with_hydra(["runner=sim", "topology=paper5", "logger=none",
                                 "runner.backend.profiles_dir=conf/device_sets/linear4k"])
    assert fourk_ceiling(linear) == pytest.approx(6.02 * 3.883, rel=1e-3)


def test_infer4k_reaches_its_ceiling_in_a_long_replay_run() -> None:
    from experiments.bench_headline import fourk_ceiling, fourk_long_run

    cfg = compose_with_hydra(["runner=sim", "topology=paper5", "logger=none"])
    assert 0.95 * fourk_ceiling(cfg) < fourk_long_run(cfg, frames=1000) <= 1.02 * fourk_ceiling(cfg)


@pytest.mark.slow
def test_dqn_decisions_logs_each_decision_beside_the_grid_best(tmp_path: Path) -> None:
    """Real camera loop in the simulator (real YOLO fills the cache): every DQN decision is logged
    with the grid's best by the measured speeds, which never finishes later by those speeds."""
    from experiments.dqn_decisions import decision_log, summary

    over = ["runner=sim", "topology=local2", "logger=none", "progress=false", "filter=none", "dataset.width=1024",
            "dataset.height=768", "dataset.frames=4", "runner.in_flight=1", f"runner.backend.cache_dir={tmp_path}"]
    rows = decision_log(over, trace=[{"node": "gtx1050", "start": 2, "end": 4, "factor": 3.0}])
    assert len(rows) == 4
    for r in rows:
        assert sum(r["dqn"]) == sum(r["grid_best"]) == r["tiles"] > 0
        if r["all_measured"]:
            assert r["grid_best_ms_measured"] <= r["dqn_ms_measured"] + 1e-6
    s = summary(rows)
    assert s["decisions"] == sum(r["all_measured"] for r in rows) >= 2
