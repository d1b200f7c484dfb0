"""Device timing profiles (``conf/device/<kind>.yaml``) and load traces (dynamic compute).

A profile gives, per detector model, the service time of one padded 512 tile and of one whole 4K
frame on that device, a relative noise, and where each number comes from. A load trace slows nodes
down over a range of frames (the paper's Fig. 13): the runners multiply service times by it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hode.config import CONF_DIR, options
from hode.errors import ConfigError, check

TILE_PIXELS = 704 * 608  # a 512 tile padded by (96, 48) on every side: the profiles' reference item
FRAME4K_PIXELS = 3840 * 2160
TIMING_KEYS = {"tile_ms", "frame4k_ms", "fixed_ms", "noise", "source"}


def _positive(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0


@dataclass(frozen=True)
class ModelTiming:
    tile_ms: float  # one padded 512 tile (batch 1)
    frame4k_ms: float  # one whole 3840x2160 frame at native resolution
    noise: float = 0.05  # relative std-dev of service time
    source: str = "estimate"
    fixed_ms: float | None = None  # per-inference cost whatever the size; None: read off the tile-4K line

    def __post_init__(self) -> None:
        check(_positive(self.tile_ms), f"tile_ms must be a positive number of ms, got {self.tile_ms!r}")
        check(_positive(self.frame4k_ms), f"frame4k_ms must be a positive number of ms, got {self.frame4k_ms!r}")
        check(isinstance(self.noise, (int, float)) and not isinstance(self.noise, bool) and 0 <= self.noise < 1,
              f"noise must be a relative std-dev in [0, 1), got {self.noise!r}")
        check(self.fixed_ms is None or (_positive(self.fixed_ms) and self.fixed_ms <= self.tile_ms) or self.fixed_ms == 0,
              f"fixed_ms must be between 0 and tile_ms ({self.tile_ms}), got {self.fixed_ms!r}")


def _per_px_ms(t: ModelTiming) -> float:
    """Slope of the tile-4K line: ms per extra pixel."""
    return (t.frame4k_ms - t.tile_ms) / (FRAME4K_PIXELS - TILE_PIXELS)


@dataclass(frozen=True)
class DeviceProfile:
    name: str
    models: dict[str, ModelTiming]
    source: str = ""

    def timing(self, model: str) -> ModelTiming:
        if model not in self.models:
            raise ConfigError(f"device profile '{self.name}' has no timing for model '{model}' "
                              f"(has: {', '.join(self.models)})")
        return self.models[model]

    def base_s(self, model: str, pixels: int, batched: bool = False) -> float:
        """Noise-free service time of one item of ``pixels`` pixels, on the line through the tile and
        the 4K figures: a fixed per-inference cost plus compute linear in pixels (how the profiles'
        estimates are built, and how YOLO behaves). Below a tile the fixed part stays, so a small edge
        crop or an Elf box is cheaper than a tile but not free; where the measured line has no fixed
        part (a negative intercept, e.g. a CPU whose 4K runs are slower per pixel), it is proportional.
        A profile may state the fixed part itself (``fixed_ms``). ``batched``: the item rides in a
        batch behind another one, which already paid the fixed part (batched inference)."""
        t = self.timing(model)
        fixed = self.fixed_ms(model)
        if pixels >= TILE_PIXELS:
            ms = t.tile_ms + _per_px_ms(t) * (pixels - TILE_PIXELS)
        else:
            ms = fixed + (t.tile_ms - fixed) * max(pixels, 1) / TILE_PIXELS
        if batched:
            ms = max(ms - fixed, 1e-3)
        return ms / 1000.0

    def fixed_ms(self, model: str) -> float:
        """The per-inference cost whatever the item's size: ``fixed_ms`` when the profile states it,
        else the intercept of the tile-4K line (0 when that is negative)."""
        t = self.timing(model)
        if t.fixed_ms is not None:
            return float(t.fixed_ms)
        return min(max(t.tile_ms - _per_px_ms(t) * TILE_PIXELS, 0.0), t.tile_ms)

    def service_s(self, model: str, pixels: int, rng: np.random.Generator | None = None,
                  batched: bool = False) -> float:
        """:meth:`base_s` times ``max(0.1, 1 + N(0, noise))`` when ``rng`` is given."""
        s = self.base_s(model, pixels, batched)
        noise = self.timing(model).noise
        if rng is not None and noise > 0:
            s *= max(0.1, 1 + rng.normal(0, noise))
        return s


def profile_from_dict(cfg: dict, where: str) -> DeviceProfile:
    """A profile from the content of a ``conf/device/<kind>.yaml``-style mapping; any mistake is
    one :class:`ConfigError` line naming ``where`` and the model."""
    check(isinstance(cfg, dict), f"{where}: a device profile must be a mapping, got {type(cfg).__name__}")
    models = cfg.get("models")
    check(isinstance(models, dict) and len(models) > 0, f"{where}: a device profile needs a non-empty 'models' mapping")
    out = {}
    for m, v in models.items():
        check(isinstance(v, dict), f"{where}: models.{m} must be a mapping with tile_ms and frame4k_ms")
        unknown = set(v) - TIMING_KEYS
        check(not unknown, f"{where}: models.{m} has unknown keys {sorted(unknown)} (allowed: {sorted(TIMING_KEYS)})")
        missing = {"tile_ms", "frame4k_ms"} - set(v)
        check(not missing, f"{where}: models.{m} lacks {sorted(missing)}")
        try:
            out[str(m)] = ModelTiming(**{k: (str(x) if k == "source" else x) for k, x in v.items()})
        except ConfigError as e:
            raise ConfigError(f"{where}: models.{m}: {e}") from None
    return DeviceProfile(str(cfg.get("name", where)), out, str(cfg.get("source", "")))


def profile_path(kind: str, profiles_dir: str | Path | None = None) -> Path:
    """Where device profile ``kind`` lives: ``<profiles_dir>/<kind>.yaml``, default ``conf/device``."""
    return Path(profiles_dir or CONF_DIR / "device") / f"{kind}.yaml"


def load_profile(kind: str, path: str | Path | None = None, profiles_dir: str | Path | None = None) -> DeviceProfile:
    """``conf/device/<kind>.yaml`` (or the file ``path``, or ``<profiles_dir>/<kind>.yaml``) as a
    :class:`DeviceProfile`."""
    from omegaconf import OmegaConf

    p = Path(path) if path is not None else profile_path(kind, profiles_dir)
    if not p.is_file():
        avail = ", ".join(options("device")) or "none"
        raise ConfigError(f"no device profile '{kind}': {p} does not exist (available: {avail})")
    try:
        cfg = OmegaConf.to_container(OmegaConf.load(p), resolve=True)
    except Exception as e:  # yaml scanner/parser errors, bad interpolations
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"device profile {p} is not valid YAML: {first}") from None
    return profile_from_dict(cfg, str(p))


@dataclass
class LoadTrace:
    """Slowdown factors per node over frame ranges: ``[{node, start, end, factor}]``, end exclusive."""

    events: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        check(isinstance(self.events, (list, tuple)), f"load_trace must be a list of events, got {self.events!r}")
        self.events = [dict(e) if isinstance(e, dict) else e for e in self.events]
        for i, e in enumerate(self.events):
            check(isinstance(e, dict) and {"node", "start", "end", "factor"} <= set(e),
                  f"load trace event {i} needs node, start, end, factor: {e}")
            ok = (isinstance(e["start"], int) and isinstance(e["end"], int) and _positive(e["factor"])
                  and e["end"] > e["start"] >= 0)
            check(ok, f"load trace event {i} is invalid (integer frames 0 <= start < end, factor > 0): {e}")

    def check_nodes(self, names: list[str]) -> None:
        """Every event must name a node of the topology (a typo would silently do nothing)."""
        for i, e in enumerate(self.events):
            check(e["node"] in names, f"load trace event {i} names node '{e['node']}', not in the topology "
                                      f"(nodes: {', '.join(names)})")

    def factor(self, node: str, frame: int) -> float:
        f = 1.0
        for e in self.events:
            if e["node"] == node and e["start"] <= frame < e["end"]:
                f *= float(e["factor"])
        return f
