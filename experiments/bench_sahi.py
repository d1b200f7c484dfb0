"""HODE against SAHI on one machine: the same weights, the same real 4K frames, one process, one run.

The frames are OpenCV's pedestrian footage ``asset:vtest.avi`` (768x576) upscaled to ``--size``
(default 2880x2160, its own 4:3 aspect at 4K height) by the harness's own resize; the weights are
the asset ``yolo11n.pt`` (COCO; only ``person`` is scored). For every truth frame ``t`` of the
hand-checked set (``hode/data/truth/vtest``, 14 frames, 81 people) the window ``t-history .. t``
is run, so the filter sees its frame history as in a real run; every frame of the window is timed,
AP50 and recall are scored on the truth frames (:func:`hode.score.score`, boxes scaled back to the
native 768x576).

Methods (``--methods``), interleaved window by window so the machine's load hits all alike:

* ``sahi``: SAHI's ``get_sliced_prediction`` as its docs call it: 512 slices, overlap 0.2, its default
  full-frame standard pass on, no ``image_size`` (so ultralytics' 640: slices are upscaled).
* ``sahi_nostd``: the same without the standard pass.
* ``sahi512``: no standard pass, ``image_size=512`` (slices at native scale: SAHI's fastest here).
* ``sahi1024``: ``sahi`` with 1024 slices (what a SAHI user would pick for people this large).
* ``tiled``: the harness's tiled path, ``runner=inline filter=none`` (every tile, no batching).
* ``hode``: ``runner=inline filter=st`` (transferred to this grid: Comp-1 + motion guard), a frame's
  tiles in one detector call (``runner.backend.batch=0 detector.canvas=[704,608]``).
* ``hode_nobatch``: ``hode`` without the canvas (each tile shape its own call, ``runner.backend.batch: 8``).
* ``tiled1024`` / ``hode1024``: ``tiled`` / ``hode_nobatch`` with tiles as large as the footage's
  people (upscaled 3.75x they are 135-550 px tall, taller than a 512 tile): ``tiling=grid1024
  detector.scale=0.5`` (1024 tiles padded by [192, 96]; crops <= 1408x1216 run as 704x608 inputs).

SAHI and the harness load the same file; ultralytics runs torch on ``cpu_count - 1`` threads on a
CPU (1 on a 2-core machine) for both. The harness paths run through :func:`hode.tasks.run.build_pipeline` and :class:`hode.pipeline.Pipeline`
(what ``python run.py`` runs) on one started inline backend per detector setting. SAHI and ``tiled`` do
not depend on history, so they run on the truth frames only (timed there).

    python experiments/bench_sahi.py [--frames 0,60,...] [--history 5] [--json outputs/bench_sahi.json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hode import assets  # noqa: E402
from hode.config import compose_config  # noqa: E402
from hode.data.video import read_frames, resize  # noqa: E402
from hode.errors import HodeError  # noqa: E402
from hode.score import load_truth, score  # noqa: E402
from hode.tasks.run import build_pipeline  # noqa: E402
from hode.types import Detections, Frame  # noqa: E402

METHODS = ("sahi", "sahi_nostd", "sahi512", "sahi1024", "tiled", "hode", "hode_nobatch", "tiled1024", "hode1024")
# Tiles as large as the footage's people (conf/tiling/grid1024.yaml: 1024 px cells padded by
# [192, 96]), detected at half size: crops <= 1408 x 1216 -> 704 x 608 inputs, a 512 tile's cost each.
T1024 = ["tiling=grid1024", "detector.scale=0.5"]
SAHI = {"sahi": dict(std=True, imgsz=None), "sahi_nostd": dict(std=False, imgsz=None),
        "sahi512": dict(std=False, imgsz=512), "sahi1024": dict(std=True, imgsz=None, slice_px=1024)}
BASE = ["dataset=video", "dataset.path=asset:vtest.avi", "dataset.golden=false", "topology=single",
        "runner=inline", "logger=none", "progress=false"]
HARNESS = {
    "tiled": ["filter=none"],
    "hode": ["filter=st", "runner.backend.batch=0", "detector.canvas=[704,608]"],
    "hode_nobatch": ["filter=st"],
    "tiled1024": ["filter=none", *T1024],
    "hode1024": ["filter=st", *T1024],
}


class SahiRunner:
    """SAHI's sliced prediction of one frame, person boxes in frame pixels."""

    def __init__(self, weights: Path, conf: float, std: bool, imgsz: int | None, slice_px: int = 512) -> None:
        from sahi import AutoDetectionModel

        self.model = AutoDetectionModel.from_pretrained(model_type="ultralytics", model_path=str(weights),
                                                        confidence_threshold=conf, device="cpu", image_size=imgsz)
        self.std, self.slice = std, slice_px

    def __call__(self, bgr: np.ndarray) -> Detections:
        from sahi.predict import get_sliced_prediction

        rgb = np.ascontiguousarray(bgr[:, :, ::-1])  # SAHI takes RGB numpy images
        res = get_sliced_prediction(rgb, self.model, slice_height=self.slice, slice_width=self.slice, overlap_height_ratio=0.2,
                                    overlap_width_ratio=0.2, perform_standard_pred=self.std, verbose=0)
        people = [p for p in res.object_prediction_list if p.category.name == "person"]
        return Detections(np.array([p.bbox.to_xyxy() for p in people], np.float32).reshape(-1, 4),
                          np.array([p.score.value for p in people], np.float32))


class HarnessRunner:
    """One harness configuration: a started backend, a fresh pipeline (filter state) per window."""

    def __init__(self, overrides: list[str]) -> None:
        self.cfg = compose_config(overrides)
        pipe, self.backend = build_pipeline(self.cfg, progress=False)
        self.backend.start()  # weights loaded and warmed up before any timing
        self.tiles = self.processed = 0

    def __call__(self, frames: list[Frame]) -> tuple[dict[int, Detections], list[float]]:
        pipe, _ = build_pipeline(self.cfg, backend=self.backend, progress=False)
        h, w = frames[0].shape
        pipe.fit((w, h))  # as run.py: filter=st transfers to this tile grid
        asked: dict[int, float] = {}
        times: list[float] = []

        def feed():
            for f in frames:
                asked[f.index] = time.perf_counter()
                yield f

        pipe.on_frame = lambda r: times.append(time.perf_counter() - asked[r.index])
        trace = pipe.run(feed())
        self.tiles += sum(r.tiles_total for r in trace.records)
        self.processed += sum(r.items for r in trace.records)
        return {r.index: r.detections for r in trace.records}, times

    def close(self) -> None:
        self.backend.close()


def coco(dets: dict[int, Detections], sx: float, sy: float) -> list[dict]:
    """COCO results in native footage pixels."""
    out = []
    for number, d in dets.items():
        for (x0, y0, x1, y1), s in zip(d.boxes.tolist(), d.scores.tolist()):
            out.append({"image_id": number, "category_id": 1, "score": s,
                        "bbox": [x0 * sx, y0 * sy, (x1 - x0) * sx, (y1 - y0) * sy]})
    return out


def run(methods: list[str], truth_frames: list[int], history: int, size: tuple[int, int],
        log=lambda *a: print(*a, flush=True)) -> dict:
    video = assets.resolve("asset:vtest.avi")
    weights = assets.local_path("asset:yolo11n.pt")
    size_over = [f"dataset.width={size[0]}", f"dataset.height={size[1]}"]
    native = read_frames(video, {n for t in truth_frames for n in range(max(0, t - history), t + 1)})
    sx, sy = 768 / size[0], 576 / size[1]
    runners: dict[str, object] = {}
    for m in methods:
        if m in SAHI:
            runners[m] = SahiRunner(weights, 0.25, **SAHI[m])
            runners[m](resize(native[truth_frames[0]], size))  # warm-up, untimed
        else:
            runners[m] = HarnessRunner(BASE + size_over + HARNESS[m])
    times: dict[str, list[float]] = {m: [] for m in methods}
    dets: dict[str, dict[int, Detections]] = {m: {} for m in methods}
    for t in truth_frames:
        window = [Frame(n, resize(native[n], size), None) for n in range(max(0, t - history), t + 1)]
        for m in methods:
            if m in SAHI:  # no history: only the truth frame
                t0 = time.perf_counter()
                dets[m][t] = runners[m](window[-1].image)
                times[m].append(time.perf_counter() - t0)
            else:
                got, ts = runners[m](window[-1:] if m.startswith("tiled") else window)
                times[m] += ts
                dets[m][t] = got[t]
        log(f"frame {t}: " + "  ".join(f"{m} {times[m][-1]:.2f}s" for m in methods))
    rows = {}
    for m in methods:
        s = score(coco(dets[m], sx, sy), "vtest", frames=truth_frames)
        r = runners[m]
        rows[m] = {"s_per_frame_median": statistics.median(times[m]), "s_per_frame_mean": statistics.fmean(times[m]),
                   "frames_timed": len(times[m]), "ap50": s["ap50"], "recall": s["recall"],
                   "fp_per_frame": s["fp_per_frame"], "truth_boxes": s["truth_boxes"]}
        if isinstance(r, HarnessRunner):
            rows[m]["tiles_skipped"] = 1 - r.processed / max(r.tiles, 1)
            r.close()
    ref = rows.get("sahi", next(iter(rows.values())))["s_per_frame_median"]
    for row in rows.values():
        row["speed_x_sahi"] = ref / row["s_per_frame_median"]
    native_dets = {m: {t: (d.boxes * np.array([sx, sy, sx, sy], np.float32)).round(1).tolist()
                       for t, d in dets[m].items()} for m in methods}
    return {"size": list(size), "truth_frames": truth_frames, "history": history, "weights": "asset:yolo11n.pt",
            "torch_threads": torch.get_num_threads(), "methods": rows, "detections": native_dets}


def table(res: dict) -> str:
    lines = [f"{'method':<14} {'s/frame med':>11} {'mean':>6} {'n':>4} {'x SAHI':>7} {'AP50':>6} {'recall':>6} "
             f"{'FP/fr':>6} {'skipped':>8}"]
    for m, r in res["methods"].items():
        skip = f"{r['tiles_skipped']:.1%}" if "tiles_skipped" in r else "-"
        lines.append(f"{m:<14} {r['s_per_frame_median']:>11.2f} {r['s_per_frame_mean']:>6.2f} {r['frames_timed']:>4} "
                     f"{r['speed_x_sahi']:>7.2f} {r['ap50']:>6.3f} {r['recall']:>6.3f} {r['fp_per_frame']:>6.2f} {skip:>8}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--methods", default=",".join(METHODS[:5]), help=f"comma list of {', '.join(METHODS)}")
    ap.add_argument("--frames", default=None, help="truth frame numbers, comma list (default: all 14)")
    ap.add_argument("--history", type=int, default=5, help="frames run before each truth frame (filter history)")
    ap.add_argument("--size", default="2880x2160", help="WxH the frames are upscaled to")
    ap.add_argument("--json", default="outputs/bench_sahi.json", help="where the results go")
    a = ap.parse_args(argv)
    try:
        methods = [m for m in a.methods.split(",") if m]
        bad = [m for m in methods if m not in METHODS]
        if bad or not methods:
            raise HodeError(f"--methods: unknown {bad} (known: {', '.join(METHODS)})")
        known = sorted(im["id"] for im in load_truth("vtest")["images"])
        frames = known if a.frames is None else [int(v) for v in a.frames.split(",") if v.strip()]
        if not frames or any(f not in known for f in frames):
            raise HodeError(f"--frames must be truth frames of vtest ({known})")
        w, _, h = a.size.partition("x")
        if not (w.isdigit() and h.isdigit()):
            raise HodeError(f"--size must be WxH, got {a.size!r}")
        if a.history < 0:
            raise HodeError(f"--history must be >= 0, got {a.history}")
        res = run(methods, frames, a.history, (int(w), int(h)))
    except (HodeError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(table(res))
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps(res, indent=1))
    print(f"results: {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
