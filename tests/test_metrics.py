import numpy as np
import pytest

from hode.metrics import coco_map, percentiles_ms
from hode.types import Detections

GT = Detections([[10, 10, 30, 60], [100, 100, 120, 150], [200, 50, 215, 90]], [1, 1, 1])


def test_perfect_detections_score_one():
    r = coco_map([GT], [Detections(GT.boxes, [0.9, 0.8, 0.7])])
    assert r["map50"] == pytest.approx(1.0) and r["map50_95"] == pytest.approx(1.0)


def test_missing_and_false_detections_lower_the_score():
    half = coco_map([GT], [Detections(GT.boxes[:1], [0.9])])
    assert 0.2 < half["map50"] < 0.5
    assert coco_map([GT], [Detections()])["map50"] == 0.0
    shifted = coco_map([GT], [Detections(GT.boxes + 2, [0.9, 0.8, 0.7])])
    assert shifted["map50_95"] < shifted["map50"]


def test_ignore_regions_are_neither_hit_nor_miss():
    gt = Detections(GT.boxes, [1, 1, 1], ignore=np.array([False, False, True]))
    r = coco_map([gt], [Detections(GT.boxes[:2], [0.9, 0.8])])
    assert r["map50"] == pytest.approx(1.0)


def test_crowds_beyond_100_people_are_counted():
    xs = np.arange(300) * 12.0
    boxes = np.stack([xs, np.zeros(300), xs + 10, np.full(300, 30.0)], 1)
    gt = Detections(boxes, np.ones(300))
    r = coco_map([gt], [Detections(boxes, np.linspace(0.99, 0.5, 300))])
    assert r["map50"] == pytest.approx(1.0)  # COCO's default maxDets=100 would cap this near 0.33


def test_no_ground_truth_gives_none_and_percentiles():
    assert coco_map([Detections()], [Detections()])["map50"] is None
    p = percentiles_ms([0.001] * 98 + [0.1, 0.2])
    assert p["p50"] == pytest.approx(1.0) and p["p99"] > 90
