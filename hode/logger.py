"""Experiment loggers. W&B runs offline unless the user configured it; a W&B failure never fails a run."""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class NullLogger:
    """``logger=none``."""

    def start(self, config: dict, run_dir: Path, name: str, tags: list[str] | None = None) -> None: ...
    def log(self, metrics: dict[str, Any], step: int | None = None) -> None: ...
    def summary(self, metrics: dict[str, Any]) -> None: ...
    def image(self, key: str, path: Path) -> None: ...
    def finish(self) -> None: ...


class WandbLogger(NullLogger):
    """``logger=wandb``: config, per-frame and summary metrics to Weights & Biases.

    ``mode`` is ``offline`` by default (sync later with ``wandb sync <run_dir>/wandb/offline-run-*``);
    ``online`` needs WANDB_API_KEY in the environment, never in a config file.
    """

    def __init__(self, project: str = "hode", mode: str = "offline", entity: str | None = None,
                 group: str | None = None, log_every: int = 1, tags: list[str] | None = None) -> None:
        self.project, self.mode, self.entity, self.group, self.log_every = project, mode, entity, group, log_every
        self.tags = list(tags or [])  # added to every run's own tags (a sweep adds its experiment name)
        self._run = None

    def _safe(self, what: str, fn, *a, **kw):
        if self._run is None and what != "init":
            return None
        try:
            return fn(*a, **kw)
        except Exception as e:  # logging must never take the experiment down
            log.warning("wandb %s failed, continuing without it: %s", what, str(e).splitlines()[0][:200])
            if what == "init":
                self._run = None
            return None

    def start(self, config: dict, run_dir: Path, name: str, tags: list[str] | None = None) -> None:
        os.environ.setdefault("WANDB_SILENT", "true")
        import wandb

        self._run = self._safe("init", wandb.init, project=self.project, entity=self.entity, group=self.group,
                               mode=os.environ.get("WANDB_MODE", self.mode), dir=str(run_dir), name=name,
                               tags=list(dict.fromkeys([*(tags or []), *self.tags])), config=config,
                               reinit="finish_previous")

    def log(self, metrics: dict[str, Any], step: int | None = None) -> None:
        if step is not None and step % self.log_every:
            return
        self._safe("log", lambda: self._run.log(metrics, step=step))

    def summary(self, metrics: dict[str, Any]) -> None:
        self._safe("summary", lambda: self._run.summary.update(metrics))

    def image(self, key: str, path: Path) -> None:
        import wandb

        self._safe("image", lambda: self._run.log({key: wandb.Image(str(path))}))

    def finish(self) -> None:
        self._safe("finish", lambda: self._run.finish())
        self._run = None
