"""``filter=st``: the trained spatio-temporal flow filter, and its checkpoint file.

A checkpoint is a small ``torch.save`` dict (kilobytes, loaded with ``weights_only=True``)::

    {"format": "hode-flow-filter", "version": 1, "arch": {...STNet kwargs}, "state_dict": {...},
     "threshold": float, "meta": {...how it was trained and what it scored on validation}}

The threshold on the tile probability is chosen on validation data for a target recall when the
net is trained, so the filter needs no tuning at run time.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from hode.errors import WeightsError, check
from hode.filter.guard import GuardedFilter
from hode.filter.memory import TileMemory
from hode.filter.net import STNet

FORMAT = "hode-flow-filter"
VERSION = 1


def save_checkpoint(path: str | Path, net: STNet, threshold: float, meta: dict | None = None) -> Path:
    """Write the net (on CPU, eval-ready), its threshold and metadata to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
    torch.save({"format": FORMAT, "version": VERSION, "arch": dict(net.arch), "state_dict": state,
                "threshold": float(threshold), "meta": meta or {}}, path)
    return path


def load_checkpoint(path: str | Path) -> tuple[STNet, float, dict]:
    """``(net in eval mode, threshold, meta)``; a missing or foreign file raises WeightsError."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"flow-filter checkpoint {path} does not exist (train one with task=train_filter)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise WeightsError(f"{path} is not a flow-filter checkpoint ({type(e).__name__})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise WeightsError(f"{path} is not a flow-filter checkpoint (no '{FORMAT}' format tag)")
    if ckpt.get("version") != VERSION:
        raise WeightsError(f"{path} is flow-filter checkpoint version {ckpt.get('version')}, this code reads {VERSION}")
    try:
        net = STNet(**ckpt["arch"])
        net.load_state_dict(ckpt["state_dict"])
    except Exception as e:
        raise WeightsError(f"{path} does not match the flow-filter network: {str(e).splitlines()[0][:200]}") from None
    return net.eval(), float(ckpt["threshold"]), dict(ckpt.get("meta") or {})


class STFilter(GuardedFilter):
    """The trained trend/closeness net as a :class:`~hode.filter.base.FlowFilter`.

    While the history is shorter than the trend window (the first frames of a video) every tile
    is kept. ``threshold`` overrides the checkpoint's validated threshold (for sweeps). The filter
    is stateful when the net reads memory maps (it remembers its own keep masks); an empty history
    means a new video and resets that state.
    """

    def __init__(self, ckpt: str | None = None, name: str = "st", threshold: float | None = None,
                 guard: dict | None = None, net: STNet | None = None) -> None:
        super().__init__(guard)
        check((ckpt is None) != (net is None), "filter=st needs exactly one of ckpt (a checkpoint path) or net")
        check(threshold is None or 0.0 < float(threshold) < 1.0,
              f"filter.threshold must be a probability in (0, 1) or null, got {threshold!r}")
        self.name, self.ckpt = name, str(ckpt) if ckpt is not None else "<in memory>"
        if net is None:
            net, ckpt_threshold, self.meta = load_checkpoint(ckpt)
        else:
            ckpt_threshold, self.meta = 0.5, {}
        self.net = net.eval()
        self.trend = net.arch["trend"]
        self.memory = TileMemory() if net.arch.get("memory") else None
        self._last_keep: np.ndarray | None = None
        self.set_threshold(float(threshold) if threshold is not None else ckpt_threshold)

    def set_threshold(self, threshold: float) -> None:
        self.threshold = threshold
        # compare logits, not probabilities: saves a sigmoid per frame
        p = min(max(threshold, 1e-7), 1 - 1e-7)
        self._logit_threshold = float(np.log(p / (1 - p)))

    def check_grid(self, grid: tuple[int, int]) -> None:
        bound = self.net.grid
        if bound is not None and tuple(grid) != bound:
            raise WeightsError(f"flow-filter checkpoint {self.ckpt} was trained for a {bound[0]}x{bound[1]} tile grid, "
                               f"but this run's grid is {grid[0]}x{grid[1]} (train one for it with task=train_filter, "
                               "or use a fusion=shared checkpoint)")

    def reset(self) -> None:
        super().reset()
        self._last_keep = None
        if self.memory is not None:
            self.memory.since_kept = None

    def logits(self, history: np.ndarray) -> np.ndarray:
        """Per-tile logits for the frame after ``history`` (at least ``trend`` frames)."""
        x = torch.from_numpy(np.ascontiguousarray(history[-self.trend:], np.float32))[None]
        m = None if self.memory is None else torch.from_numpy(self.memory.features())[None]
        with torch.inference_mode():
            return self.net(x, m)[0].numpy()

    def predict(self, history: np.ndarray, truth: np.ndarray | None = None) -> np.ndarray:
        self.check_grid(history.shape[1:])
        if len(history) == 0:
            self.reset()  # a new video
        if self.memory is not None:
            self.memory.update(history, self._last_keep)
        if len(history) < self.trend:
            return np.ones(history.shape[1:], bool)
        return self.logits(history) >= self._logit_threshold

    def __call__(self, history: np.ndarray, truth: np.ndarray | None = None) -> np.ndarray:
        keep = super().__call__(history, truth)
        self._last_keep = keep  # what was really detected, guards included: the next frame's memory
        return keep
