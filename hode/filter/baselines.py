"""Non-learned filters behind the same interface: Comp-i (the paper's baseline) and the oracle."""
from __future__ import annotations

import numpy as np

from hode.errors import DataError, check
from hode.filter.guard import GuardedFilter


class CompFilter(GuardedFilter):
    """``filter=comp<i>``: skip a tile that had no pedestrians at ``t - lag`` (paper, Sec. IV-C).

    Until the history reaches back ``lag`` frames (start of a video) every tile is kept.
    """

    def __init__(self, lag: int = 1, name: str | None = None, guard: dict | None = None) -> None:
        check(isinstance(lag, int) and lag >= 1, f"filter.lag must be an integer >= 1, got {lag!r}")
        super().__init__(guard)
        self.lag = lag
        self.name = name or f"comp{lag}"

    def predict(self, history: np.ndarray, truth: np.ndarray | None = None) -> np.ndarray:
        if len(history) < self.lag:
            return np.ones(history.shape[1:], bool)
        return history[-self.lag] > 0


class OracleFilter(GuardedFilter):
    """``filter=oracle``: the current frame's true occupancy (the upper bound; needs ground truth).

    A frame without ground truth is refused: the oracle has nothing to be an oracle of.
    """

    name = "oracle"

    def __init__(self, name: str = "oracle", guard: dict | None = None) -> None:
        super().__init__(guard)
        self.name = name

    def predict(self, history: np.ndarray, truth: np.ndarray | None = None) -> np.ndarray:
        if truth is None:
            raise DataError("filter=oracle needs ground truth boxes, and this dataset's frame has none")
        return np.asarray(truth) > 0
