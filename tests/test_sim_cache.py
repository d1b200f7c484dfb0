"""The detection cache: misses run the real detector, hits replay, files persist, keys invalidate."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from hode.config import load_option
from hode.detect.cache import DetectionCache, dataset_identity
from hode.errors import DataError

DATASET = {"_target_": "hode.data.synthetic.SyntheticCrowd", "seed": 1, "width": 1024, "frames": 3}
W = (0, 0, 96, 64)


@pytest.fixture
def detector_cfg(tmp_path):
    cfg = load_option("detector", "yolov5n")
    weights = tmp_path / "w.pt"
    shutil.copyfile(cfg.weights, weights)  # our own copy: the test changes it
    cfg.weights = str(weights)
    cfg.conf = 0.001  # plenty of boxes even from weak weights
    return cfg


def crop() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, (64, 96, 3), dtype=np.uint8)


@pytest.mark.slow
def test_miss_runs_detector_then_hits_and_persists(tmp_path, detector_cfg):
    c = DetectionCache(tmp_path / "cache", DATASET, detector_cfg)
    (d1,) = c.detections("yolov5n", [(0, W)], [crop()])
    assert (c.misses, c.hits) == (1, 0)
    (d2,) = c.detections("yolov5n", [(0, W)], [None])  # a hit needs no pixels
    assert (c.misses, c.hits) == (1, 1) and d2 is d1
    c.save()
    folders = list((tmp_path / "cache").iterdir())  # one folder of shards per key
    assert len(folders) == 1 and "yolov5n" in folders[0].name and len(list(folders[0].glob("*.npz"))) == 1
    again = DetectionCache(tmp_path / "cache", dict(DATASET, frames=50), detector_cfg)  # frame count is not identity
    (d3,) = again.detections("yolov5n", [(0, W)])
    assert again.misses == 0 and len(d3) == len(d1) > 0
    assert np.array_equal(d3.boxes, d1.boxes) and np.array_equal(d3.scores, d1.scores)
    with pytest.raises(DataError, match="lacks 1 item"):  # another window: a miss, and no pixels to compute it
        again.detections("yolov5n", [(1, W)])


@pytest.mark.slow
def test_other_weights_settings_or_dataset_invalidate(tmp_path, detector_cfg):
    c = DetectionCache(tmp_path / "cache", DATASET, detector_cfg)
    c.detections("yolov5n", [(0, W)], [crop()])
    c.save()
    with open(detector_cfg.weights, "ab") as f:  # retrained weights: another hash
        f.write(b"\0")
    for ds, cfg in ((DATASET, detector_cfg), (dict(DATASET, seed=2), None)):
        fresh = DetectionCache(tmp_path / "cache", ds, cfg if cfg is not None else detector_cfg)
        with pytest.raises(DataError, match="lacks"):
            fresh.detections("yolov5n", [(0, W)])
    detector_cfg.conf = 0.5  # another threshold: another file as well
    assert DetectionCache(tmp_path / "cache", DATASET, detector_cfg).store("yolov5n").path != c.store("yolov5n").path
    assert dataset_identity(DATASET) != dataset_identity(dict(DATASET, seed=2))


def test_concurrent_writers_merge_and_corrupt_file_is_recomputed(tmp_path, detector_cfg, caplog):
    a = DetectionCache(tmp_path / "cache", DATASET, detector_cfg)
    b = DetectionCache(tmp_path / "cache", DATASET, detector_cfg)
    sa, sb = a.store("yolov5n"), b.store("yolov5n")
    from hode.types import Detections

    sa.put(0, W, Detections([[0, 0, 5, 5]], [0.5]))
    sb.put(1, W, Detections())
    sa.save()
    sb.save()  # must not drop a's entry
    merged = DetectionCache(tmp_path / "cache", DATASET, detector_cfg).store("yolov5n")
    assert set(merged.entries) == {(0, W), (1, W)} and len(merged.entries[(0, W)]) == 1
    for shard in merged.path.glob("*.npz"):
        shard.write_bytes(b"not an npz")
    c = DetectionCache(tmp_path / "cache", DATASET, detector_cfg)
    assert c.store("yolov5n").entries == {} and "unreadable" in caplog.text
