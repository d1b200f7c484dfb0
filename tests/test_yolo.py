"""The shipped YOLO weights, for real, on CPU."""
import numpy as np
import pytest
import torch
from torchvision.ops import box_iou

from hode.config import ROOT
from hode.data.synthetic import SyntheticCrowd
from hode.detect.yolo import YoloDetector
from hode.errors import WeightsError
from hode.tiling import Tiler, crop


@pytest.fixture(scope="module")
def detector():
    return YoloDetector(str(ROOT / "weights" / "yolov5n-synth.pt"), name="yolov5n", device="cpu")


@pytest.mark.slow
def test_real_yolo_finds_pedestrians_in_a_tile(detector):
    frame = next(iter(SyntheticCrowd(frames=1, seed=301)))  # a held-out scene
    tiler = Tiler(512, (96, 48))
    tiles = tiler.tiles(*frame.shape)
    gt = frame.gt.select(~frame.gt.ignore)
    # the most crowded tile, whole people only
    def inside(t):
        x0, y0, x1, y1 = t.window
        b = gt.boxes
        return (b[:, 0] >= x0) & (b[:, 2] <= x1) & (b[:, 1] >= y0) & (b[:, 3] <= y1)
    t = max(tiles, key=lambda t: inside(t).sum())
    truth = gt.boxes[inside(t)] - np.array(t.window[:2] * 2, np.float32)
    assert len(truth) >= 5
    [det] = detector.predict([crop(frame.image, t.window)])
    assert len(det) > 0 and det.boxes.shape[1] == 4 and (det.scores >= detector.conf).all()
    iou = box_iou(torch.from_numpy(truth), torch.from_numpy(det.boxes)).numpy()
    recall = (iou.max(axis=1) >= 0.5).mean()
    assert recall >= 0.6, f"recall {recall:.2f} on {len(truth)} people"


@pytest.mark.slow
def test_batch_of_crops_of_different_sizes(detector):
    crops = [np.full((704, 608, 3), 120, np.uint8), np.full((200, 300, 3), 90, np.uint8)]
    out = detector.predict(crops)
    assert len(out) == 2 and all(d.boxes.ndim == 2 for d in out)
    assert detector.predict([]) == []


def test_bad_input_weights_not_a_checkpoint(tmp_path):
    bad = tmp_path / "yolo.pt"
    bad.write_bytes(b"this is not a checkpoint")
    det = YoloDetector(str(bad), device="cpu")
    with pytest.raises(WeightsError, match="not a YOLO checkpoint"):
        det.predict([np.zeros((64, 64, 3), np.uint8)])


def test_bad_input_weights_missing(tmp_path):
    with pytest.raises(WeightsError, match="no such file"):
        YoloDetector(str(tmp_path / "nope.pt"))
