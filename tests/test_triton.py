"""``runner=triton`` against real Triton servers on loopback, started by the project's own
``python -m hode.cluster.triton.serve`` (the tritonserver binary of the nvidia-pytriton wheel):
detections equal ``runner=inline``'s, a server killed mid-run loses no frame, and the bad-input
mistakes are one ``error:`` line."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from hode.cluster.topology import Topology
from hode.cluster.triton.backend import TritonBackend
from hode.cluster.triton.client import TritonError, TritonNode
from hode.cluster.triton.serve import free_port
from hode.config import ROOT
from hode.types import WorkItem

from support.run import error_lines, run_py

pytestmark = pytest.mark.slow  # real Triton servers and real YOLO

SMALL = ["logger=none", "progress=false", "filter=none", "scheduler=roundrobin", "dataset.width=1024",
         "dataset.height=768"]


class Server:
    """One ``python -m hode.cluster.triton.serve`` process (it becomes tritonserver: its pid is the server's)."""

    def __init__(self, work: Path, *models: str, max_batch: int = 16) -> None:
        self.port = free_port()
        self.url = f"127.0.0.1:{self.port}"
        self.log = open(work / f"triton-{self.port}.log", "w")
        args = [a for m in models for a in ("--model", m)]
        self.proc = subprocess.Popen([sys.executable, "-m", "hode.cluster.triton.serve", "--grpc-port", str(self.port),
                                      "--workdir", str(work / f"server-{self.port}"), "--torch-threads", "1",
                                      "--max-batch-size", str(max_batch), *args],
                                     cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT)
        self.models = [m.split("=")[0].split("@")[0] for m in models]

    def wait_ready(self, timeout: float = 240.0) -> None:
        node = TritonNode("probe", self.url, self.models[-1])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"tritonserver exited ({self.proc.returncode}): see {self.log.name}"
            if all(TritonNode("probe", self.url, m).healthy(1.0) for m in self.models):
                node.close()
                return
            time.sleep(0.5)
        raise AssertionError(f"tritonserver on {self.url} not ready in {timeout} s: see {self.log.name}")

    def requests(self, model: str) -> int:
        return TritonNode("stats", self.url, model).statistics(2.0).get("requests", 0)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One server started by the test: yolov5n, and ``fixed``, a yolov5n that only takes 320x320 inputs
    (the shape-mismatch case), both taking at most 2 tiles per request; it is killed last. The runs'
    other nodes name no url, so ``runner=triton`` starts their servers itself."""
    work = tmp_path_factory.mktemp("triton")
    b = Server(work, "yolov5n", "fixed=yolov5n@320x320", max_batch=2)
    try:
        b.wait_ready()
        yield b
    finally:
        b.stop()


def nodes(*urls: str | None, model: str = "yolov5n") -> str:
    """A topology override; a node whose url is None gets a server started by the run."""
    return "topology.nodes=[" + ",".join(f"{{name: n{i}, model: {model}" + (f", url: '{u}'}}" if u else "}")
                                         for i, u in enumerate(urls)) + "]"


def predictions(run: Path) -> dict[int, list]:
    per: dict[int, list] = {}
    for p in json.loads((run / "predictions.json").read_text()):
        per.setdefault(p["image_id"], []).append((*p["bbox"], p["score"]))
    return {k: sorted(v) for k, v in per.items()}


def test_run_py_triton_detections_equal_inline(tmp_path):
    """The documented command on a node without url: the run starts a real server for it on
    loopback, and the same frames through runner=triton and runner=inline give the same boxes and
    scores (the server's detector has the run's settings; one node, one request per frame, so the
    batches are the same as inline's). The server is gone after the run."""
    common = [*SMALL, "dataset.frames=2", "runner.in_flight=1", "topology=single"]
    _, tri = run_py(tmp_path / "triton", *common, "runner=triton")
    _, inl = run_py(tmp_path / "inline", *common, "runner=inline")
    assert tri["runner"]["name"] == "triton" and tri["frames"] == inl["frames"] == 2
    assert tri["runner"]["detector_mismatches"] == {}
    assert tri["tiles"] == inl["tiles"] and tri["nodes"][0]["items"] == tri["tiles"]["processed"] > 0
    assert tri["nodes"][0]["server"]["requests"] > 0  # Triton's statistics endpoint was read
    log = next((tmp_path / "triton" / "triton").glob("triton-*.log")).read_text()
    assert "Started GRPCInferenceService at 127.0.0.1:" in log  # a real server, on loopback only
    port = int(tri["nodes"][0]["url"].rsplit(":", 1)[1])
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0  # stopped with the run
    pt, pi = predictions(tmp_path / "triton"), predictions(tmp_path / "inline")
    assert pt.keys() == pi.keys() and sum(map(len, pi.values())) > 0
    for frame in pi:
        assert len(pt[frame]) == len(pi[frame]), frame
        assert np.allclose(np.array(pt[frame]), np.array(pi[frame]), atol=0.02), frame
    assert tri["map50"] == pytest.approx(inl["map50"], abs=1e-9)


def test_requests_respect_the_models_max_batch_size(server):
    """Five tiles for a node whose model takes at most 2 per request: three requests, all answered."""
    b = server
    backend = TritonBackend(Topology([{"name": "b", "model": "yolov5n", "url": b.url}]))
    backend.start()
    try:
        image = np.zeros((608, 704, 3), np.uint8)
        items = [WorkItem(0, k, (0, 0, 704, 608), image) for k in range(5)]
        backend.submit(0, items, [0] * 5)
        got: list = []
        while len(got) < 5:
            got += backend.poll(timeout=60)
        assert sorted(c.item_id for c in got) == list(range(5)) and backend.links[0].requests == 3
    finally:
        backend.close()


def test_wrong_url_model_and_shape_are_one_line_errors(server, tmp_path):
    b = server
    proc, _ = run_py(tmp_path / "run", *SMALL, "dataset.frames=1", "runner=triton",
                     nodes(f"127.0.0.1:{free_port()}"), expect_rc=2)
    lines = error_lines(proc)
    assert len(lines) == 1 and lines[0].startswith("error: triton node 'n0'") and "no Triton server answers" in lines[0]

    def start(node: dict) -> str:
        backend = TritonBackend(Topology([node]))
        with pytest.raises(TritonError) as e:
            backend.start()
        backend.close()
        return str(e.value)

    msg = start({"name": "x", "model": "yolov5n", "url": b.url, "triton_model": "nope"})
    assert "model 'nope' is not loaded on the server (loaded: fixed, yolov5n)" in msg and "\n" not in msg
    msg = start({"name": "y", "model": "yolov5n", "url": b.url, "triton_model": "fixed"})
    assert "608x704 tile was refused" in msg and "Expected [-1,320,320,3], got [1,608,704,3]" in msg
    assert "\n" not in msg and "NOTE" not in msg


def test_server_killed_mid_run_loses_no_frame(server, tmp_path):
    """Two servers, one the run starts itself (n0) and the test's ``b`` (n1); ``b`` is SIGKILLed once
    it has answered real tiles: the run completes every frame and tile, ``b`` is marked down and its
    tiles went to n0."""
    b = server
    frames = 8
    run = tmp_path / "run"
    before = b.requests("yolov5n")
    env = {**os.environ, "WANDB_MODE": "offline"}
    proc = subprocess.Popen([sys.executable, "run.py", *SMALL, f"dataset.frames={frames}", "runner=triton",
                             nodes(None, b.url), f"hydra.run.dir={run}"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300  # the run starts n0's server first
        while b.requests("yolov5n") < before + 4:  # the start-up probes (2) and two real requests
            assert proc.poll() is None and time.monotonic() < deadline, "the run ended before b was killed"
            time.sleep(0.05)
        b.proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-2000:]
    r = json.loads((run / "results.json").read_text())
    assert r["frames"] == frames and not r["interrupted"]
    t = r["tiles"]
    assert t["processed"] + t["skipped"] == t["total"] and t["processed"] == frames * 4
    fo = r["runner"]["failover"]
    assert sum(n["items"] for n in r["nodes"]) == t["processed"] + fo["duplicates"]  # late copies count on their node
    assert fo["nodes_down"] == 1 and [e["node"] for e in fo["events"] if e["event"] == "down"] == ["n1"]
    assert r["nodes"][1]["up"] is False and r["nodes"][1]["items"] > 0
    assert len(predictions(run)) == frames  # every frame has its detections
