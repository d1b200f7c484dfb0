"""What a run writes besides results.json (hode/outputs.py): COCO predictions, MOT det.txt, annotated frames."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from hode.errors import ConfigError
from hode.outputs import SaveSettings, coco_results, draw, mot_lines
from hode.tiling import Tiler
from hode.types import Detections

from support.run import run_py


class Resized:
    """A source whose yielded frame k is footage frame 10 + 2k, shrunk to half size."""

    def geometry(self, k: int) -> tuple[int, float, float]:
        return 10 + 2 * k, 2.0, 2.0


def test_boxes_go_back_to_source_frames_and_pixels():
    det = Detections(np.array([[10, 20, 30, 60]], np.float32), np.array([0.875], np.float32))
    assert coco_results([(3, det)], Resized()) == [
        {"image_id": 16, "category_id": 1, "bbox": [20.0, 40.0, 40.0, 80.0], "score": 0.875}]
    assert coco_results([(3, det)]) == [{"image_id": 3, "category_id": 1, "bbox": [10.0, 20.0, 20.0, 40.0],
                                         "score": 0.875}]
    assert mot_lines([(3, det)], Resized()) == ["17,-1,20.00,40.00,40.00,80.00,0.87500,-1,-1,-1"]
    assert coco_results([(0, Detections())]) == [] and mot_lines([(0, Detections())]) == []


def test_settings_are_checked():
    with pytest.raises(ConfigError, match="save.annotated must be video, frames or null"):
        SaveSettings(annotated="gif")
    with pytest.raises(ConfigError, match="save.mot must be true or false"):
        SaveSettings(mot="yes")


def test_drawing_shades_skipped_tiles_only():
    img = np.full((512, 1024, 3), 200, np.uint8)
    tiles = Tiler(tile=512, pad=(0, 0)).tiles(512, 1024)
    out = draw(img, Detections(), tiles, np.array([[True, False]]))
    assert out[256, 256].tolist() == img[256, 256].tolist()  # kept tile untouched
    assert out[256, 768].mean() < 150  # skipped tile shaded
    assert img[256, 768].tolist() == [200, 200, 200]  # the frame itself is not drawn on


@pytest.mark.slow
def test_a_run_writes_predictions_mot_and_annotated_frames(tmp_path):
    _, r = run_py(tmp_path / "run", "runner=inline", "topology=single", "filter=none", "save.mot=true",
                  "save.annotated=frames", "logger=none", "progress=false", "dataset.width=1024",
                  "dataset.height=768", "dataset.frames=3")
    run = tmp_path / "run"
    preds = json.loads((run / "predictions.json").read_text())
    rows = (run / "det.txt").read_text().splitlines()
    assert len(preds) == len(rows) > 0 and {p["image_id"] for p in preds} <= set(range(r["frames"]))
    assert r["outputs"]["predictions"] == str(run / "predictions.json")
    frames = sorted((run / "annotated").glob("*.jpg"))
    assert len(frames) == r["frames"] and cv2.imread(str(frames[0])) is not None
