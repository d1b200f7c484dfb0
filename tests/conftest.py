"""Shared fixtures: the real composed Hydra config, small synthetic frames, the shared edge worker.

Helpers that test modules import live in tests/support/ (test modules never import each other).
Two tiers: tests marked ``slow`` need real YOLO inference, sshd, real worker processes, a subprocess
that loads torch (``run.py`` past its config checks: seconds each), or seconds of training or
closed-loop evaluation. ``pytest -m "not slow"`` is the quick inner loop; a plain ``pytest`` (what
CI runs) runs everything. Mark a new test ``@pytest.mark.slow`` (or the module, ``pytestmark``) when
it does any of these.
"""
from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from hode.config import ROOT

from support.config import compose_config

# A shell without job control starts background commands with SIGINT ignored (e.g. `nohup pytest &`),
# and an ignored signal stays ignored in every child: the Ctrl-C tests would then SIGINT runs that
# cannot hear it. A handled signal is reset to the default in children, so they hear it again.
signal.signal(signal.SIGINT, signal.default_int_handler)

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("YOLO_OFFLINE", "1")


@pytest.fixture
def cfg_factory():
    """``compose_config(overrides, small=True)``: the run config as ``python run.py`` composes it."""
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
    """``(process, client)`` of the session's shared edge worker (tests/support/edge.py), serving."""
    from support.edge import shared_worker, wait_serving

    proc = shared_worker()
    client = wait_serving(proc)
    yield proc, client
    client.close()
