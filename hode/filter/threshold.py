"""Choosing the keep threshold on validation data for a target recall of occupied tiles."""
from __future__ import annotations

import numpy as np

from hode.filter.evaluate import evaluate
from hode.filter.tracks import TrackSequence
from hode.tiling import Tiler


def threshold_for_recall(probs: np.ndarray, target: np.ndarray, recall: float) -> float:
    """The largest threshold ``t`` with recall(``probs >= t``) >= ``recall`` on these samples."""
    pos = np.sort(np.asarray(probs, np.float64)[np.asarray(target) > 0])
    if not len(pos):
        return 0.5
    k = int(np.floor((1.0 - recall) * len(pos)))  # positives we may lose
    return float(np.clip(pos[min(k, len(pos) - 1)], 1e-6, 1 - 1e-6))


def best_f1_threshold(probs: np.ndarray, target: np.ndarray) -> float:
    """The threshold with the best F1 of "tile occupied" on these samples (the net's own belief);
    among equally good thresholds the lowest, which keeps the most occupied tiles."""
    p = np.asarray(probs, np.float64).ravel()
    t = np.asarray(target).ravel() > 0
    if not t.any():
        return 0.5
    order = np.argsort(-p, kind="stable")
    p, t = p[order], t[order]
    tp = np.cumsum(t)
    fp = np.cumsum(~t)
    f1 = 2 * tp / (2 * tp + fp + (t.sum() - tp))
    last = np.r_[p[1:] != p[:-1], True]  # only cut between distinct probabilities
    f1 = np.where(last, f1, -1)
    i = int(np.nonzero(f1 >= f1.max() - 1e-12)[0][-1])  # ties: the lowest threshold (recall first)
    return float(np.clip(p[i], 1e-6, 1 - 1e-6))


def scores_at(probs: np.ndarray, target: np.ndarray, threshold: float) -> dict:
    keep, truth = np.asarray(probs) >= threshold, np.asarray(target) > 0
    tp, fp, fn = (keep & truth).sum(), (keep & ~truth).sum(), (~keep & truth).sum()
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"recall": float(recall), "precision": float(precision), "f1": float(f1),
            "skipped": float(1 - keep.mean()), "accuracy": float((keep == truth).mean())}


def closed_loop_threshold(make_filter, seqs: list[TrackSequence], tiler: Tiler, recall: float,
                          lo: float = 1e-4, hi: float = 0.9, steps: int = 14) -> tuple[float, dict]:
    """The largest threshold whose *closed-loop* recall on ``seqs`` reaches ``recall``.

    ``make_filter(threshold)`` builds the filter. The closed loop is not monotone in the threshold
    (a skip changes later histories), so this is a bisection in logit space that keeps the best
    threshold seen to satisfy the target; returns it with its closed-loop scores.
    """
    logit = lambda p: np.log(p / (1 - p))  # noqa: E731
    sig = lambda z: float(1 / (1 + np.exp(-z)))  # noqa: E731
    a, b = logit(lo), logit(hi)
    best_t, best = lo, evaluate(make_filter(lo), seqs, tiler, closed=True)
    if best["recall"] < recall:
        return lo, best  # even the most cautious threshold misses: report it as is
    for _ in range(steps):
        mid = (a + b) / 2
        r = evaluate(make_filter(sig(mid)), seqs, tiler, closed=True)
        if r["recall"] >= recall:
            a = mid
            if sig(mid) > best_t:
                best_t, best = sig(mid), r
        else:
            b = mid
    return best_t, best


def smallest_for_recall(make_filter, seqs: list[TrackSequence], tiler: Tiler, recall: float,
                        lo: float, hi: float, steps: int = 14) -> tuple[float, dict]:
    """The smallest knob value in ``[lo, hi]`` (recall grows with it, e.g. ``walkin_beta``) whose
    closed-loop recall on ``seqs`` reaches ``recall``: a bisection in log space that keeps the
    smallest value seen to satisfy the target. When even ``hi`` misses, ``hi`` with its scores."""
    a, b = np.log(lo), np.log(hi)
    best_v, best = hi, evaluate(make_filter(hi), seqs, tiler, closed=True)
    if best["recall"] < recall:
        return hi, best
    for _ in range(steps):
        mid = (a + b) / 2
        r = evaluate(make_filter(float(np.exp(mid))), seqs, tiler, closed=True)
        if r["recall"] >= recall:
            b = mid
            if float(np.exp(mid)) < best_v:
                best_v, best = float(np.exp(mid)), r
        else:
            a = mid
    return best_v, best
