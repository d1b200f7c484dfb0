"""Score person detections against a hand-checked truth set (``hode/data/truth/<name>/``).

Predictions are a COCO results list: ``{"image_id": <0-based frame index>, "category_id": 1,
"bbox": [x, y, w, h] in native source pixels, "score": s}``, given as a list, a ``.json`` file, or a
run dir holding ``predictions.json``. Only the truth set's frames are scored; predictions on other
frames are left out, and so are other categories.

Metrics (IoU threshold ``iou``, default 0.5):

* ``ap50``: COCO-style 101-point AP by pycocotools, ``maxDets`` 500, one category (person).
  Truth boxes with ``iscrowd: 1`` are *ignore regions*: a prediction inside one (intersection over
  the prediction's own area >= ``iou``) is neither a hit nor a false positive, and an ignore region
  that nothing covers is not a miss.
* ``recall``: matched truth boxes / truth boxes (ignore regions excluded), using predictions with
  ``score >= conf``; ``max_recall`` is the same with every prediction (the top 500 per frame).
* ``fp_per_frame``: predictions at ``score >= conf`` matching no truth box and no ignore region,
  divided by the number of truth frames.

Matching is pycocotools' own (greedy by score), so recall and AP agree on which prediction hit what.

CLI: ``python -m hode.score <run dir | predictions.json> --truth <name | instances.json> [--json]``.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import sys
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from hode.errors import DataError, HodeError

TRUTH_ROOT = Path(__file__).parent / "data" / "truth"
DEFAULT_CONF = 0.25  # the detector configs' conf when a run does not say
MAX_DETS = 500
PERSON = 1


def truth_names() -> list[str]:
    """Names of the truth sets shipped with the harness."""
    return sorted(p.parent.name for p in TRUTH_ROOT.glob("*/instances.json"))


def truth_path(truth: str | Path) -> Path:
    """``instances.json`` of a truth set given by name, by file, or by its folder."""
    p = Path(truth)
    if isinstance(truth, str) and "/" not in truth and not truth.endswith(".json") and not p.exists():
        named = TRUTH_ROOT / truth / "instances.json"
        if not named.is_file():
            raise DataError(f"unknown truth set '{truth}' (known: {', '.join(truth_names()) or 'none'})")
        return named
    if p.is_dir():
        p = p / "instances.json"
    if not p.is_file():
        raise DataError(f"truth file not found: {p}")
    return p


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{what} {path} is not readable JSON ({type(e).__name__})") from None


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def load_truth(truth: str | Path) -> dict:
    """The truth set as a checked COCO dict (images, annotations, categories)."""
    path = truth_path(truth)
    d = _read_json(path, "truth file")
    if not isinstance(d, dict) or not all(isinstance(d.get(k), list) for k in ("images", "annotations", "categories")):
        raise DataError(f"truth file {path} is not COCO instances (needs lists 'images', 'annotations', 'categories')")
    ids = set()
    for im in d["images"]:
        if not (isinstance(im, dict) and isinstance(im.get("id"), int) and im["id"] >= 0 and _num(im.get("width"))
                and _num(im.get("height"))):
            raise DataError(f"truth file {path}: bad image entry {str(im)[:80]}")
        ids.add(im["id"])
    for a in d["annotations"]:
        b = a.get("bbox") if isinstance(a, dict) else None
        if not (isinstance(b, list) and len(b) == 4 and all(_num(v) for v in b) and b[2] > 0 and b[3] > 0
                and a.get("image_id") in ids and a.get("iscrowd", 0) in (0, 1) and isinstance(a.get("id"), int)):
            raise DataError(f"truth file {path}: bad annotation {str(a)[:80]}")
    return d


def load_predictions(predictions: list[dict] | str | Path) -> tuple[list[dict], float | None]:
    """The checked predictions, and the ``conf`` the run used if a run dir says so."""
    conf = None
    if not isinstance(predictions, list):
        p = Path(predictions)
        if p.is_dir():
            res = p / "results.json"
            if res.is_file():  # the run's own threshold is the fair default
                try:
                    c = json.loads(res.read_text()).get("config", {}).get("detector", {}).get("conf")
                    conf = float(c) if _num(c) else None
                except (OSError, ValueError, AttributeError):
                    conf = None
            p = p / "predictions.json"
        if not p.is_file():
            raise DataError(f"predictions file not found: {p}")
        predictions = _read_json(p, "predictions file")
        if isinstance(predictions, dict) and isinstance(predictions.get("predictions"), list):
            predictions = predictions["predictions"]
        if not isinstance(predictions, list):
            raise DataError(f"predictions file {p} is not a COCO results list")
    out = []
    for i, r in enumerate(predictions):
        b = r.get("bbox") if isinstance(r, dict) else None
        if not (isinstance(b, list) and len(b) == 4 and all(_num(v) for v in b) and b[2] >= 0 and b[3] >= 0
                and isinstance(r.get("image_id"), int) and not isinstance(r.get("image_id"), bool)
                and _num(r.get("score")) and isinstance(r.get("category_id", PERSON), int)):
            raise DataError(f"prediction {i} is not a COCO result (image_id int, bbox [x,y,w,h] with w,h >= 0, "
                            f"score number): {str(r)[:80]}")
        out.append(r)
    return out, conf


def covered_frames(run_dir: str | Path) -> set[int] | None:
    """Frame numbers a run dir's run went through (``dataset.start + k * dataset.every`` for its
    ``frames``), so a run over part of the footage is scored on the truth frames it saw; None when
    the run dir does not say."""
    res = Path(run_dir) / "results.json"
    try:
        r = json.loads(res.read_text())
        ds = r.get("config", {}).get("dataset", {})
        n, start, every = int(r["frames"]), int(ds.get("start") or 0), int(ds.get("every") or 1)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return {start + k * every for k in range(n)}


def score(predictions: list[dict] | str | Path, truth: str | Path, iou: float = 0.5,
          conf: float | None = None, frames: Iterable[int] | None = None) -> dict:
    """AP50, recall and false positives per frame of ``predictions`` on the truth set ``truth``.
    ``conf`` defaults to the run's detector conf (run dir) or 0.25. ``frames`` limits scoring to
    those frame numbers of the truth (default: all of them, or the frames a run dir's run covered)."""
    if not (_num(iou) and 0 < iou < 1):
        raise DataError(f"iou must be a number in (0, 1), got {iou!r}")
    if conf is not None and not _num(conf):
        raise DataError(f"conf must be a number, got {conf!r}")
    gt = load_truth(truth)
    preds, run_conf = load_predictions(predictions)
    conf = float(conf if conf is not None else run_conf if run_conf is not None else DEFAULT_CONF)
    if frames is None and not isinstance(predictions, list) and Path(predictions).is_dir():
        frames = covered_frames(predictions)
    frames = sorted(im["id"] for im in gt["images"] if frames is None or im["id"] in set(frames))
    if not frames:
        raise DataError("none of the truth frames is among the frames scored")
    keep = set(frames)
    preds = [dict(image_id=r["image_id"], category_id=PERSON, bbox=[float(v) for v in r["bbox"]],
                  score=float(r["score"])) for r in preds
             if r["image_id"] in keep and r.get("category_id", PERSON) == PERSON]
    anns = [a for a in gt["annotations"] if a["image_id"] in keep]
    n_truth = sum(1 for a in anns if not a.get("iscrowd", 0))
    out = dict(frames=len(frames), truth_boxes=n_truth,
               ignore_regions=len(anns) - n_truth, predictions=len(preds), iou=float(iou), conf=conf)
    tp = fp = tp_all = 0
    ap = 0.0
    if preds:
        ev = _evaluate(gt, preds, frames, iou)
        ap = _ap(ev)
        for e in ev.evalImgs:
            if e is None:
                continue
            s = np.asarray(e["dtScores"])
            hit = np.asarray(e["dtMatches"][0]) > 0
            ign = np.asarray(e["dtIgnore"][0]).astype(bool)
            above = s >= conf
            tp += int((hit & ~ign & above).sum())
            fp += int((~hit & ~ign & above).sum())
            tp_all += int((hit & ~ign).sum())
    nan = float("nan")
    out.update(ap50=ap if n_truth else nan, recall=tp / n_truth if n_truth else nan,
               max_recall=tp_all / n_truth if n_truth else nan, fp=fp, fp_per_frame=fp / len(frames) if frames else nan)
    return out


def _evaluate(gt: dict, preds: list[dict], frames: list[int], iou: float):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        g = COCO()
        g.dataset = {"images": gt["images"], "categories": [{"id": PERSON, "name": "person"}],
                     "annotations": [dict(a, category_id=PERSON, area=a.get("area", a["bbox"][2] * a["bbox"][3]),
                                          iscrowd=int(a.get("iscrowd", 0))) for a in gt["annotations"]]}
        g.createIndex()
        d = g.loadRes([dict(r) for r in preds])
        ev = COCOeval(g, d, "bbox")
        ev.params.imgIds = frames
        ev.params.catIds = [PERSON]
        ev.params.iouThrs = np.array([iou])
        ev.params.maxDets = [MAX_DETS]
        ev.params.areaRng = [[0, 1e10]]
        ev.params.areaRngLbl = ["all"]
        ev.evaluate()
        ev.accumulate()
    return ev


def _ap(ev) -> float:
    p = ev.eval["precision"][0, :, 0, 0, 0]  # [T, R, K, A, M] -> the 101 recall points
    p = p[p > -1]
    return float(p.mean()) if p.size else 0.0


def format_table(r: dict) -> str:
    rows = [("frames", r["frames"]), ("truth boxes", r["truth_boxes"]), ("ignore regions", r["ignore_regions"]),
            ("predictions", r["predictions"]), (f"AP{round(r['iou'] * 100)}", f"{r['ap50']:.3f}"),
            (f"recall@conf{r['conf']:g}", f"{r['recall']:.3f}"), ("max recall", f"{r['max_recall']:.3f}"),
            (f"FP/frame@conf{r['conf']:g}", f"{r['fp_per_frame']:.2f}")]
    return "\n".join(f"{k:<18} {v}" for k, v in rows)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, like every other bad input
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)


def main(argv: list[str] | None = None) -> int:
    ap = _Parser(prog="python -m hode.score", description=__doc__.split("\n\n")[0])
    ap.add_argument("predictions", help="run dir (with predictions.json) or a COCO results .json")
    ap.add_argument("--truth", required=True, help=f"truth set name ({', '.join(truth_names())}) or instances.json")
    ap.add_argument("--iou", type=float, default=0.5)
    ap.add_argument("--conf", type=float, default=None, help="score threshold for recall/FP (default: the run's, else 0.25)")
    ap.add_argument("--frames", default=None, metavar="A:B",
                    help="score only truth frames A..B (default: all, or those a run dir's run covered)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    try:
        a = ap.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    try:
        frames = None
        if a.frames is not None:
            lo, _, hi = a.frames.partition(":")
            if not (lo.isdigit() and hi.isdigit() and int(lo) <= int(hi)):
                raise DataError(f"--frames must be A:B with 0 <= A <= B, got {a.frames!r}")
            frames = range(int(lo), int(hi) + 1)
        r = score(a.predictions, a.truth, iou=a.iou, conf=a.conf, frames=frames)
    except HodeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps({k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in r.items()})
          if a.json else format_table(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
