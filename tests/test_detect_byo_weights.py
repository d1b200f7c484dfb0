"""Bring-your-own weights: ``detector.weights=/path/x.pt`` finds "person" by name, not by index.

A checkpoint whose person class is *not* index 0 is made from the shipped one: its one-class head
gets a second class in front ("bicycle", a channel that never fires), so person becomes class 1.
"""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from hode.config import ROOT, build, load_option
from hode.detect.yolo import YoloDetector, person_class
from hode.errors import WeightsError
from omegaconf import OmegaConf

SHIPPED = ROOT / "weights" / "yolov5n-synth.pt"


def _with_classes(path, names: dict[int, str], person_at: int):
    """A copy of the shipped checkpoint with ``len(names)`` classes; the person channel at ``person_at``."""
    ckpt = torch.load(SHIPPED, map_location="cpu", weights_only=False)
    model = copy.deepcopy(ckpt["model"] if ckpt.get("model") is not None else ckpt["ema"]).float()
    head = model.model[-1]
    nc = len(names)
    for seq in head.cv3:
        old = seq[-1]
        new = torch.nn.Conv2d(old.in_channels, nc, 1)
        with torch.no_grad():
            new.weight.zero_()
            new.bias.fill_(-20.0)  # the other classes never fire
            new.weight[person_at] = old.weight[0]
            new.bias[person_at] = old.bias[0]
        seq[-1] = new
    head.nc, head.no = nc, nc + head.reg_max * 4
    model.nc, model.names = nc, names
    model.yaml["nc"] = nc
    ckpt.update(model=model.half(), ema=None, optimizer=None)
    torch.save(ckpt, path)
    return path


@pytest.fixture(scope="module")
def two_class(tmp_path_factory):
    return _with_classes(tmp_path_factory.mktemp("byo") / "two-class.pt", {0: "bicycle", 1: "person"}, person_at=1)


@pytest.fixture(scope="module")
def crops(small_frames):
    f = small_frames[0]
    return [f.image[300:768, 0:512], f.image[200:700, 500:1024]]


@pytest.mark.slow
def test_person_found_by_name_not_index(two_class, crops):
    weights = two_class
    low = {"conf": 0.05}  # whatever the shipped weights' quality, some boxes to compare
    cfg = OmegaConf.merge(load_option("detector", "yolov5n"), {"weights": str(weights), **low})
    mine, shipped = build(cfg), build(OmegaConf.merge(load_option("detector", "yolov5n"), low))
    ref, got = shipped.predict(crops), mine.predict(crops)
    assert mine._person == 1 and shipped._person == 0
    assert sum(len(d) for d in ref) > 0
    for a, b in zip(ref, got):  # same people as the shipped one-class model
        assert len(a) == len(b)
        np.testing.assert_allclose(np.sort(a.boxes, 0), np.sort(b.boxes, 0), atol=1.0)
    # Assuming index 0 would have picked the never-firing "bicycle" channel: nothing at all.
    mine._person = 0
    assert sum(len(d) for d in mine.predict(crops)) == 0


def test_checkpoint_without_person_is_refused(tmp_path):
    weights = _with_classes(tmp_path / "cars.pt", {0: "car", 1: "truck"}, person_at=1)
    det = YoloDetector(str(weights))
    with pytest.raises(WeightsError, match="has no 'person' class"):
        det.predict([np.zeros((64, 64, 3), np.uint8)])
    assert person_class(["car", "Pedestrian"], "x") == 1 and person_class({3: "person"}, "x") == 3


@pytest.mark.slow
def test_run_config_accepts_user_weights(cfg_factory, two_class, tmp_path):
    weights = two_class
    cfg = cfg_factory(["detector=yolov5s", f"detector.weights={weights}"])
    det = build(cfg.detector)
    assert det.weights == str(weights)
    det.warmup()
    assert det._person == 1
    with pytest.raises(WeightsError, match="no such file"):
        build(OmegaConf.merge(cfg.detector, {"weights": str(tmp_path / "missing.pt")}))
