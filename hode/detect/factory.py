"""Detectors for the models named by topology nodes, sharing the run's thresholds and device."""
from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from hode.config import build, load_option

# What a node's model option takes from the run's ``detector`` config; weights/arch stay its own.
SHARED_KEYS = ("imgsz", "conf", "iou", "max_det", "device", "half", "native_scale")


def detector_config(model: str, base: DictConfig | None) -> DictConfig:
    """``conf/detector/<model>.yaml`` with the run's shared settings laid over it."""
    if base is not None and base.get("name") == model:
        return base
    cfg = load_option("detector", model)
    if base is not None:
        shared = {k: base[k] for k in SHARED_KEYS if k in base and k in cfg}
        cfg = OmegaConf.merge(cfg, shared)
    return cfg


def make_detector(model: str, base: DictConfig | None = None):
    return build(detector_config(model, base))
