"""Per-tile walk-in rates, and the probe period each tile's rate calls for.

In the closed loop a skipped tile reports zero whether or not someone walked in, so a filter finds
a walk-in (an empty tile becoming occupied) only by looking. Looking costs a false keep when the tile
is still empty; not looking costs the frames until the next look. For a tile with walk-in rate
``rate`` (walk-ins per empty frame) probed every ``k`` frames, a walk-in waits ``(k-1)/2`` frames on
average and ``1/k`` of its empty frames are probes, so minimising ``beta * rate * (k-1)/2 + 1/k``
gives ``k = sqrt(2 / (beta * rate))``: busy entrances are probed often, tiles nobody walks into
(sky, water) almost never. ``beta`` (missed frames against false keeps) is the policy's one knob,
chosen on validation for a target recall (task=train_filter).

The rate of each tile starts from a *prior* measured on the training scenes (:func:`walkin_counts`,
:func:`prior_rates`) and is updated online from the filter's own detections (:class:`WalkInProber`):
a scene's own entrances (a new path end, a door) are learned as the filter sees people appear there.
"""
from __future__ import annotations

import numpy as np

from hode.errors import check
from hode.filter.tracks import TrackSequence


def walkin_counts(seqs: list[TrackSequence], tile: int, mirror: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """``(walk_ins, empty_frames)`` per grid cell over ``seqs`` (ground truth): a walk-in is a cell
    empty at ``t-1`` and occupied at ``t``. ``mirror`` adds the left-right mirrored counts, as the
    net is trained with flips: a scene's entrances are as likely on either side."""
    walk_ins = empty = 0
    for seq in seqs:
        occ = seq.counts(tile) > 0
        walk_ins = walk_ins + (occ[1:] & ~occ[:-1]).sum(0)
        empty = empty + (~occ[:-1]).sum(0)
    walk_ins, empty = np.asarray(walk_ins, np.float64), np.asarray(empty, np.float64)
    if mirror:
        walk_ins, empty = walk_ins + walk_ins[:, ::-1], empty + empty[:, ::-1]
    return walk_ins, empty


def prior_rates(walk_ins: np.ndarray, empty: np.ndarray, strength: float) -> np.ndarray:
    """Walk-ins per empty frame per cell, shrunk towards the all-cell rate by ``strength`` frames (a
    cell never seen entered is not ruled out for ever, only probed rarely)."""
    mean = float(walk_ins.sum() / max(empty.sum(), 1.0))
    return (walk_ins + mean * strength) / (empty + strength)


class WalkInProber:
    """Which tiles to probe this frame: per-cell walk-in rates, prior plus online evidence.

    ``rate = (strength * prior + seen) / (strength + empty)`` where ``seen`` counts the walk-ins the
    filter's own detections revealed in this video (a tile occupied now whose last look found it
    empty) and ``empty`` the frames it looked empty. A tile is probed when it has gone undetected
    for ``period - 1`` frames, ``period = sqrt(2 / (beta * rate))`` (module doc).
    """

    def __init__(self, prior: np.ndarray, beta: float, strength: float) -> None:
        prior = np.asarray(prior, np.float64)
        check(prior.ndim == 2 and bool(np.all(prior >= 0)), "walk-in prior must be a (rows, cols) map of rates >= 0")
        check(float(beta) > 0, f"filter.walkin_beta must be > 0, got {beta!r}")
        check(float(strength) > 0, f"walk-in prior strength must be > 0 frames, got {strength!r}")
        self.prior, self.beta, self.strength = prior, float(beta), float(strength)
        self.reset()

    @property
    def grid(self) -> tuple[int, int]:
        return tuple(self.prior.shape)

    def reset(self) -> None:
        """A new video: forget the online evidence."""
        self.seen = np.zeros(self.prior.shape)
        self.empty = np.zeros(self.prior.shape)
        self.last_occupied = np.zeros(self.prior.shape, bool)  # what the latest look at each tile found

    def update(self, counts: np.ndarray, looked: np.ndarray | None) -> None:
        """One frame: ``counts`` the latest detections per tile, ``looked`` the mask that produced them."""
        occ = np.asarray(counts) > 0
        looked = np.ones(occ.shape, bool) if looked is None else looked
        self.seen += occ & ~self.last_occupied
        self.last_occupied = np.where(looked | occ, occ, self.last_occupied)
        self.empty += ~occ

    def rates(self) -> np.ndarray:
        return (self.strength * self.prior + self.seen) / (self.strength + self.empty)

    def periods(self) -> np.ndarray:
        """Probe period per tile in frames (>= 1)."""
        return np.sqrt(2.0 / (self.beta * np.maximum(self.rates(), 1e-12))).clip(1.0, 1e9)

    def due(self, since_kept: np.ndarray) -> np.ndarray:
        """Tiles to probe now, given frames since each was last detected."""
        return since_kept >= self.periods() - 1
