"""``ssh.serve: triton``: ``python -m remote deploy`` starts a real Triton server on a real sshd host,
the printed url answers a real inference, teardown leaves no process."""
from __future__ import annotations

import os
import re
import shutil

import numpy as np
import pytest

from hode.cluster.triton.client import TritonNode
from hode.cluster.triton.dist import server_dir
from hode.config import ROOT
from remote.__main__ import main as remote_main
from support.sshd import _processes, free_port, lab_fixture

pytestmark = pytest.mark.slow  # a real sshd host and a real Triton server

lab = pytest.fixture(scope="module")(lab_fixture)


def remote(capsys, *argv: str) -> tuple[int, str]:
    capsys.readouterr()
    rc = remote_main(list(argv))
    out, err = capsys.readouterr()
    return rc, out + err


def triton_pids(root: str) -> list[int]:
    return [pid for pid, cmd in _processes() if ("tritonserver" in cmd or "triton.serve" in cmd) and root in cmd]


def test_deploy_triton_node_serves_and_tears_down(lab, tmp_path, capsys):
    try:
        server_dir()  # the cached server binary (fetched once, as for runner=triton)
    except Exception as e:  # noqa: BLE001 - no binary and no index: nothing to test here
        pytest.skip(f"no Triton server binary: {e}")
    known = lab.known_hosts("a")
    port = free_port("127.0.0.1")
    pinned = tmp_path / "yolov5n.pt"
    shutil.copy(ROOT / "weights" / "yolov5n-synth.pt", pinned)
    open_node = lab.topology([lab.node("a", "tri", port, known, serve="triton", listen="0.0.0.0")])
    rc, text = remote(capsys, "deploy", f"topology={open_node}", f"detector.weights={pinned}")
    assert rc == 2 and "refusing to start Triton on 0.0.0.0" in text, text  # no token: not beyond loopback

    node = lab.node("a", "tri", port, known, serve="triton")
    del node["ssh"]["listen"]  # default: the host's loopback
    topology = (f"topology={lab.topology([node])}", f"detector.weights={pinned}", "detector.conf=0.05")
    rc, text = remote(capsys, "deploy", *topology, "--out", str(tmp_path / "logs"))
    assert rc == 0, text
    url = re.search(r"triton url (\S+) model yolov5n", text).group(1)
    assert url == f"127.0.0.1:{port}" and "ssh -L" in text, text  # the loopback host is this machine: reachable
    root = str(lab.hosts["a"].work_dir)
    assert triton_pids(root), "no Triton server process on the host"

    client = TritonNode("tri", url, "yolov5n")
    try:
        client.check(timeout=10)
        assert client.detector["weights"] == "weights.pt" and client.detector["conf"] == 0.05  # the run's settings
        frame = np.zeros((608, 704, 3), np.uint8)
        (dets,) = client.infer([frame], timeout=60)  # a real answer of the served YOLO
        assert dets is not None
    finally:
        client.close()

    rc, text = remote(capsys, "status", *topology)
    assert rc == 0 and "serving" in text, text
    rc, text = remote(capsys, "teardown", *topology, "--out", str(tmp_path / "down"))
    assert rc == 0 and "stopped pid" in text, text
    assert triton_pids(root) == []
    assert not list(lab.hosts["a"].work_dir.glob("workers/*.pid"))
    assert os.path.getsize(tmp_path / "down" / "tri.log") > 0  # its log came back
