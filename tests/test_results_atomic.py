"""results.json is written atomically and run.py claims only what was written: Ctrl-C (a real
SIGINT) while the metrics are computed, after the last frame, leaves a valid results.json."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from hode.config import ROOT
from hode.results import write_results, written


@pytest.mark.slow
def test_sigint_while_scoring_leaves_the_results_it_claims(tmp_path):
    out_dir = tmp_path / "run"
    argv = ["runner=inline", "logger=none", "filter=none", "progress=false", "dataset.frames=2",
            "dataset.width=512", "dataset.height=512", f"hydra.run.dir={out_dir}"]
    p = subprocess.Popen([sys.executable, "run.py", *argv], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env={**os.environ, "WANDB_MODE": "offline"})
    try:
        for line in p.stdout:  # the frames are done; the mAP step starts now
            if line.startswith("scoring "):
                p.send_signal(signal.SIGINT)
                break
        stdout, stderr = p.communicate(timeout=300)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130, stderr[-2000:]
    last = [ln for ln in stderr.splitlines() if ln.strip()][-1]
    results = out_dir / "results.json"
    if "were written" in last:
        assert str(results) in last
        r = json.loads(results.read_text())
        assert r["frames"] == 2 and r["interrupted"] is True
    else:
        assert last == "interrupted: no results were written" and not results.exists()
    assert [f.name for f in out_dir.iterdir() if f.name.endswith(".tmp")] == []


def test_write_results_is_atomic_and_recorded(tmp_path):
    cfg = OmegaConf.create({"seed": 0})
    path = tmp_path / "results.json"
    write_results(cfg, {"task": "run", "frames": 3}, path)
    assert json.loads(path.read_text())["frames"] == 3 and written()[-1] == path

    class Unserializable:
        pass

    with pytest.raises(TypeError):  # fails while serializing: the previous file stays whole
        write_results(cfg, {"task": "run", "frames": Unserializable()}, path)
    assert json.loads(path.read_text())["frames"] == 3
    assert sorted(f.name for f in tmp_path.iterdir()) == ["results.json"]
