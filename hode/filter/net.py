"""The spatio-temporal flow-filter network (paper Fig. 6, after ST-ResNet).

Two residual convolutional branches read the count matrices of the last frames: *trend* the last
``trend`` frames, *closeness* frame ``t-1`` only. 3x3 convolutions carry the spatial correlation
between neighbouring tiles. The branch outputs are fused with learned weights into one logit per
tile: ``fusion="cell"`` is ST-ResNet's per-cell weight matrices (a location prior, so the net is
bound to one grid size, with a per-cell bias), ``fusion="shared"`` one weight per branch (runs
on any grid).

Counts enter as ``log1p(count)``: a crowd of 40 and a crowd of 60 look alike, 0 and 1 do not.
With ``memory=True`` both branches also read the two per-tile memory maps of
:mod:`hode.filter.memory` (frames since detected, frames since occupied): the paper's inputs plus
what the closed loop needs to tell "empty" from "not looked at". With ``shortcut=True`` the logit
also gets a learned weight times "occupied at t-1" (Comp-1 as a residual the net corrects).
"""
from __future__ import annotations

import torch
from torch import nn

from hode.errors import check

FUSIONS = ("cell", "shared")
MEMORY_CHANNELS = 2  # since_kept, since_occupied (hode.filter.memory)


class ResUnit(nn.Module):
    """ST-ResNet's residual unit: (BN, ReLU, 3x3 conv) twice, plus the shortcut."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm2d(channels), nn.ReLU(), nn.Conv2d(channels, channels, 3, padding=1),
            nn.BatchNorm2d(channels), nn.ReLU(), nn.Conv2d(channels, channels, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Branch(nn.Module):
    """3x3 conv in, ``units`` residual units, ReLU, 3x3 conv down to one map."""

    def __init__(self, in_frames: int, channels: int, units: int) -> None:
        super().__init__()
        self.inp = nn.Conv2d(in_frames, channels, 3, padding=1)
        self.units = nn.Sequential(*[ResUnit(channels) for _ in range(units)])
        self.out = nn.Sequential(nn.ReLU(), nn.Conv2d(channels, 1, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.units(self.inp(x)))[:, 0]


class STNet(nn.Module):
    """Count history ``(B, trend, rows, cols)``, oldest first -> logits ``(B, rows, cols)``."""

    def __init__(self, rows: int, cols: int, trend: int = 5, channels: int = 16, units: int = 2,
                 fusion: str = "cell", memory: bool = True, shortcut: bool = False) -> None:
        super().__init__()
        check(fusion in FUSIONS, f"filter fusion must be one of {FUSIONS}, got {fusion!r}")
        check(all(isinstance(v, int) and v >= 1 for v in (rows, cols, trend, channels)),
              f"STNet rows/cols/trend/channels must be positive integers, got {(rows, cols, trend, channels)}")
        check(isinstance(units, int) and units >= 0, f"STNet units must be a non-negative integer, got {units!r}")
        self.arch = dict(rows=rows, cols=cols, trend=trend, channels=channels, units=units, fusion=fusion,
                         memory=bool(memory), shortcut=bool(shortcut))
        extra = MEMORY_CHANNELS if memory else 0
        self.trend = Branch(trend + extra, channels, units)
        self.closeness = Branch(1 + extra, channels, units)
        shape = (rows, cols) if fusion == "cell" else (1, 1)
        self.w_trend = nn.Parameter(torch.full(shape, 0.5))
        self.w_closeness = nn.Parameter(torch.full(shape, 0.5))
        self.bias = nn.Parameter(torch.zeros(shape))
        # Comp-1 as a learned residual: "occupied at t-1" adds w_occupied to the logit, so training
        # starts from the paper's baseline and the branches learn what Comp-1 gets wrong
        self.w_occupied = nn.Parameter(torch.tensor(4.0)) if shortcut else None

    @property
    def grid(self) -> tuple[int, int] | None:
        """The grid the net is bound to (per-cell fusion), or None when any grid works."""
        return (self.arch["rows"], self.arch["cols"]) if self.arch["fusion"] == "cell" else None

    def forward(self, counts: torch.Tensor, memory: torch.Tensor | None = None) -> torch.Tensor:
        """``counts (B, trend, rows, cols)``, ``memory (B, 2, rows, cols)`` when the net uses it."""
        z = torch.log1p(counts.clamp_min(0))
        trend, close = z, z[:, -1:]
        if self.arch["memory"]:
            if memory is None:
                raise ValueError("this STNet reads memory maps: pass memory=(B, 2, rows, cols)")
            trend, close = torch.cat([trend, memory], 1), torch.cat([close, memory], 1)
        out = self.w_trend * self.trend(trend) + self.w_closeness * self.closeness(close) + self.bias
        if self.w_occupied is not None:
            out = out + self.w_occupied * (counts[:, -1] > 0).to(out.dtype)
        return out
