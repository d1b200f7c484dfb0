"""Device-speed emulation: how long a tile should hold a worker that stands in for another device.

A worker on this machine runs the real detector (real detections) and then waits until the tile
has taken the emulated time: the device profile's service time for the tile's pixel count, times
the load-trace factor of the request's frame, times ``time_scale`` (wall seconds per emulated
device second, so that every emulated node fits this machine's CPU). When the real inference is
slower than that, the tile takes the real time and counts as an *overrun*: the node then runs
slower than the device it stands for, and the run reports it.

Without a profile (``emulate: false``, e.g. a worker on a real Jetson) the tile takes its real time,
still multiplied by the load-trace factor so dynamic-compute experiments work on real devices too.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hode.errors import check
from hode.profiles import TILE_PIXELS, DeviceProfile, LoadTrace, load_profile, profile_path


def read_profile(kind: str, profiles_dir: str | None = None) -> dict:
    """The checked content of device profile ``kind`` (``<profiles_dir>/<kind>.yaml``, default
    ``conf/device``) as a plain mapping: what the live runner hands to the worker it spawns."""
    from omegaconf import OmegaConf

    path = profile_path(kind, profiles_dir)
    load_profile(kind, path)  # one clear line if it is missing or malformed
    return OmegaConf.to_container(OmegaConf.load(path), resolve=True)


@dataclass
class Pacer:
    """Emulated service time of each tile of one node."""

    node: str
    model: str
    profile: DeviceProfile | None = None  # None: real speed (times the load factor)
    trace: LoadTrace = field(default_factory=LoadTrace)
    time_scale: float = 1.0
    seed: int = 0
    batched: bool = False  # tiles of one request after the first skip the profile's fixed cost

    def __post_init__(self) -> None:
        check(self.time_scale > 0, f"time_scale must be > 0, got {self.time_scale!r}")
        if self.profile is not None:
            self.profile.timing(self.model)  # fails now, naming the profile, if the model is missing
        self._rng = np.random.default_rng(self.seed)

    @property
    def emulated(self) -> bool:
        return self.profile is not None

    def profile_tile_s(self) -> float:
        """The profile's time for one full tile (device seconds, no noise, no scale)."""
        return self.profile.base_s(self.model, TILE_PIXELS) if self.profile else 0.0

    def target_s(self, pixels: int, frame_id: int, compute_s: float, time_scale: float | None = None,
                 in_batch: bool = False) -> float:
        """Wall seconds the tile should take in all (the caller waits out the rest after inference).
        ``in_batch``: the tile follows another of the same request (batched inference, when on)."""
        factor = self.trace.factor(self.node, frame_id)
        if self.profile is None:
            return compute_s * factor
        scale = time_scale if time_scale and time_scale > 0 else self.time_scale
        return self.profile.service_s(self.model, pixels, self._rng, self.batched and in_batch) * factor * scale
