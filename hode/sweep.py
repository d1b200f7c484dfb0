"""What a job of a Hydra multirun does besides its task: resume, W&B grouping, failure records.

``run.py`` asks :meth:`SweepJob.current` for the job it is running (``None`` outside ``-m``):

- **resume**: with ``experiment.resume=true`` and the old sweep dir (``hydra.sweep.dir=DIR``), a job
  whose ``job.json`` says ``ok`` for the same overrides and whose ``results.json`` exists is skipped;
- **grouping**: ``logger.group`` (when the logger has one and it is unset) becomes
  ``<experiment>-<sweep dir name>`` so every job of a sweep lands in one W&B group, and the W&B tags
  get the experiment name and size;
- **records**: every job leaves ``job.json`` in its dir (``status`` ok | failed, the error line, the
  overrides, the duration); a failing job is recorded and the sweep goes on with the next one.

:class:`SweepSummary` is a Hydra callback (``hydra.callbacks`` in ``conf/experiment/*.yaml``) that
prints one line per failed job at the end of a sweep and exits 1 when any failed.
"""
from __future__ import annotations

import json
import logging
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from hode.results import atomic_write_text, redact_overrides

log = logging.getLogger(__name__)

JOB_FILE = "job.json"
RESULTS_FILE = "results.json"
# Overrides that do not change what a job computes: a resumed sweep adds or changes them.
NEUTRAL_PREFIXES = ("experiment.resume=", "+experiment.resume=", "logger.group=", "progress=")


def job_overrides(overrides: list[str]) -> list[str]:
    """The overrides that identify a job's work (sorted; resume/progress switches dropped)."""
    return sorted(o for o in overrides if not o.startswith(NEUTRAL_PREFIXES))


def read_json(path: Path) -> dict | None:
    """A JSON object from ``path``, or None when it is missing or unreadable (never raises)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def git_commit(root: Path | None = None) -> str:
    """The checkout's commit, with ``+dirty`` when files differ from it; ``unknown`` without git."""
    import subprocess

    from hode.config import ROOT

    cwd = str(root or ROOT)
    try:
        head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=cwd, capture_output=True, text=True,
                              timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (head + ("+dirty" if dirty else "")) if head else "unknown"


def error_line(exc: BaseException) -> str:
    """One line naming the error: the message's first line, with the type for unexpected ones."""
    from hode.errors import HodeError

    msg = (str(exc).strip().splitlines() or [""])[0][:500]
    if isinstance(exc, HodeError):
        return msg or type(exc).__name__
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__


def check_size(cfg: DictConfig) -> None:
    """``experiment.size`` must name one of ``experiment.sizes`` (else every size-dependent value fails)."""
    from hode.errors import check

    sizes = OmegaConf.select(cfg, "experiment.sizes", default=None)
    if sizes is None:
        return
    size = OmegaConf.select(cfg, "experiment.size", default=None)
    check(size in sizes, f"experiment.size must be one of {', '.join(map(str, sizes))}, got {size!r}")


class SweepJob:
    """The current multirun job: its dir, its overrides, and the experiment it belongs to."""

    def __init__(self, cfg: DictConfig, out_dir: Path, sweep_dir: Path, num: int, overrides: list[str]) -> None:
        self.cfg, self.dir, self.sweep_dir, self.num = cfg, Path(out_dir), Path(sweep_dir), num
        self.overrides = redact_overrides(list(overrides))  # job.json must not keep a secret typed on the command line
        self.experiment = str(OmegaConf.select(cfg, "experiment.name", default=None) or "sweep")
        self.size = OmegaConf.select(cfg, "experiment.size", default=None)
        self.started = time.time()
        self.commit = git_commit()  # the code this job runs (the checkout may change while a sweep runs)

    @classmethod
    def current(cls, cfg: DictConfig) -> "SweepJob | None":
        """The job Hydra is running, when it runs a multirun (``-m``); None for a single run."""
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        if not HydraConfig.initialized():
            return None
        hc = HydraConfig.get()
        if hc.mode != RunMode.MULTIRUN:
            return None
        return cls(cfg, Path(hc.runtime.output_dir), Path(hc.sweep.dir), int(hc.job.num), list(hc.overrides.task))

    # ----- before the task ----------------------------------------------------------------------

    def resume_enabled(self) -> bool:
        return bool(OmegaConf.select(self.cfg, "experiment.resume", default=False))

    def finished_before(self) -> bool:
        """True when resuming and this dir holds this job's earlier successful result."""
        if not self.resume_enabled():
            return False
        rec = read_json(self.dir / JOB_FILE)
        if not rec or rec.get("status") != "ok" or not (self.dir / RESULTS_FILE).is_file():
            return False
        if job_overrides(rec.get("overrides", [])) != job_overrides(self.overrides):
            log.warning("job %d: %s holds another job (%s), running this one", self.num, self.dir,
                        " ".join(rec.get("overrides", [])))
            return False
        return True

    def prepare(self) -> None:
        """One W&B group per sweep, tags naming the experiment (only for loggers that take them)."""
        logger = self.cfg.get("logger")
        if not isinstance(logger, DictConfig):
            return
        with open_dict(logger):
            if "group" in logger and not logger.group:
                logger.group = f"{self.experiment}-{self.sweep_dir.name}"
            if str(logger.get("_target_", "")).endswith("WandbLogger"):
                tags = list(logger.get("tags") or [])
                logger.tags = tags + [t for t in (self.experiment, self.size and f"size={self.size}") if t and t not in tags]

    # ----- after the task -----------------------------------------------------------------------

    def record(self, status: str, **extra: Any) -> dict:
        """Write this job's ``job.json`` (status, overrides, duration, commit, and ``extra``); the record is returned."""
        rec = {"status": status, "experiment": self.experiment, "size": self.size, "job": self.num,
               "overrides": self.overrides, "task": OmegaConf.select(self.cfg, "task.name", default=None),
               "duration_s": round(time.time() - self.started, 2), "commit": self.commit,
               "finished": time.strftime("%Y-%m-%dT%H:%M:%S"), **extra}
        atomic_write_text(self.dir / JOB_FILE, json.dumps(rec, indent=1, default=str))  # readers on other machines too
        return rec

    def ok(self) -> dict:
        return self.record("ok")

    def skipped(self) -> None:
        print(f"resume: job {self.num} ({' '.join(job_overrides(self.overrides))}) finished before, skipped")

    def failed(self, exc: BaseException) -> dict:
        """Record the failure (one error line; the traceback too when it is not a user error)."""
        from hode.errors import HodeError

        line = error_line(exc)
        extra: dict[str, Any] = {"error": line, "error_type": type(exc).__name__}
        if not isinstance(exc, HodeError):
            extra["traceback"] = traceback.format_exception(exc)[-12:]
            log.error("job %d failed:\n%s", self.num, "".join(traceback.format_exception(exc)))
        print(f"error: {line}  (job {self.num} recorded as failed in {self.dir / JOB_FILE}; the sweep goes on)",
              file=sys.stderr)
        return self.record("failed", **extra)


def sweep_status(sweep_dir: Path) -> dict[str, list[tuple[Path, dict]]]:
    """The sweep's job dirs by status: ok, failed, and missing (started, no job.json)."""
    out: dict[str, list[tuple[Path, dict]]] = {"ok": [], "failed": [], "missing": []}
    for d in sorted((p for p in Path(sweep_dir).iterdir() if p.is_dir() and (p / ".hydra").is_dir()),
                    key=lambda p: (len(p.name), p.name)):
        rec = read_json(d / JOB_FILE)
        key = rec.get("status") if rec and rec.get("status") in out else "missing"
        out[key].append((d, rec or {}))
    return out


try:
    from hydra.experimental.callback import Callback
except ImportError:  # pragma: no cover - hydra < 1.1
    Callback = object  # type: ignore[misc,assignment]


class SweepSummary(Callback):
    """``hydra.callbacks``: a one-screen summary after a multirun; exit status 1 if a job failed."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        if not sweep_dir.is_dir():
            return
        st = sweep_status(sweep_dir)
        n = sum(len(v) for v in st.values())
        print(f"sweep {sweep_dir}: {n} jobs, {len(st['ok'])} ok, {len(st['failed'])} failed"
              + (f", {len(st['missing'])} without a record" if st["missing"] else ""))
        for d, rec in st["failed"]:
            print(f"  failed {d.name}: {' '.join(job_overrides(rec.get('overrides', [])))}: {rec.get('error')}")
        for d, _ in st["missing"]:
            print(f"  no record {d.name}: the job did not finish (killed?)")
        print(f"report: python -m reports {sweep_dir}")
        if st["failed"] or st["missing"]:
            sys.exit(1)
