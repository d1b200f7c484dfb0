"""Real workers on two real sshd hosts: deploy, run frames through them, tear down, nothing left."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from hode.config import ROOT
from remote.__main__ import main as remote_main
from support.run import run_py
from support.sshd import free_port, lab_fixture

pytestmark = pytest.mark.slow  # real sshd hosts

lab = pytest.fixture(scope="module")(lab_fixture)

FAST_RUN = ["filter=none", "scheduler=roundrobin", "dataset.frames=2", "dataset.width=1024", "dataset.height=768", "logger=none", "progress=false"]


def pid_files(lab) -> list:
    return [p for h in lab.hosts.values() for p in h.work_dir.glob("workers/*.pid")]


def test_run_live_deploys_runs_and_tears_down(lab, tmp_path):
    """``python run.py runner=live topology=<hosts>``: one worker direct, one through an SSH tunnel."""
    known = lab.known_hosts("a", "b")
    pa, pb = free_port("127.0.0.2"), free_port("127.0.0.3")
    hosts = lab.topology([lab.node("a", "edge-a", pa, known, model="yolov5n"),
                          lab.node("b", "edge-b", pb, known, tunnel=True)])
    r, res = run_py(tmp_path, "runner=live", f"topology={hosts}", *FAST_RUN, env={"YOLO_OFFLINE": "1"})
    assert res["frames"] == 2
    workers = {n["name"]: n["worker"] for n in res["nodes"]}
    assert workers["edge-a"] == f"127.0.0.2:{pa}"  # direct to the host
    assert workers["edge-b"].startswith("127.0.0.1:")  # the local end of the SSH tunnel
    assert all(n["items"] > 0 for n in res["nodes"])  # both remote workers detected tiles
    assert lab.worker_pids() == [] and pid_files(lab) == []  # torn down: nothing left on either host
    for node in ("edge-a", "edge-b"):  # their logs were fetched into the run dir after a graceful stop
        assert "stopped after" in (tmp_path / "workers" / f"{node}.log").read_text()


def remote(capsys, *argv: str) -> tuple[int, str]:
    """``python -m remote ARGV``, in this process (the CLI itself; saves a Python start-up per call)."""
    capsys.readouterr()
    rc = remote_main(list(argv))
    out, err = capsys.readouterr()
    return rc, out + err


def test_cli_deploy_status_logs_teardown(lab, tmp_path, capsys):
    known = lab.known_hosts("a", "b")
    pa, pb = free_port("127.0.0.2"), free_port("127.0.0.3")
    hosts = lab.topology([lab.node("a", "edge-a", pa, known), lab.node("b", "edge-b", pb, known)])
    out = str(tmp_path / "logs")
    # Pinned weights: the deploys must agree on them even if weights/ is retrained meanwhile.
    pinned = tmp_path / "yolov5n.pt"
    shutil.copy(ROOT / "weights" / "yolov5n-synth.pt", pinned)
    topology = (f"topology={hosts}", f"detector.weights={pinned}")

    rc, text = remote(capsys, "deploy", *topology, "--out", out)
    assert rc == 0, text
    assert f"edge-a         started          127.0.0.2:{pa}" in text
    assert f"edge-b         started          127.0.0.3:{pb}" in text
    pids = lab.worker_pids()
    assert len(pids) == 2
    for h in ("a", "b"):  # the default venv: true, made from the interpreter running the tests (venv, conda or system)
        assert (lab.hosts[h].work_dir / "venv" / ".hode-python").read_text() == sys.executable

    rc, text = remote(capsys, "status", *topology)
    assert rc == 0 and text.count("serving") == 2, text

    rc, text = remote(capsys, "deploy", *topology)  # idempotent: same settings, same workers
    assert rc == 0 and text.count("already running") == 2, text
    assert lab.worker_pids() == pids
    rc, text = remote(capsys, "deploy", *topology, "detector.conf=0.5")  # other settings: refused, not replaced
    assert rc == 2 and "already running" in text and "with other settings (detector.conf)" in text, text
    assert lab.worker_pids() == pids

    rc, text = remote(capsys, "logs", *topology, "--out", out, "--lines", "5")
    assert rc == 0, text
    assert "serving edge-a (yolov5n)" in (tmp_path / "logs" / "edge-a.log").read_text()

    rc, text = remote(capsys, "teardown", *topology, "--out", out)
    assert rc == 0 and text.count("stopped pid") == 2, text
    assert lab.worker_pids() == [] and pid_files(lab) == []
    assert "stopped after" in (tmp_path / "logs" / "edge-b.log").read_text()  # graceful, log fetched after

    rc, text = remote(capsys, "teardown", *topology)  # nothing left to stop: still fine
    assert rc == 0 and text.count("no pid file") == 2, text
    rc, text = remote(capsys, "status", *topology)
    assert rc == 1 and text.count("not running") == 2, text


def test_ctrl_c_during_deploy_rolls_back_every_host(lab, tmp_path):
    """Ctrl-C on ``python -m remote deploy`` while the workers load: every host rolled back, exit 130.

    The deploy runs in a child process and only that child gets the SIGINT: whatever happens to the
    deploy, no signal can reach the test process (a Ctrl-C outliving its test aborted the whole run).
    """
    known = lab.known_hosts("a", "b")
    hosts = lab.topology([lab.node("a", "edge-a", free_port("127.0.0.2"), known),
                          lab.node("b", "edge-b", free_port("127.0.0.3"), known)])
    env = dict(os.environ, YOLO_OFFLINE="1")
    child = subprocess.Popen([sys.executable, "-m", "remote", "deploy", f"topology={hosts}", "--out", str(tmp_path)],
                             cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while len(pid_files(lab)) < 2 and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)  # both workers started (PID files written); they take seconds to load YOLO
        assert child.poll() is None, f"deploy ended before the interrupt: {child.communicate()[1][-2000:]}"
        assert len(pid_files(lab)) == 2, "the workers were not started within 120 s"
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert child.returncode == 130 and err.strip().splitlines()[-1] == "interrupted", (out, err[-2000:])
    assert "started" not in out  # interrupted inside deploy(), before any worker was reported up
    assert lab.worker_pids() == [] and pid_files(lab) == []
