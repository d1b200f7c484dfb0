"""Safeguards against the closed-loop trap, for every flow filter.

In the pipeline a filter's history is the count of its *own* merged detections: a tile it skips
yields no detections, so it looks empty next frame too, and a filter can stay blind to a region
for ever. Four configurable guards widen the keep mask (each off at 0):

- ``refresh_every=N``: every N-th frame keeps all tiles (a full, honest look at the scene);
- ``dilate=r``: keeps every tile within ``r`` cells (Chebyshev) of a tile occupied in the latest
  history frame: pedestrians walk into a tile from a neighbour;
- ``keep_alive=k``: keeps every tile occupied in any of the latest ``k`` history frames;
- ``motion=A``: keeps every tile where at least ``A`` px changed since the previous frame that the
  latest result's boxes do not explain (hode/filter/motion.py: grey difference above
  ``motion_delta`` on every ``motion_stride``-th pixel, outside those boxes grown by
  ``motion_explain`` px and outside a ``motion_border`` band along the frame's edges). The only
  guard that looks at pixels: the camera hands each frame to the filter
  (:func:`hode.filter.base.see`) before asking for its mask, and each result's boxes back with its
  counts (:func:`hode.filter.base.observe`), so it catches a walk-in the frame it happens, where the
  count history sees it only after a look.

:class:`GuardedFilter` is the base of the project's filters (guards given as ``guard: {...}`` in
their config); :class:`Guarded` wraps any other :class:`~hode.filter.base.FlowFilter`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hode.errors import check
from hode.filter.base import FlowFilter, observe, see
from hode.filter.motion import FrameChange, unexplained_area


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
    """The guards' settings and their state: frames seen since reset; for the motion guard the
    previous frame's thumbnail, this frame's change mask and the latest result's boxes."""

    refresh_every: int = 0
    dilate: int = 0
    keep_alive: int = 0
    motion: float = 0  # unexplained changed area (px) that makes a tile kept; 0 = off
    motion_stride: int = 8  # every n-th pixel of every n-th row is compared (memory traffic: 1/n of the frame)
    motion_delta: int = 25  # grey levels: above the sensor noise
    motion_explain: float = 8.0  # px the latest result's boxes are grown by (a pedestrian's step)
    motion_border: float = 32.0  # px along the frame's edges ignored (people half out of the frame)
    KEYS = ("refresh_every", "dilate", "keep_alive", "motion")

    def __post_init__(self) -> None:
        for key in ("refresh_every", "dilate", "keep_alive"):
            v = getattr(self, key)
            check(isinstance(v, int) and not isinstance(v, bool) and v >= 0,
                  f"filter.guard.{key} must be a non-negative integer (0 = off), got {v!r}")
        check(isinstance(self.motion, (int, float)) and not isinstance(self.motion, bool) and 0 <= self.motion < float("inf"),
              f"filter.guard.motion must be a changed area in px >= 0 (0 = off), got {self.motion!r}")
        for key in ("motion_explain", "motion_border"):
            v = getattr(self, key)
            check(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < 10_000,
                  f"filter.guard.{key} must be a number of px in [0, 10000), got {v!r}")
        self._step = 0
        self._meter = FrameChange(self.motion_stride, self.motion_delta) if self.motion else None
        self._mask: np.ndarray | None = None  # this frame's change mask, until apply
        self._tile = 0
        self._boxes: np.ndarray | None = None  # the latest result's boxes

    @property
    def active(self) -> bool:
        return bool(self.refresh_every or self.dilate or self.keep_alive or self.motion)

    def reset(self) -> None:
        """Start of a new video: the next frame is frame 0 again, and the last video's boxes explain
        nothing. The motion guard keeps its last frame and this frame's mask: the camera may have
        shown it the new video's first frame already (a cut between two videos of one size reads as
        change everywhere: one frame with every tile kept)."""
        self._step = 0
        self._boxes = None

    @property
    def wants_boxes(self) -> bool:
        return bool(self.motion)

    def see(self, image: np.ndarray, tile: int) -> None:
        """The frame about to be decided: its change against the last one (motion guard only)."""
        if self._meter is not None:
            self.see_mask(self._meter(image), tile)

    def see_mask(self, mask: np.ndarray | None, tile: int) -> None:
        """The frame's change mask, measured elsewhere (cached evaluations; ``None``: nothing to compare)."""
        self._mask, self._tile = (mask if self.motion else None), tile

    def observe_boxes(self, boxes: np.ndarray | None) -> None:
        """The latest result's boxes: the movement they explain is not a walk-in."""
        if boxes is not None:
            self._boxes = np.asarray(boxes, np.float32).reshape(-1, 4)

    def moved(self, grid: tuple[int, int]) -> np.ndarray | None:
        """Tiles with enough unexplained change in the frame last seen (consumed: one frame's change
        serves that frame alone)."""
        mask, self._mask = self._mask, None
        if mask is None:
            return None
        area = unexplained_area(mask, self._boxes, self._tile, self.motion_stride, grid,
                                self.motion_explain, self.motion_border)
        return area >= self.motion

    def apply(self, keep: np.ndarray, history: np.ndarray) -> np.ndarray:
        """``keep`` widened by the guards; advances the frame counter by one."""
        step, self._step = self._step, self._step + 1
        keep = np.asarray(keep, bool)
        moved = self.moved(keep.shape)
        if moved is not None:
            keep = keep | moved
        if self.refresh_every and step % self.refresh_every == self.refresh_every - 1:
            return np.ones_like(keep)
        if len(history) and self.keep_alive:
            keep = keep | (history[-self.keep_alive:] > 0).any(0)
        if len(history) and self.dilate:
            keep = keep | dilate(history[-1] > 0, self.dilate)
        return keep

    def describe(self) -> str:
        parts = [f"{k}={getattr(self, k)}" for k in self.KEYS if getattr(self, k)]
        if self.motion:
            parts += [f"motion_{k}={getattr(self, 'motion_' + k)}" for k in ("stride", "delta", "explain", "border")]
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

    @property
    def wants_boxes(self) -> bool:
        """Whether :func:`hode.filter.base.observe` should hand over each result's boxes too."""
        return self.guard.wants_boxes

    def observe(self, counts: np.ndarray, keep: np.ndarray, boxes: np.ndarray | None = None) -> None:
        """A decided frame came back (:func:`hode.filter.base.observe`): the guards take its boxes;
        stateful filters extend this."""
        self.guard.observe_boxes(boxes)

    def see(self, image: np.ndarray, tile: int) -> None:
        """The frame about to be decided (:func:`hode.filter.base.see`): for the motion guard."""
        self.guard.see(image, tile)

    def see_mask(self, mask: np.ndarray | None, tile: int) -> None:
        """The frame's change mask, measured elsewhere (cached evaluations)."""
        self.guard.see_mask(mask, tile)

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

    def observe(self, counts: np.ndarray, keep: np.ndarray, boxes: np.ndarray | None = None) -> None:
        super().observe(counts, keep, boxes)
        observe(self.inner, counts, keep, boxes)

    def see(self, image: np.ndarray, tile: int) -> None:
        super().see(image, tile)
        see(self.inner, image, tile)
