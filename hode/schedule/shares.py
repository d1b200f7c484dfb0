"""Shares of a frame's work per node: the DQN's discrete action space and share -> count rounding.

The paper's action is the fraction of the frame's tiles each node gets, summing to 1, discretised
at 0.1 (eqs. 2-4). With ``K = 1/step`` units dealt to ``M`` nodes that is every composition of K
into M non-negative parts: C(K+M-1, M-1) actions (1001 for five nodes at 0.1).
"""
from __future__ import annotations

from itertools import combinations
from math import comb
from typing import Sequence

import numpy as np

from hode.errors import check


def simplex_size(nodes: int, step: float = 0.1) -> int:
    units = _units(step)
    return comb(units + nodes - 1, nodes - 1)


def simplex_actions(nodes: int, step: float = 0.1) -> np.ndarray:
    """Every share vector on the simplex grid, ``(A, nodes)`` float32, each row summing to 1.

    Stars and bars: choosing where the ``nodes - 1`` bars go among ``units + nodes - 1`` slots
    gives each composition exactly once, in a fixed (lexicographic) order, so an action index
    means the same share vector in training and at run time.
    """
    check(isinstance(nodes, int) and nodes >= 1, f"the action simplex needs at least one node, got {nodes!r}")
    units = _units(step)
    rows = []
    for bars in combinations(range(units + nodes - 1), nodes - 1):
        edges = (-1, *bars, units + nodes - 1)
        rows.append([edges[k + 1] - edges[k] - 1 for k in range(nodes)])
    return np.asarray(rows, np.float32) / units


def _units(step: float) -> int:
    check(isinstance(step, (int, float)) and not isinstance(step, bool) and 0 < step <= 1,
          f"scheduler.step (share granularity) must be a number in (0, 1], got {step!r}")
    units = round(1 / step)
    check(abs(units * step - 1) < 1e-6, f"scheduler.step must divide 1 evenly (0.1, 0.2, 0.25 ...), got {step!r}")
    return units


def known_speeds(nodes) -> np.ndarray:
    """Each node's measured speed, with the mean of the measured up nodes standing in for a node
    that has not returned anything yet (its ``speed`` is a placeholder, e.g. 1 item/s, that would
    read as a near-dead node and starve it of the very work that would measure it)."""
    v = np.array([float(n.speed) for n in nodes], np.float64)
    known = np.array([n.measured and n.up for n in nodes], bool)
    unknown = np.array([not n.measured for n in nodes], bool)
    if unknown.any():
        v[unknown] = v[known].mean() if known.any() else 1.0
    return v


def give_probes(counts: Sequence[int], nodes, stale: Sequence[bool] | None = None) -> np.ndarray:
    """``counts`` with one item moved to every up node that got none and whose speed is unknown
    (never measured) or ``stale``, taken from the node with the most: one tile is the price of
    learning a node's speed. When no up node has been measured yet (the first frame) there is
    nothing to prefer one by: equal shares."""
    c = np.asarray(counts, np.int64).copy()
    up = np.array([n.up for n in nodes], bool)
    if up.any() and not any(n.measured for n in nodes if n.up):
        return largest_remainder(up / up.sum(), int(c.sum()))
    for i, n in enumerate(nodes):
        if n.up and (not n.measured or (stale is not None and stale[i])) and c[i] == 0:
            j = int(np.argmax(c))
            if c[j] <= 1:
                break
            c[j] -= 1
            c[i] += 1
    return c


def largest_remainder(shares: Sequence[float], total: int) -> np.ndarray:
    """Integer counts summing to ``total`` as close as possible to ``shares * total`` (Hamilton's method).

    Everyone first gets the floor of their quota; the units left over go to the largest fractional
    remainders (ties to the earlier node, so the result is deterministic). Shares need not be
    normalised; all-zero shares are refused.
    """
    s = np.asarray(shares, np.float64)
    check(total >= 0 and np.all(s >= 0) and s.sum() > 0, f"cannot round shares {s.tolist()} of {total} items")
    return largest_remainder_rows(s[None], total)[0]


def largest_remainder_rows(shares: np.ndarray, total: int) -> np.ndarray:
    """:func:`largest_remainder` of every row of ``shares`` (``(A, M)``, each row with a positive sum)
    at once, unchecked: how :func:`best_on_grid` rounds a whole share grid."""
    s = np.asarray(shares, np.float64)
    quota = s / s.sum(axis=1, keepdims=True) * total
    counts = np.floor(quota + 1e-9).astype(np.int64)
    left = total - counts.sum(axis=1, keepdims=True)
    order = np.argsort(-(quota - counts), axis=1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(s.shape[1])[None, :].repeat(len(s), 0), axis=1)
    return counts + (rank < left)


def earliest_finish_counts(total: int, queue: Sequence[float], speed: Sequence[float],
                           up: Sequence[bool] | None = None) -> np.ndarray:
    """Counts of ``total`` equal items that minimise the latest finish time ``(q_i + x_i) / v_i``.

    Water-filling one item at a time onto the node that would finish it first; nodes that are
    down or have no speed get nothing. Used by ``greedy`` and ``oracle``.
    """
    q = np.asarray(queue, np.float64)
    v = np.asarray(speed, np.float64)
    ok = np.ones(len(q), bool) if up is None else np.asarray(up, bool)
    ok &= v > 0
    check(ok.any(), "no edge node is up with a positive speed: cannot schedule work")
    x = np.zeros(len(q), np.int64)
    v_safe = np.where(ok, v, 1.0)
    for _ in range(total):
        finish = np.where(ok, (q + x + 1) / v_safe, np.inf)
        x[int(np.argmin(finish))] += 1
    return x


def best_on_grid(actions: np.ndarray, total: int, queue: Sequence[float], speed: Sequence[float],
                 up: Sequence[bool] | None = None) -> np.ndarray:
    """Counts of the share-grid action (rows of ``actions``, rounded by :func:`largest_remainder`)
    with the earliest latest finish time ``(q_i + x_i) / v_i``: the best that any policy choosing
    on that grid can do with these speeds. Against :func:`earliest_finish_counts` it measures what
    the grid itself costs (with few tiles and idle nodes, a 0.1 share is two tiles or more)."""
    q = np.asarray(queue, np.float64)
    v = np.asarray(speed, np.float64)
    ok = np.ones(len(q), bool) if up is None else np.asarray(up, bool)
    ok &= v > 0
    check(ok.any(), "no edge node is up with a positive speed: cannot schedule work")
    allowed = ~np.any(actions[:, ~ok] > 0, axis=1)
    counts = largest_remainder_rows(actions[allowed], total)
    return counts[int(np.argmin(last_finish(counts, q, v)))]


def last_finish(counts: np.ndarray, queue: Sequence[float], speed: Sequence[float]) -> np.ndarray:
    """When the last node given work would be done, ``max (q_i + x_i) / v_i`` over the nodes with
    ``x_i > 0`` (0 when none is), for counts ``(..., M)``: one value per row."""
    c = np.asarray(counts)
    v = np.maximum(np.asarray(speed, np.float64), 1e-9)  # a node without speed gets no work here
    return np.where(c > 0, (np.asarray(queue, np.float64) + c) / v, 0.0).max(axis=-1)


class StaleProbe:
    """:func:`give_probes` for a scheduler that may starve a node: a node left without work for
    ``after`` decisions in a row gets a probe tile, since the speed the camera holds for it is as
    old as its last item (a node slowed down and then recovered would otherwise keep its slow
    reading, and its zero share, for ever). ``after=0``: only never-measured nodes are probed."""

    def __init__(self, after: int = 5) -> None:
        check(isinstance(after, int) and after >= 0, f"probe_after must be an integer >= 0, got {after!r}")
        self.after = after
        self.idle: np.ndarray | None = None

    def reset(self) -> None:
        self.idle = None

    def __call__(self, counts: Sequence[int], nodes) -> np.ndarray:
        if self.idle is None or len(self.idle) != len(nodes):
            self.idle = np.zeros(len(nodes), np.int64)
        stale = self.idle >= self.after if self.after > 0 else None
        c = give_probes(counts, nodes, stale)
        self.idle = np.where(c > 0, 0, self.idle + 1)
        return c
