"""Graceful stop, for real: ``python run.py`` in a subprocess gets SIGINT (Ctrl-C) in the middle of a
run or a sweep. It writes results for the frames done so far, leaves no worker process behind,
exits non-zero (130), and a sweep records the interrupted job and starts no other."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

from hode.config import ROOT

from support.edge import workers_of, write_fast_profile

pytestmark = pytest.mark.slow  # run.py subprocesses running frames on real workers

DONE = re.compile(r"\b([1-9]\d*)/\d+ \[")  # tqdm: "frames:  5%|..| 3/60 [..]"


def ctrl_c_after_first_frame(args: list[str], timeout: float = 240) -> tuple[int, str]:
    """Run ``run.py args`` with a progress bar; SIGINT it once a frame is done; (exit code, stderr)."""
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONUNBUFFERED": "1"}
    p = subprocess.Popen([sys.executable, "run.py", *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env=env)
    err: list[bytes] = []
    seen, ended = threading.Event(), threading.Event()

    def read() -> None:
        while chunk := p.stderr.read1(4096):
            err.append(chunk)
            if DONE.search(b"".join(err[-4:]).decode(errors="replace")):
                seen.set()
        ended.set()  # the run exited before a frame finished: fail now, not after the timeout

    threading.Thread(target=read, daemon=True).start()
    threading.Thread(target=p.stdout.read, daemon=True).start()
    try:
        deadline = time.monotonic() + timeout
        while not seen.is_set() and not ended.is_set() and time.monotonic() < deadline:
            seen.wait(0.5)
        if not seen.is_set():
            raise AssertionError("no frame finished: " + b"".join(err).decode(errors="replace")[-2000:])
        p.send_signal(signal.SIGINT)
        code = p.wait(60)
    finally:
        if p.poll() is None:
            p.kill()
    time.sleep(0.2)
    return code, b"".join(err).decode(errors="replace")


def test_fault_ctrl_c_live_run_writes_results_and_leaves_no_worker(tmp_path):
    write_fast_profile(tmp_path)
    out = tmp_path / "run"
    code, err = ctrl_c_after_first_frame(
        ["runner=live", "filter=none", "topology=single", "topology.nodes.0.device=fast", f"runner.backend.profiles_dir={tmp_path}",
         "runner.backend.emulation.time_scale=5", "dataset.frames=60", "dataset.width=1024", "dataset.height=768", "logger=none",
         "progress=true", f"hydra.run.dir={out}"])
    assert code == 130, err[-2000:]
    assert "interrupted: results of the finished frames were written" in err and "Traceback" not in err
    r = json.loads((out / "results.json").read_text())
    assert r["interrupted"] is True and 1 <= r["frames"] < 60 and r["tiles"]["processed"] == 4 * r["frames"]
    assert (out / "workers" / "local.log").is_file()
    assert workers_of(str(out)) == [], "a worker survived Ctrl-C"


def test_fault_ctrl_c_in_a_sweep_records_the_job_and_stops(tmp_path):
    sweep = tmp_path / "sweep"
    code, err = ctrl_c_after_first_frame(
        ["-m", "runner=inline", "filter=none", "dataset.frames=60", "dataset.width=1024", "dataset.height=768", "seed=0,1",
         "logger=none", "progress=true", f"hydra.sweep.dir={sweep}"])
    assert code == 130, err[-2000:]
    job = json.loads((sweep / "0" / "job.json").read_text())
    assert job["status"] == "interrupted" and "seed=0" in job["overrides"]
    r = json.loads((sweep / "0" / "results.json").read_text())
    assert r["interrupted"] is True and 1 <= r["frames"] < 60
    assert not (sweep / "1").exists(), "the sweep went on after Ctrl-C"
