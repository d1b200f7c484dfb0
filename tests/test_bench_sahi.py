"""Batched tile inference and the HODE-vs-SAHI experiment, with real YOLO11n on real footage (CPU).

The footage is the asset ``vtest.avi`` (fetched once, cached); frame 0 holds three well separated
people (hand-checked truth ``hode/data/truth/vtest``).
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torchvision.ops import box_iou

from hode import assets
from hode.cluster.inline import InlineBackend
from hode.cluster.topology import Topology
from hode.config import load_option
from hode.data.coco import load_truth
from hode.edge.device import DeviceLoop, TileJob
from hode.edge.pacing import Pacer
from hode.score import truth_path
from hode.tiling import Tiler, crop
from hode.types import WorkItem

pytestmark = pytest.mark.slow  # real YOLO inference


@pytest.fixture(scope="module")
def frame0():
    from experiments.bench_sahi import read_frames

    return read_frames(assets.resolve("asset:vtest.avi"), {0})[0]


def test_batched_inline_detections_equal_unbatched(frame0):
    """A frame's tiles through runner=inline in one detector call (batch 0, canvas) give the same
    boxes as one call per tile (batch 1); without the canvas the edge tiles, all of other shapes,
    split the frame into one call per shape. A live worker with batched inference runs a request's
    tiles in one call too, with the same boxes."""
    tiles = Tiler().tiles(*frame0.shape[:2])  # 768x576: a 2x2 grid of 4 crop shapes
    items = [WorkItem(0, k, t.window, crop(frame0, t.window), tile=t) for k, t in enumerate(tiles)]
    cfg = load_option("detector", "yolo11n")
    cfg.device, cfg.conf = "cpu", 0.05  # low conf: marginal boxes too are compared
    backend = InlineBackend(Topology([{"name": "local", "model": "yolo11n", "device": "cpu"}], name="single"), cfg)
    backend.start()
    det = backend._detector("yolo11n")
    n, predict = [0], det.model.predict
    det.model.predict = lambda *a, **k: n.__setitem__(0, n[0] + 1) or predict(*a, **k)  # count network calls
    got, calls = {}, {}
    for name, batch, canvas in (("one", 1, (704, 608)), ("all", 0, (704, 608)), ("shapes", 0, None)):
        backend.batch, det.canvas, n[0] = batch, canvas, 0
        backend.submit(0, items, [0] * len(items))
        got[name] = {c.item_id: c.detections for c in backend.poll()}
        calls[name] = n[0]
    # A live worker's device loop with batched inference: a request's tiles in one detector call
    loop, n[0], det.canvas = DeviceLoop(det, Pacer("local", "yolo11n", batched=True)), 0, (704, 608)
    jobs = [TileJob(0, it.item_id, it.crop) for it in items]
    assert loop.run(jobs) and all(j.error is None and j.finished >= j.started for j in jobs)
    assert [j.in_batch for j in jobs] == [False, True, True, True] and loop.processed == 4 and loop.queue_len == 0
    got["worker"], calls["worker"] = {j.item_id: j.detections for j in jobs}, n[0]
    backend.close()
    assert calls == {"one": 4, "all": 1, "shapes": 4, "worker": 1}
    assert sum(len(d) for d in got["one"].values()) >= 3
    for k, it in enumerate(items):
        a, b = got["one"][k], got["all"][k]
        for other in (b, got["worker"][k]):
            assert len(a) == len(other), f"tile {k}: {len(a)} boxes alone, {len(other)} in the batch"
            assert np.allclose(a.boxes, other.boxes, atol=1e-2) and np.allclose(a.scores, other.scores, atol=1e-3)
        h, w = it.crop.shape[:2]  # boxes stay inside the crop, not on the canvas' padding
        assert (b.boxes[:, 2] <= w + 1e-3).all() and (b.boxes[:, 3] <= h + 1e-3).all()


def test_bench_runs_and_both_paths_find_the_same_people(frame0, tmp_path):
    """experiments/bench_sahi.py end to end on native 768x576 frames: SAHI (real ``sahi``) and HODE
    both find each of frame 0's three people, and the JSON and table come out."""
    pytest.importorskip("sahi", reason="pip install -e '.[bench]' (the sahi package)")
    from experiments import bench_sahi

    res = bench_sahi.run(["sahi512", "hode"], [0], history=1, size=(768, 576), log=lambda *_: None)
    assert set(res["methods"]) == {"sahi512", "hode"}
    truth = load_truth(truth_path("vtest"))[0]
    people = torch.from_numpy(truth[0][~truth[1]].astype(np.float32))
    assert len(people) == 3
    found = {}
    for m, r in res["methods"].items():
        assert r["frames_timed"] == 1 and r["s_per_frame_median"] > 0
        assert r["truth_boxes"] == 3 and r["recall"] == 1.0, f"{m}: recall {r['recall']}"
        found[m] = res["detections"][m][0]
    for m, boxes in found.items():
        iou = box_iou(people, torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)).numpy()
        assert (iou.max(axis=1) >= 0.5).all(), f"{m} misses a person"
    a, b = (torch.tensor(found[m], dtype=torch.float32).reshape(-1, 4) for m in ("sahi512", "hode"))
    match = box_iou(a, b).numpy()
    assert (match.max(axis=1) >= 0.7).sum() >= 3  # the same three people, nearly the same boxes
    assert "x SAHI" in bench_sahi.table(res)
    json.dumps(res)


@pytest.mark.parametrize("canvas", [[704], [700, 608], "704x608", [704, 0]])
def test_bad_canvas_is_one_config_line(canvas):
    from hode.detect.yolo import YoloDetector
    from hode.errors import ConfigError

    with pytest.raises(ConfigError, match=r"detector.canvas must be null or \[height, width\]"):
        YoloDetector("asset:yolo11n.pt", device="cpu", canvas=canvas)


def test_bad_canvas_is_refused_when_the_config_is_composed():
    """Before golden labels or workers: compose_config is what run.py checks first."""
    from hode.config import compose_config
    from hode.errors import ConfigError

    with pytest.raises(ConfigError, match=r"detector.canvas must be null"):
        compose_config(["detector.canvas=[700,608]"])
