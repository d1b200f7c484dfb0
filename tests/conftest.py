"""Shared fixtures: the real composed Hydra config, small synthetic frames, a tmp run dir."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from omegaconf import DictConfig

from hode.config import ROOT
from hode.config import compose_config as compose_run_config

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("YOLO_OFFLINE", "1")

# Small and fast by default; tests override what they exercise.
FAST = ["logger=none", "progress=false", "filter=none", "dataset.width=1024", "dataset.height=768", "dataset.frames=3"]


def compose_config(overrides: list[str] | None = None, fast: bool = True) -> DictConfig:
    """``conf/config.yaml`` composed exactly as ``python run.py <overrides>`` would."""
    return compose_run_config((FAST if fast else []) + list(overrides or []))


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


@pytest.fixture(scope="module")
def worker():
    """``(process, client)`` of the session's shared edge worker (tests/test_edge_support.py), serving."""
    from test_edge_support import shared_worker, wait_serving

    proc = shared_worker()
    client = wait_serving(proc)
    yield proc, client
    client.close()
