"""Where a flow filter's errors are, and how many of them no history-based filter can avoid.

:func:`error_breakdown` splits the false skips (occupied tile not kept) and false keeps (empty tile
kept) of one loop by grid row, column and cause:

- false skip: ``appeared`` (every pedestrian in the tile was absent from the frame's ground truth
  the frame before: walked in at a frame border, from behind water, at a path's far end),
  ``crossed`` (came from a neighbouring tile), ``blind`` (someone was already in the tile the
  frame before: the closed loop had stopped looking), ``mixed``;
- false keep: ``departed`` (occupied the frame before), ``next_to_occupied`` (a neighbour was),
  ``isolated``.

:func:`appearance_bound` counts, from ground truth alone, the *appearance births*: a tile empty at
``t-1`` that holds only pedestrians who were nowhere in the frame at ``t-1``. No count history can
announce these; a filter finds them only by looking at the tile speculatively. With periodic
probing of each tile at the period that is best *for that tile* (an oracle: it knows every tile's
birth rate in advance), a birth is seen after ``(k-1)/2`` frames on average and each probe of an
empty tile is a false keep; the minimum over ``k`` per tile, under a recall constraint, estimates
the closed-loop accuracy any probing filter could reach on these sequences. Every other birth
(a crossing) is counted as missed once, as Comp-1 misses it. An estimate, not a proof: it assumes
an appearing pedestrian stays in the tile for ``k`` frames and is not seen through a neighbour's
padded crop.
"""
from __future__ import annotations

import numpy as np

from hode.filter.tracks import TrackSequence
from hode.tiling import grid_shape


def _cells(boxes: np.ndarray, height: int, width: int, tile: int) -> tuple[np.ndarray, np.ndarray]:
    """Grid row and column of each box centre (as :func:`hode.tiling.cell_counts` counts them)."""
    cx = np.clip((boxes[:, 0] + boxes[:, 2]) / 2, 0, width - 1)
    cy = np.clip((boxes[:, 1] + boxes[:, 3]) / 2, 0, height - 1)
    return (cy // tile).astype(int), (cx // tile).astype(int)


def _occupants(seq: TrackSequence, t: int, tile: int) -> dict[tuple[int, int], list[int]]:
    """Track ids per occupied cell at frame ``t``."""
    if not len(seq.boxes[t]):
        return {}
    out: dict[tuple[int, int], list[int]] = {}
    for pid, r, c in zip(seq.ids[t].tolist(), *_cells(seq.boxes[t], seq.height, seq.width, tile)):
        out.setdefault((int(r), int(c)), []).append(pid)
    return out


def _cell_of(seq: TrackSequence, t: int, tile: int) -> dict[int, tuple[int, int]]:
    if not len(seq.boxes[t]):
        return {}
    return {pid: (int(r), int(c)) for pid, r, c in zip(seq.ids[t].tolist(), *_cells(seq.boxes[t], seq.height, seq.width, tile))}


def error_breakdown(keeps: list[np.ndarray], seqs: list[TrackSequence], tile: int, warmup: int = 5) -> dict:
    """False skips / keeps of ``keeps[i]`` ((T, rows, cols) masks of a loop over ``seqs[i]``), by
    row, column and cause. Causes of false skips need track ids (``TrackSequence.ids``)."""
    rows, cols = grid_shape(seqs[0].height, seqs[0].width, tile)
    fn_map, fp_map = np.zeros((rows, cols), int), np.zeros((rows, cols), int)
    fn_cause = {"appeared": 0, "crossed": 0, "blind": 0, "mixed": 0}
    fp_cause = {"departed": 0, "next_to_occupied": 0, "isolated": 0}
    with_ids = all(s.ids is not None for s in seqs)
    for keep, seq in zip(keeps, seqs):
        truth = seq.counts(tile) > 0
        for t in range(max(warmup, 1), len(seq)):
            fn, fp = truth[t] & ~keep[t], keep[t] & ~truth[t]
            fn_map += fn
            fp_map += fp
            for r, c in zip(*np.nonzero(fp)):
                fp_cause["departed" if truth[t - 1][r, c] else "next_to_occupied"
                         if truth[t - 1][max(0, r - 1):r + 2, max(0, c - 1):c + 2].any() else "isolated"] += 1
            if not with_ids or not fn.any():
                continue
            here, before = _occupants(seq, t, tile), _cell_of(seq, t - 1, tile)
            for r, c in zip(*np.nonzero(fn)):
                kinds = {"appeared" if pid not in before else "blind" if before[pid] == (r, c) else "crossed"
                         for pid in here.get((int(r), int(c)), [])}
                fn_cause["blind" if "blind" in kinds else kinds.pop() if len(kinds) == 1 else "mixed"] += 1
    out = {"false_skips": int(fn_map.sum()), "false_keeps": int(fp_map.sum()),
           "false_skips_by_row": fn_map.sum(1).tolist(), "false_skips_by_col": fn_map.sum(0).tolist(),
           "false_keeps_by_row": fp_map.sum(1).tolist(), "false_keeps_by_col": fp_map.sum(0).tolist(),
           "false_skips_by_cell": fn_map.tolist(), "false_keeps_by_cell": fp_map.tolist(),
           "false_keep_causes": fp_cause}
    if with_ids:
        out["false_skip_causes"] = fn_cause
    return out


def _probe_cost(a: float, e: float, lam: float, kmax: int = 300) -> tuple[float, float]:
    """(missed frames, false keeps) of the probe period minimising ``lam * missed + false keeps``."""
    ks = np.arange(1, kmax + 1)
    k = int(ks[np.argmin(lam * a * (ks - 1) / 2 + e / ks)])
    return a * (k - 1) / 2, e / k


def appearance_bound(seqs: list[TrackSequence], tile: int, target_recall: float = 0.995, warmup: int = 5) -> dict:
    """Appearance births per cell and the oracle-tuned periodic-probing estimate (module doc)."""
    rows, cols = grid_shape(seqs[0].height, seqs[0].width, tile)
    appear, empty, births = np.zeros((rows, cols)), np.zeros((rows, cols)), np.zeros((rows, cols))
    tiles = pos = 0
    for seq in seqs:
        if seq.ids is None:
            return {"error": f"{seq.name} has no track ids"}
        truth = seq.counts(tile) > 0
        for t in range(max(warmup, 1), len(seq)):
            tiles += truth[t].size
            pos += int(truth[t].sum())
            empty += ~truth[t]
            born = truth[t] & ~truth[t - 1]
            births += born
            if born.any():
                here, before = _occupants(seq, t, tile), set(_cell_of(seq, t - 1, tile))
                for r, c in zip(*np.nonzero(born)):
                    appear[r, c] += all(pid not in before for pid in here.get((int(r), int(c)), []))
    crossings = float(births.sum() - appear.sum())
    cells = [(a, e) for a, e in zip(appear.ravel(), empty.ravel()) if a > 0]

    def at(lam: float) -> tuple[float, float]:
        costs = [_probe_cost(a, e, lam) for a, e in cells]
        return crossings + sum(c[0] for c in costs), sum(c[1] for c in costs)

    fn, fp = at(1.0)  # the best accuracy, whatever the recall
    out = {"tile_frames": tiles, "occupied": pos, "births": int(births.sum()), "appearance_births": int(appear.sum()),
           "appearance_births_by_cell": appear.astype(int).tolist(),
           "oracle_probing_best_accuracy": {"accuracy": float(1 - (fn + fp) / max(tiles, 1)),
                                            "recall": float(1 - fn / max(pos, 1)), "false_keeps": round(fp), "false_skips": round(fn)}}
    budget = (1 - target_recall) * pos
    best = None
    for lam in np.logspace(-2, 4, 200):  # the fewest false keeps that keep the recall target
        fn, fp = at(float(lam))
        if fn <= budget and (best is None or fp < best[1]):
            best = (fn, fp)
    out["oracle_probing_at_target_recall"] = (
        {"target_recall": target_recall, "accuracy": float(1 - sum(best) / max(tiles, 1)),
         "recall": float(1 - best[0] / max(pos, 1)),
         "false_keeps": round(best[1]), "false_skips": round(best[0])} if best else
        {"target_recall": target_recall, "error": "unreachable even probing every frame"})
    return out
