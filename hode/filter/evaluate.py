"""Open- and closed-loop evaluation of a flow filter on ground-truth track sequences.

- *open loop*: the filter's history is the true counts (what it was trained on);
- *closed loop*: its history is the counts of what was detected in the tiles it kept, as in the
  pipeline. Detection is simulated by an **ideal detector**: a ground-truth box is found when it
  lies wholly inside a kept tile's padded crop, or its centre lies in a kept tile's cell -- the
  boxes the pipeline's merge would keep from a perfect detector. So closed-loop figures isolate
  the filter's own blind spots from the detector's misses; no YOLO runs.

Scores compare the keep mask with the true occupancy (a tile whose cell holds a box centre) over
the frames from ``warmup`` on (all filters have their full history by then).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from hode.errors import DataError
from hode.filter.base import observe
from hode.filter.motion import cached_change_masks, frame_change_ms, unpack
from hode.filter.tracks import TrackSequence
from hode.tiling import Tiler, cell_counts


def ideal_detect(boxes: np.ndarray, windows: np.ndarray, cores: np.ndarray) -> np.ndarray:
    """Mask of the boxes a perfect detector plus the pipeline's merge would report from these crops."""
    if not len(boxes) or not len(windows):
        return np.zeros(len(boxes), bool)
    b = boxes[:, None, :]
    inside = (b[..., 0] >= windows[None, :, 0]) & (b[..., 1] >= windows[None, :, 1]) & \
             (b[..., 2] <= windows[None, :, 2]) & (b[..., 3] <= windows[None, :, 3])
    cx, cy = (b[..., 0] + b[..., 2]) / 2, (b[..., 1] + b[..., 3]) / 2
    owned = (cx >= cores[None, :, 0]) & (cx < cores[None, :, 2]) & (cy >= cores[None, :, 1]) & (cy < cores[None, :, 3])
    return (inside | owned).any(1)


@dataclass
class LoopResult:
    keep: np.ndarray  # (T, rows, cols) bool, the filter's mask for every frame
    truth: np.ndarray  # (T, rows, cols) bool, true occupancy
    seconds: list[float] = field(default_factory=list)  # filter call durations


def motion_guard(flt):
    """The filter's safeguards when its motion guard is on, else None."""
    guard = getattr(flt, "guard", None)
    return guard if guard is not None and getattr(guard, "motion", 0) else None


def motion_masks(flt, seq: TrackSequence) -> dict | None:
    """The change masks a filter's motion guard needs on ``seq`` (rendered once, cached), or None
    when it has no motion guard."""
    guard = motion_guard(flt)
    if guard is None:
        return None
    if seq.source is None:
        raise DataError(f"filter {getattr(flt, 'name', flt)}: the motion guard needs the frames' pixels, and "
                        f"sequence {seq.name} has tracks only (no rendered frames; e.g. MOT tracks or a time split): "
                        "evaluate it without the guard (filter.guard.motion=0; train_filter: task.probe=walkin)")
    masks = cached_change_masks(seq.source, guard.motion_stride, guard.motion_delta)
    if len(masks["valid"]) != len(seq):
        raise DataError(f"sequence {seq.name}: {len(masks['valid'])} rendered frames for {len(seq)} frames of tracks")
    return masks


def run_loop(flt, seq: TrackSequence, tiler: Tiler, closed: bool, history_len: int = 5,
             recorder: Callable[[np.ndarray, np.ndarray, np.ndarray], None] | None = None) -> LoopResult:
    """Feed ``flt`` one sequence frame by frame, like the pipeline with one frame in flight.

    ``recorder(history, keep, true_counts)`` sees every frame's decision (training rollouts). A
    filter with a motion guard is handed each frame's per-tile change first, as the pipeline
    hands it the frame (:func:`motion_masks`), and every filter gets each frame's found boxes back
    with its counts, as the pipeline gives its merged detections.
    """
    H, W = seq.height, seq.width
    tiles = tiler.tiles(H, W)
    rows, cols = tiler.grid(H, W)
    windows = np.array([t.window for t in tiles], np.float32)
    cores = np.array([t.core for t in tiles], np.float32)
    truth_counts = seq.counts(tiler.tile)
    if hasattr(flt, "reset"):
        flt.reset()
    changes = motion_masks(flt, seq)
    seen: list[np.ndarray] = []
    keeps, secs = [], []
    for t, boxes in enumerate(seq.boxes):
        hist = np.stack(seen[-history_len:]) if seen else np.zeros((0, rows, cols), np.float32)
        t0 = time.perf_counter()
        if changes is not None:
            flt.see_mask(unpack(changes, t), tiler.tile)
        keep = np.asarray(flt(hist, truth_counts[t]), bool)
        secs.append(time.perf_counter() - t0)
        keeps.append(keep)
        if recorder is not None:
            recorder(hist, keep, truth_counts[t])
        found = boxes
        if closed:
            kept = keep.reshape(-1)
            found = boxes[ideal_detect(boxes, windows[kept], cores[kept])]
            seen.append(cell_counts(found, H, W, tiler.tile))
        else:
            seen.append(truth_counts[t])
        observe(flt, seen[-1], keep, found)
    return LoopResult(np.stack(keeps), truth_counts > 0, secs)


def tile_scores(keep: np.ndarray, truth: np.ndarray) -> dict:
    """Accuracy, precision, recall and F1 of "tile holds pedestrians", and the fraction skipped."""
    keep, truth = keep.astype(bool), truth.astype(bool)
    tp = int((keep & truth).sum())
    fp = int((keep & ~truth).sum())
    fn = int((~keep & truth).sum())
    n = keep.size
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"accuracy": (n - fp - fn) / n if n else None, "precision": precision, "recall": recall, "f1": f1,
            "skipped": float(1 - keep.mean()) if n else None, "tiles": n, "missed": fn}


def evaluate(flt, seqs: list[TrackSequence], tiler: Tiler, closed: bool, warmup: int = 5,
             history_len: int = 5) -> dict:
    """Scores over all sequences (frames from ``warmup`` on) and the median filter latency."""
    keeps, truths, secs = [], [], []
    for seq in seqs:
        r = run_loop(flt, seq, tiler, closed, history_len)
        keeps.append(r.keep[warmup:])
        truths.append(r.truth[warmup:])
        secs += r.seconds[warmup:]
    out = tile_scores(np.concatenate(keeps), np.concatenate(truths))
    out["latency_ms"] = float(np.median(secs) * 1000) if secs else None
    guard = motion_guard(flt)
    if out["latency_ms"] is not None and guard is not None:
        # the loop replayed cached change masks: add the pixel work the camera does per frame
        out["pixel_ms"] = frame_change_ms(seqs[0].source, guard.motion_stride, guard.motion_delta)
        out["latency_ms"] += out["pixel_ms"]
    out["frames"] = sum(len(k) for k in keeps)
    return out
