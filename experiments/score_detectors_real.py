"""Accuracy of the official COCO checkpoints on real footage against the hand-checked truth set.

For each detector (registry assets) and each way of running it, the truth set's frames of the footage
(``asset:vtest.avi``) are detected and scored by :func:`hode.score.score`:

* ``frame@640`` / ``frame@1024``: the whole native 768x576 frame letterboxed to that size;
* ``tiles512``: the harness's own 512 grid (``conf/tiling/grid512.yaml``: padded crops at most 704 x 608,
  each at the detector's default imgsz 704, merged by :func:`hode.tiling.merge`).

Predictions are kept down to ``--low-conf`` (0.001) so AP50 sees the whole precision-recall curve;
``AP50@conf`` is the AP of only the boxes a run writes at ``--conf`` (0.25), and recall and FP/frame
are at ``--conf`` too.

    python experiments/score_detectors_real.py [--detectors yolo11n,yolov8n,yolo26n] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hode.assets import fetch  # noqa: E402
from hode.data.video import read_frames  # noqa: E402
from hode.detect.yolo import YoloDetector  # noqa: E402
from hode.errors import HodeError  # noqa: E402
from hode.score import load_truth, score  # noqa: E402
from hode.tiling import Tiler, merge  # noqa: E402

MODES = ("frame@640", "frame@1024", "tiles512")


def detect(det: YoloDetector, frame: np.ndarray, mode: str, tiler: Tiler):
    H, W = frame.shape[:2]
    if mode.startswith("frame@"):
        det.imgsz = int(mode.split("@")[1])
        return det.predict([frame])[0]
    det.imgsz = 704
    tiles = tiler.tiles(H, W)
    parts = det.predict([frame[t.window[1]:t.window[3], t.window[0]:t.window[2]] for t in tiles])
    return merge([(p, t.window, t.core) for p, t in zip(parts, tiles)], H, W, tiler.merge_iou)


def results(k: int, d) -> list[dict]:
    return [dict(image_id=k, category_id=1, bbox=[round(float(x0), 2), round(float(y0), 2), round(float(x1 - x0), 2),
                                                  round(float(y1 - y0), 2)], score=round(float(s), 5))
            for (x0, y0, x1, y1), s in zip(d.boxes, d.scores)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--truth", default="vtest")
    ap.add_argument("--footage", default="vtest.avi", help="asset name of the footage")
    ap.add_argument("--detectors", default="yolo11n,yolov8n,yolo26n")
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--conf", type=float, default=0.25)
    ap.add_argument("--low-conf", type=float, default=0.001)
    ap.add_argument("--json", type=Path, default=None, help="also write the rows here")
    a = ap.parse_args(argv)
    modes = a.modes.split(",")
    bad = [m for m in modes if m not in MODES]
    try:
        if bad:
            raise HodeError(f"unknown mode(s) {bad} (choose from {', '.join(MODES)})")
        truth = load_truth(a.truth)
        frames = read_frames(fetch(a.footage), {im["id"] for im in truth["images"]})
        tiler = Tiler(512, (96, 48), 0.5)
        rows = []
        print(f"{'detector':<9} {'mode':<11} {'AP50':>6} {'AP50@conf':>9} {'recall':>7} {'max rec':>7} "
              f"{'FP/frame':>8} {'s/frame':>7}")
        for name in a.detectors.split(","):
            det = YoloDetector(f"asset:{name}.pt", name=name, conf=a.low_conf, native_scale=False, device="cpu")
            det.warmup()
            for mode in modes:
                preds, t0 = [], time.perf_counter()
                for k, frame in sorted(frames.items()):
                    preds += results(k, detect(det, frame, mode, tiler))
                dt = (time.perf_counter() - t0) / len(frames)
                r = score(preds, a.truth, conf=a.conf)
                hi = score([p for p in preds if p["score"] >= a.conf], a.truth, conf=a.conf)
                row = dict(detector=name, mode=mode, ap50=r["ap50"], ap50_at_conf=hi["ap50"], recall=r["recall"],
                           max_recall=r["max_recall"], fp_per_frame=r["fp_per_frame"], s_per_frame=dt,
                           conf=a.conf, low_conf=a.low_conf, frames=r["frames"], truth_boxes=r["truth_boxes"])
                rows.append(row)
                print(f"{name:<9} {mode:<11} {r['ap50']:6.3f} {hi['ap50']:9.3f} {r['recall']:7.3f} "
                      f"{r['max_recall']:7.3f} {r['fp_per_frame']:8.2f} {dt:7.2f}", flush=True)
    except HodeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if a.json:
        a.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
