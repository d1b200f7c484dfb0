"""Safeguards against the closed-loop trap, for every flow filter.

In the pipeline a filter's history is the count of its *own* merged detections: a tile it skips
yields no detections, so it looks empty next frame too, and a filter can stay blind to a region
for ever. Three configurable guards widen the keep mask (each off at 0):

- ``refresh_every=N``: every N-th frame keeps all tiles (a full, honest look at the scene);
- ``dilate=r``: keeps every tile within ``r`` cells (Chebyshev) of a tile occupied in the latest
  history frame: pedestrians walk into a tile from a neighbour;
- ``keep_alive=k``: keeps every tile occupied in any of the latest ``k`` history frames.

:class:`GuardedFilter` is the base of the project's filters (guards given as ``guard: {...}`` in
their config); :class:`Guarded` wraps any other :class:`~hode.filter.base.FlowFilter`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hode.errors import check
from hode.filter.base import FlowFilter, observe


def dilate(mask: np.ndarray, r: int) -> np.ndarray:
    """Binary dilation of a 2-D mask with a ``(2r+1) x (2r+1)`` square (max-pool, same size)."""
    if r <= 0 or not mask.any():
        return mask.copy()
    h, w = mask.shape
    padded = np.zeros((h + 2 * r, w + 2 * r), bool)
    padded[r:r + h, r:r + w] = mask
    out = np.zeros_like(mask)
    for dy in range(2 * r + 1):
        for dx in range(2 * r + 1):
            out |= padded[dy:dy + h, dx:dx + w]
    return out


@dataclass
class Safeguard:
    """The guards' settings and the one piece of state they need (frames seen since reset)."""

    refresh_every: int = 0
    dilate: int = 0
    keep_alive: int = 0

    def __post_init__(self) -> None:
        for key in ("refresh_every", "dilate", "keep_alive"):
            v = getattr(self, key)
            check(isinstance(v, int) and not isinstance(v, bool) and v >= 0,
                  f"filter.guard.{key} must be a non-negative integer (0 = off), got {v!r}")
        self._step = 0

    @property
    def active(self) -> bool:
        return bool(self.refresh_every or self.dilate or self.keep_alive)

    def reset(self) -> None:
        """Start of a new video: the next frame is frame 0 again."""
        self._step = 0

    def apply(self, keep: np.ndarray, history: np.ndarray) -> np.ndarray:
        """``keep`` widened by the guards; advances the frame counter by one."""
        step, self._step = self._step, self._step + 1
        keep = np.asarray(keep, bool)
        if self.refresh_every and step % self.refresh_every == self.refresh_every - 1:
            return np.ones_like(keep)
        if len(history) and self.keep_alive:
            keep = keep | (history[-self.keep_alive:] > 0).any(0)
        if len(history) and self.dilate:
            keep = keep | dilate(history[-1] > 0, self.dilate)
        return keep

    def describe(self) -> str:
        parts = [f"{k}={getattr(self, k)}" for k in ("refresh_every", "dilate", "keep_alive") if getattr(self, k)]
        return ",".join(parts) or "off"


class GuardedFilter:
    """Base of the project's filters: ``predict`` says what the filter believes, the guards widen it.

    ``guard`` is a dict of :class:`Safeguard` settings (the ``guard:`` node of a filter config).
    """

    name = "filter"

    def __init__(self, guard: dict | None = None) -> None:
        check(guard is None or isinstance(guard, dict), f"filter.guard must be a mapping, got {guard!r}")
        self.guard = Safeguard(**(guard or {}))

    def predict(self, history: np.ndarray, truth: np.ndarray | None = None) -> np.ndarray:
        raise NotImplementedError

    def reset(self) -> None:
        self.guard.reset()

    def observe(self, counts: np.ndarray, keep: np.ndarray) -> None:
        """A decided frame came back (:func:`hode.filter.base.observe`); stateless filters ignore it."""

    def __call__(self, history: np.ndarray, truth: np.ndarray | None = None) -> np.ndarray:
        history = np.asarray(history, np.float32)
        check(history.ndim == 3, f"filter {self.name}: history must be (T, rows, cols), got shape {history.shape}")
        return self.guard.apply(self.predict(history, truth), history)


class Guarded(GuardedFilter):
    """Any :class:`FlowFilter` with the safeguards laid over its keep mask."""

    def __init__(self, inner: FlowFilter, guard: dict | None = None) -> None:
        super().__init__(guard)
        self.inner = inner
        self.name = getattr(inner, "name", type(inner).__name__)

    def predict(self, history: np.ndarray, truth: np.ndarray | None = None) -> np.ndarray:
        return self.inner(history, truth)

    def reset(self) -> None:
        super().reset()
        if hasattr(self.inner, "reset"):
            self.inner.reset()

    def observe(self, counts: np.ndarray, keep: np.ndarray) -> None:
        observe(self.inner, counts, keep)
