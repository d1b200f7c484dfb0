"""``runner=live`` for real: worker processes on loopback, the pipeline over them, and teardown."""
from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from hode.cluster.live import LiveBackend
from hode.cluster.topology import Topology
from hode.config import build
from hode.detect.factory import detector_config
from hode.edge.process import WorkerError
from hode.errors import ConfigError, WeightsError

from support.edge import FAST_PROFILE, shared_worker, wait_for, workers_of, write_fast_profile


@pytest.fixture
def profiles(tmp_path) -> Path:
    d = tmp_path / "profiles"
    d.mkdir()
    return write_fast_profile(d)


@pytest.fixture(scope="module")
def external():
    """A worker started outside any backend, as a person or the remote launcher would."""
    proc = shared_worker()  # the backend waits for its health; here only for its port
    wait_for(lambda: proc.port() is not None or not proc.alive(), 60, "the external worker's port")
    return proc


@pytest.mark.slow
def test_live_pipeline_run_over_a_spawned_and_an_external_worker(cfg_factory, profiles, external, tmp_path, monkeypatch):
    """Two frames through ``runner=live``: one node spawned by the backend, one already running
    (host/port in the topology); both get work, results say emulated, the spawned one is gone after."""
    logs = tmp_path / "workers"
    nodes = (f"[{{name: local, model: yolov5n, device: fast}},"
             f"{{name: ext, model: yolov5n, device: fast, host: 127.0.0.1, port: {external.port()}}}]")
    cfg = cfg_factory(["runner=live", "dataset.frames=2", f"topology.nodes={nodes}",
                       f"runner.backend.profiles_dir={profiles}", f"runner.backend.workers.log_dir={logs}"])
    monkeypatch.chdir(tmp_path)  # results.json goes to the run dir (the cwd outside a Hydra run)
    from hode.tasks.run import main

    results = main(cfg)
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk["frames"] == 2 and results["frames"] == 2
    assert [n["name"] for n in on_disk["nodes"]] == ["local", "ext"]
    assert all(n["items"] > 0 for n in on_disk["nodes"]), on_disk["nodes"]
    runner = on_disk["runner"]
    assert runner["emulated"] is True and runner["time_scale"] >= 1 and runner["name"] == "live"
    # pacing: no tile is faster than its emulated time (noise 0 profile); the grid's smallest tile
    # is the floor, since a tile smaller than the profile's reference tile costs less (base_s)
    from hode.config import build
    from hode.profiles import profile_from_dict

    windows = [t.window for t in build(cfg.tiling).tiles(int(cfg.dataset.height), int(cfg.dataset.width))]
    floor_s = min(profile_from_dict(FAST_PROFILE, "fast").base_s("yolov5n", (x1 - x0) * (y1 - y0)) for x0, y0, x1, y1 in windows)
    for n in on_disk["nodes"]:
        if not n["overruns"]:
            assert n["busy_s"] / n["items"] >= floor_s * runner["time_scale"] * 0.999
    assert (logs / "local.log").is_file()
    assert workers_of(str(logs)) == [], "a spawned worker survived the run"
    assert external.alive(), "closing the backend must not stop a worker it did not start"


@pytest.mark.slow
def test_pipelining_keeps_several_frames_on_the_workers(external, small_frames):
    """in_flight=3: frames overlap on the worker (the next ones are submitted before the first returns)."""
    from hode.filter.base import KeepAll
    from hode.pipeline import Pipeline
    from hode.schedule.base import RoundRobin
    from hode.tiling import Tiler

    topo = Topology([{"name": "ext", "model": "yolov5n", "device": "fast", "host": "127.0.0.1", "port": external.port()}])
    backend = LiveBackend(topo, emulation={"enabled": True, "time_scale": 5.0})
    backend.start()
    try:
        trace = Pipeline(Tiler(), KeepAll(), RoundRobin(), backend, in_flight=3, progress=False).run(small_frames[:3])
    finally:
        backend.close()
    recs = trace.records
    assert [r.index for r in recs] == [0, 1, 2] and all(r.items == 4 for r in recs)
    assert recs[1].submitted < recs[0].finished and recs[2].submitted < recs[0].finished
    assert backend.stats()[0]["items"] == 12
    assert backend.states()[0].queue == 0


@pytest.mark.slow
def test_worker_that_dies_at_start_is_named(tmp_path, profiles):
    topo = Topology([{"name": "broken-node", "model": "yolov5n", "device": "fast"}])
    det = OmegaConf.create({**OmegaConf.to_container(detector_config("yolov5n", None), resolve=True), "imgsz": 33})
    backend = LiveBackend(topo, det, profiles_dir=str(profiles),
                          workers={"log_dir": str(tmp_path / "w"), "start_timeout_s": 60})
    with pytest.raises(WorkerError, match=r"edge worker 'broken-node' exited during start-up \(code 2\): "
                                          r"error: detector.imgsz must be a positive multiple of 32"):
        backend.start()
    assert workers_of(str(tmp_path)) == []


def test_bad_live_configs_fail_in_one_line(profiles):
    topo = Topology([{"name": "a", "model": "yolov5n", "device": "fast"}])
    with pytest.raises(ConfigError, match="names node 'zz', not in the topology"):
        LiveBackend(topo, load_trace=[{"node": "zz", "start": 0, "end": 5, "factor": 2}], profiles_dir=str(profiles))
    with pytest.raises(ConfigError, match="time_scale"):
        LiveBackend(topo, emulation={"time_scale": 0}, profiles_dir=str(profiles))
    with pytest.raises(ConfigError, match="no device profile 'nope'"):
        LiveBackend(Topology([{"model": "yolov5n", "device": "nope"}]), profiles_dir=str(profiles))
    with pytest.raises(ConfigError, match="encoding"):
        LiveBackend(topo, transport={"encoding": "bmp"}, profiles_dir=str(profiles))
    det = OmegaConf.create({**OmegaConf.to_container(detector_config("yolov5n", None), resolve=True),
                            "weights": "/nonexistent/w.pt"})
    with pytest.raises(WeightsError, match="node 'a'.*/nonexistent/w.pt"):  # before any process starts
        LiveBackend(topo, det, profiles_dir=str(profiles))


def test_paper5_topology_and_serve_task_build(cfg_factory):
    cfg = cfg_factory(["runner=live", "topology=paper5"])
    topo = build(cfg.topology)
    assert [(n.model, n.device) for n in topo] == [("yolov5m", "gtx1070"), ("yolov5s", "gtx1050"), ("yolov5s", "jetson_nx"),
                                                   ("yolov5n", "jetson_nx"), ("yolov5n", "jetson_tx2")]
    backend = build(cfg.runner.backend, topology=topo, detector=cfg.detector, _recursive_=False)
    assert len(backend._specs) == 5 and all(s.emulate and s.profile for s in backend._specs)

    from hode.tasks.serve import spec_from_config

    spec = spec_from_config(cfg_factory(["task=serve", "detector=yolov5s", "task.port=0"]))
    assert spec.detector["name"] == "yolov5s" and spec.host == "127.0.0.1" and not spec.emulate
    batched = spec_from_config(cfg_factory(["task=serve", "task.emulate=true", "task.batched_inference=true"]))
    assert batched.pacer().batched and not spec.pacer().batched  # a standalone worker paces batches too
    with pytest.raises(ConfigError, match="batched_inference must be true or false"):
        spec_from_config(cfg_factory(["task=serve", "task.batched_inference=maybe"]))


@pytest.mark.slow
def test_ctrl_c_during_a_live_run_leaves_no_worker(cfg_factory, profiles, tmp_path, monkeypatch):
    """A real SIGINT in the middle of a run (after its first frame): the run unwinds like a
    Ctrl-C in the terminal, writes the finished frames, and stops every worker it started."""
    from hode import pipeline

    finish = pipeline.Pipeline._finish

    def finish_then_ctrl_c(self, p, trace):
        finish(self, p, trace)
        if len(trace.records) == 1:
            os.kill(os.getpid(), signal.SIGINT)  # delivered to this (main) thread right here

    monkeypatch.setattr(pipeline.Pipeline, "_finish", finish_then_ctrl_c)
    logs = tmp_path / "workers"
    cfg = cfg_factory(["runner=live", "dataset.frames=50", "topology=single", "topology.nodes.0.device=fast",
                       "runner.backend.emulation.time_scale=5", f"runner.backend.profiles_dir={profiles}",
                       f"runner.backend.workers.log_dir={logs}"])
    monkeypatch.chdir(tmp_path)
    from hode.tasks.run import main

    with pytest.raises(KeyboardInterrupt):
        main(cfg)
    assert (logs / "local.log").is_file()
    assert workers_of(str(logs)) == [], "a worker survived Ctrl-C"
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["interrupted"] is True and 1 <= results["frames"] < 50


def test_a_node_whose_port_is_closed_fails_in_seconds_naming_it(tmp_path):
    """Issue 19: a topology node with host/port where nothing listens used to fail only after
    start_timeout_s (180 s). It fails after connect_timeout_s (5 s) in one line naming node and address."""
    import socket

    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    topo = Topology([{"name": "gone", "model": "yolov5n", "device": "fast", "host": "127.0.0.1", "port": port}])
    backend = LiveBackend(topo, workers={"start_timeout_s": 60, "log_dir": str(tmp_path)})
    with pytest.raises(WorkerError, match=rf"^edge node 'gone': cannot connect to 127.0.0.1:{port} within 5 s "
                                          r"\(nothing listening there"):
        backend.start()


@pytest.fixture(scope="module")
def real_speed(tmp_path_factory):
    """A worker that runs at this machine's real speed (not emulating any profile), started by hand."""
    from hode.edge.process import WorkerProcess
    from hode.edge.server import WorkerSpec

    from support.edge import yolov5n_config

    proc = WorkerProcess(WorkerSpec(node="real", detector=yolov5n_config(), torch_threads=1),
                         tmp_path_factory.mktemp("real-speed"), torch_threads=1)
    proc.spawn()
    yield proc
    proc.stop()


@pytest.mark.slow
def test_results_say_which_workers_are_emulated_and_that_they_ignore_the_token(external, real_speed, small_frames,
                                                                               monkeypatch, caplog):
    """Issue 19: results.json said ``emulated: true`` for every node of runner=live, also for workers
    that run at real speed. Now it is what each worker's Status says; and a camera holding a token
    says which workers answer without it (they check none)."""
    import logging

    from hode.filter.base import KeepAll
    from hode.pipeline import Pipeline
    from hode.schedule.base import RoundRobin
    from hode.tiling import Tiler

    from support.edge import wait_serving

    wait_serving(real_speed).close()
    monkeypatch.setenv("HODE_TEST_CAMERA_TOKEN", "camera-side-token")
    topo = Topology([{"name": "ext", "model": "yolov5n", "device": "fast", "host": "127.0.0.1", "port": external.port()},
                     {"name": "real", "model": "yolov5n", "device": "cpu", "host": "127.0.0.1", "port": real_speed.port()}])
    backend = LiveBackend(topo, emulation={"time_scale": 5.0}, security={"token_env": "HODE_TEST_CAMERA_TOKEN"})
    with caplog.at_level(logging.WARNING, logger="hode.cluster.live_checks"):
        backend.start()
    try:
        Pipeline(Tiler(), KeepAll(), RoundRobin(), backend, in_flight=1, progress=False).run(small_frames[:1])
        runner, nodes = backend.describe(), {n["name"]: n for n in backend.stats()}
    finally:
        backend.close()
    assert runner["emulated"] is False and runner["emulated_nodes"] == ["ext"] and runner["note"].startswith("mixed")
    assert nodes["ext"]["emulated"] is True and nodes["ext"]["time_scale"] == 5.0
    assert nodes["real"]["emulated"] is False and nodes["real"]["time_scale"] == 1.0 and nodes["real"]["items"] > 0
    assert runner["security"]["token_not_checked_by"] == ["ext", "real"]
    warned = [r.getMessage() for r in caplog.records if "without the token" in r.getMessage()]
    assert len(warned) == 2 and "camera-side-token" not in " ".join(warned)
