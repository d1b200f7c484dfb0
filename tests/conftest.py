"""Shared fixtures: the real composed Hydra config, small synthetic frames, a tmp run dir."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

from hode.config import CONF_DIR, ROOT

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("YOLO_OFFLINE", "1")

# Small and fast by default; tests override what they exercise.
FAST = ["logger=none", "progress=false", "filter=none", "dataset.width=1024", "dataset.height=768", "dataset.frames=3"]


def compose_config(overrides: list[str] | None = None, fast: bool = True) -> DictConfig:
    """``conf/config.yaml`` composed exactly as ``python run.py <overrides>`` would."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=(FAST if fast else []) + list(overrides or []), return_hydra_config=True)
    # Resolve ${hydra:...} interpolations outside a running app.
    from hydra.core.hydra_config import HydraConfig

    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


@pytest.fixture
def cfg_factory():
    return compose_config


@pytest.fixture
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def small_frames():
    """Five 1024x768 synthetic frames with ground truth (rendered once per session)."""
    from hode.data.synthetic import SyntheticCrowd

    return list(SyntheticCrowd(width=1024, height=768, frames=5, seed=3))
