"""Accuracy (COCO mAP through pycocotools, PANDA's maxDets) and timing summaries."""
from __future__ import annotations

import contextlib
import io
from typing import Sequence

import numpy as np

from hode.types import Detections

# PANDA's protocol: crowds hold hundreds of people, so COCO's 100 detections would cap recall.
MAX_DETS = (10, 100, 500)


def coco_map(gts: Sequence[Detections], dets: Sequence[Detections], max_dets: tuple[int, int, int] = MAX_DETS) -> dict:
    """``{"map50", "map50_95"}`` of ``dets`` against ``gts`` (one entry per image).

    Ground truth marked ``ignore`` is scored as a COCO crowd region: matching it is neither a hit
    nor a false positive. Returns ``None`` values when there is no ground-truth person at all.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images, anns, results = [], [], []
    for img_id, (g, d) in enumerate(zip(gts, dets), start=1):
        images.append({"id": img_id, "width": 1, "height": 1})
        ignore = g.ignore if g.ignore is not None else np.zeros(len(g), bool)
        for b, ig in zip(g.boxes.tolist(), ignore.tolist()):
            w, h = b[2] - b[0], b[3] - b[1]
            anns.append({"id": len(anns) + 1, "image_id": img_id, "category_id": 1, "bbox": [b[0], b[1], w, h],
                         "area": w * h, "iscrowd": int(ig), "ignore": int(ig)})
        for b, s in zip(d.boxes.tolist(), d.scores.tolist()):
            results.append({"image_id": img_id, "category_id": 1, "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]],
                            "score": s})
    if not any(a["iscrowd"] == 0 for a in anns):
        return {"map50": None, "map50_95": None}
    if not results:
        return {"map50": 0.0, "map50_95": 0.0}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        gt = COCO()
        gt.dataset = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "person"}]}
        gt.createIndex()
        dt = gt.loadRes(results)
        ev = COCOeval(gt, dt, "bbox")
        ev.params.maxDets = list(max_dets)
        ev.params.imgIds = [im["id"] for im in images]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    # stats[0] = AP@[.5:.95], stats[1] = AP@.5, both at maxDets[2]
    return {"map50": float(max(ev.stats[1], 0.0)), "map50_95": float(max(ev.stats[0], 0.0))}


def percentiles_ms(seconds: Sequence[float]) -> dict:
    """p50/p95/p99 of durations given in seconds, in milliseconds."""
    if not len(seconds):
        return {"p50": None, "p95": None, "p99": None}
    a = np.asarray(seconds, float) * 1000
    return {"p50": float(np.percentile(a, 50)), "p95": float(np.percentile(a, 95)), "p99": float(np.percentile(a, 99))}


def median_ms(seconds: Sequence[float]) -> float | None:
    """Median in milliseconds: robust to the first frame's one-time warm-up (torch init, caches)."""
    return float(np.median(seconds) * 1000) if len(seconds) else None
