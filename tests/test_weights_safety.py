"""Weights are code: a crafted ``.pt`` must not run anything before it is refused, and real
ultralytics checkpoints (the project's, and one saved the way ultralytics saves official ones) load."""
from __future__ import annotations

import pickle
from copy import deepcopy
from pathlib import Path

import numpy as np
import pytest
import torch

from hode.checkpoints import read_tagged
from hode.config import ROOT
from hode.detect.yolo import YoloDetector
from hode.errors import WeightsError
from hode.weights_safety import TRUST_ENV, check_weights

from support.run import run_py


class _Payload:
    """Unpickling this creates ``marker``: the smallest proof that pickled code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


class _CallsANetworkClass:
    """Calls an allowed class like a function (REDUCE) instead of rebuilding it: refused too."""

    def __reduce__(self):
        from ultralytics.nn.tasks import DetectionModel

        return (DetectionModel, ("yolov8n.yaml",))


def _evil(kind: str, path: Path, marker: Path) -> Path:
    if kind == "raw pickle":
        path.write_bytes(pickle.dumps({"model": _Payload(marker)}))
    elif kind == "torch zip":
        torch.save({"model": _Payload(marker), "train_args": {}}, path)
    else:
        torch.save({"model": _CallsANetworkClass()}, path)
    return path


EVIL = {"raw pickle": "is not a YOLO checkpoint (torch's safe loader cannot read it: a raw pickle", "torch zip": "it imports io.open",
        "calls a network class": "calls ultralytics.nn.tasks.DetectionModel(...)"}


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(EVIL))
def test_evil_weights_on_the_command_line_run_nothing(tmp_path, kind):
    marker = tmp_path / "PWNED"
    evil = _evil(kind, tmp_path / "evil.pt", marker)
    argv = [f"detector.weights={evil}", "runner=inline", "logger=none", "filter=none", "dataset.frames=1",
            "dataset.width=512", "dataset.height=512", "progress=false"]
    out, _ = run_py(tmp_path / "run", *argv, expect_rc=None, env={TRUST_ENV: None})
    assert not marker.exists(), "the pickle's payload ran"
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert out.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: detector.weights:"), out.stderr
    assert EVIL[kind] in lines[0] and "trust_weights=true" in lines[0]


def test_evil_filter_and_scheduler_checkpoints_run_nothing(tmp_path):
    """hode.checkpoints reads the project's own checkpoints with weights_only=True: nothing runs."""
    marker = tmp_path / "PWNED"
    for kind in ("raw pickle", "torch zip"):
        evil = _evil(kind, tmp_path / f"evil-{kind[:3]}.ckpt", marker)
        with pytest.raises(WeightsError, match="is not a flow filter checkpoint"):
            read_tagged(evil, "hode-st-filter", 1, "flow filter", "train one")
    assert not marker.exists()


def test_trusting_weights_is_explicit_and_warned(tmp_path, monkeypatch, caplog):
    evil = _evil("torch zip", tmp_path / "evil.pt", tmp_path / "PWNED")
    with pytest.raises(WeightsError):
        check_weights(evil)
    monkeypatch.setenv(TRUST_ENV, "1")
    check_weights(evil)  # the user said so: no scan (loading it is then the user's call)
    assert "without the safety scan" in caplog.text
    assert not (tmp_path / "PWNED").exists()  # check_weights itself never unpickles with code


def _saved_like_ultralytics(path: Path, arch: str) -> Path:
    """A checkpoint saved the way ultralytics' trainer saves official ones (half-precision model in
    ``model``, no EMA, training metadata), from the architecture yaml (no download)."""
    from ultralytics import __version__
    from ultralytics.nn.tasks import DetectionModel

    model = DetectionModel(arch, nc=80, verbose=False)
    model.names = {i: f"class{i}" for i in range(80)} | {0: "person"}
    torch.save({"date": "2024-09-30T00:00:00", "version": __version__, "license": "AGPL-3.0",
                "docs": "https://docs.ultralytics.com", "epoch": -1, "best_fitness": None,
                "model": deepcopy(model).half(), "ema": None, "updates": None, "optimizer": None,
                "train_args": {"model": arch, "imgsz": 640, "batch": 16}, "train_metrics": {}, "train_results": {}},
               path)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["yolo11n.yaml", "yolov8n.yaml"])
def test_real_ultralytics_checkpoints_still_load(tmp_path, arch):
    path = _saved_like_ultralytics(tmp_path / arch.replace(".yaml", ".pt"), arch)
    check_weights(path)
    det = YoloDetector(str(path), imgsz=320)
    assert len(det.predict([np.zeros((64, 64, 3), np.uint8)])) == 1


def test_the_projects_weights_pass_the_scan():
    for p in sorted((ROOT / "weights").glob("*.pt")):
        check_weights(p)
