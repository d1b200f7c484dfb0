"""The real composed Hydra config, with small defaults for tests."""
from __future__ import annotations

from omegaconf import DictConfig

from hode.config import compose_config as compose_run_config

# Small by default (no logger, no filter, three 1024x768 frames); tests override what they exercise.
SMALL_RUN = ["logger=none", "progress=false", "filter=none", "dataset.width=1024", "dataset.height=768", "dataset.frames=3"]


def compose_config(overrides: list[str] | None = None, small: bool = True) -> DictConfig:
    """``conf/config.yaml`` composed exactly as ``python run.py <overrides>`` would, after ``SMALL_RUN``
    unless ``small=False``."""
    return compose_run_config((SMALL_RUN if small else []) + list(overrides or []))
