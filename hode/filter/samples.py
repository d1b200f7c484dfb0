"""Training samples for the net: (count history, memory maps, next frame's occupancy) per frame.

Samples come from *rollouts*: a policy (a filter) is run over a track sequence, open loop (history
= true counts) or closed loop (history = what an ideal detector found in the kept tiles, see
:mod:`hode.filter.evaluate`), and every frame's inputs are recorded exactly as
:class:`~hode.filter.st.STFilter` would compute them. Closed-loop rollouts of Comp-1 and of the
net itself (DAgger: the net learns from the states its own skips lead to) teach it what a zero
from an unwatched tile is worth.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hode.filter.base import KeepAll
from hode.filter.evaluate import run_loop
from hode.filter.memory import TileMemory
from hode.filter.tracks import TrackSequence
from hode.tiling import Tiler


@dataclass
class Samples:
    counts: np.ndarray  # (N, trend, rows, cols) float32
    memory: np.ndarray  # (N, 2, rows, cols) float32
    target: np.ndarray  # (N, rows, cols) float32 in {0, 1}

    def __len__(self) -> int:
        return len(self.target)

    @staticmethod
    def concat(parts: list["Samples"]) -> "Samples":
        parts = [p for p in parts if len(p)]
        if not parts:
            raise ValueError("no samples: sequences shorter than the trend window")
        return Samples(*(np.concatenate([getattr(p, k) for p in parts]) for k in ("counts", "memory", "target")))


class Recorder:
    """Records what the net would see at every frame of a rollout (same order as STFilter)."""

    def __init__(self, trend: int) -> None:
        self.trend = trend
        self.memory = TileMemory()
        self.last_keep: np.ndarray | None = None
        self.counts: list[np.ndarray] = []
        self.maps: list[np.ndarray] = []
        self.target: list[np.ndarray] = []

    def __call__(self, history: np.ndarray, keep: np.ndarray, truth: np.ndarray) -> None:
        if len(history) == 0:
            self.last_keep = None
        self.memory.update(history, self.last_keep)
        if len(history) >= self.trend:
            self.counts.append(np.asarray(history[-self.trend:], np.float32))
            self.maps.append(self.memory.features())
            self.target.append((truth > 0).astype(np.float32))
        self.last_keep = np.asarray(keep, bool)

    def samples(self) -> Samples:
        if not self.target:
            return Samples(np.zeros((0, self.trend, 1, 1), np.float32), np.zeros((0, 2, 1, 1), np.float32),
                           np.zeros((0, 1, 1), np.float32))
        return Samples(np.stack(self.counts), np.stack(self.maps), np.stack(self.target))


def rollout(policy, seqs: list[TrackSequence], tiler: Tiler, trend: int, closed: bool,
            history_len: int = 5) -> Samples:
    """Samples of every frame of ``seqs`` while ``policy`` decides what is detected."""
    parts = []
    for seq in seqs:
        rec = Recorder(trend)
        run_loop(policy, seq, tiler, closed, history_len, recorder=rec)
        parts.append(rec.samples())
    return Samples.concat(parts)


def open_loop(seqs: list[TrackSequence], tiler: Tiler, trend: int, history_len: int = 5) -> Samples:
    """True histories, every tile detected: the paper's training data."""
    return rollout(KeepAll(), seqs, tiler, trend, closed=False, history_len=history_len)
