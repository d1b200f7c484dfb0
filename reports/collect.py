"""Find the jobs of sweeps on disk and read what they logged, tolerating every kind of damage.

A *job dir* is one Hydra job: it has ``.hydra/`` (written when the job starts), ``results.json``
(written by the task), or ``job.json`` (written by the sweep hook, ``hode/sweep.py``). A
*sweep dir* is the parent of job dirs. Nothing here raises on a missing or corrupt file: such a
job is reported as failed or missing, with the reason.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hode.sweep import JOB_FILE, RESULTS_FILE, job_overrides, read_json

SKIP_DIRS = {"wandb", "lightning", "lightning_ckpt", "workers", "figures", "__pycache__", ".hydra"}


@dataclass
class Job:
    dir: Path
    status: str  # ok | failed | missing (started, never finished or recorded)
    config: dict = field(default_factory=dict)
    results: dict | None = None
    error: str | None = None
    overrides: list[str] = field(default_factory=list)
    record: dict = field(default_factory=dict)
    sibling_experiment: str | None = None  # what the other jobs of its sweep ran (for jobs without a config)

    @property
    def sweep(self) -> Path:
        return self.dir.parent

    @property
    def experiment(self) -> str:
        """experiment.name of its config, else of its job record, else its sweep siblings', else "other"."""
        rec = self.record.get("experiment")
        return str(get(self.config, "experiment.name") or (rec if rec and rec != "sweep" else None)
                   or self.sibling_experiment or "other")

    @property
    def method(self) -> str:
        """The method label: experiment.method, else ``<scheduler>+<filter>``."""
        m = get(self.config, "experiment.method")
        if m:
            return str(m)
        return f"{get(self.config, 'scheduler.name') or get(self.config, 'scheduler._target_', '?')}+" \
               f"{get(self.config, 'filter.name') or '?'}"

    @property
    def label(self) -> str:
        return str(get(self.config, "experiment.label") or self.method)

    @property
    def name(self) -> str:
        """Short job name for tables: the sweep's own overrides."""
        own = [o for o in job_overrides(self.overrides)
               if not o.startswith(("+experiment=", "experiment.size=", "logger=", "hydra."))]
        return " ".join(own) or f"job {self.dir.name}"

    def r(self, path: str, default: Any = None) -> Any:
        """A value from results.json by dotted path (``latency_ms.p95``)."""
        return get(self.results or {}, path, default)


def get(d: Any, path: str, default: Any = None) -> Any:
    """``d["a"]["b"]`` for ``path="a.b"``; ``default`` when any step is missing."""
    cur = d
    for part in path.split("."):
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        elif isinstance(cur, list) and part.isdigit() and int(part) < len(cur):
            cur = cur[int(part)]
        else:
            return default
    return cur


def _hydra_config(job_dir: Path) -> dict:
    """The job's composed config from ``.hydra/config.yaml`` (resolved where possible)."""
    path = job_dir / ".hydra" / "config.yaml"
    if not path.is_file():
        return {}
    try:
        import hode.config  # noqa: F401  registers the ${root:} resolver
        from omegaconf import OmegaConf

        cfg = OmegaConf.load(path)
        try:
            return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
        except Exception:  # e.g. ${hydra:...} outside a Hydra run: keep what resolves
            return OmegaConf.to_container(cfg, resolve=False)
    except Exception:
        return {}


def _hydra_overrides(job_dir: Path) -> list[str]:
    path = job_dir / ".hydra" / "overrides.yaml"
    try:
        from omegaconf import OmegaConf

        return [str(o) for o in OmegaConf.load(path)] if path.is_file() else []
    except Exception:
        return []


def load_job(job_dir: Path) -> Job:
    """One job dir as a :class:`Job`; never raises."""
    job_dir = Path(job_dir)
    record = read_json(job_dir / JOB_FILE) or {}
    results = read_json(job_dir / RESULTS_FILE)
    config = (results or {}).get("config") or _hydra_config(job_dir)
    overrides = record.get("overrides") or _hydra_overrides(job_dir)
    if record.get("status") == "failed":
        return Job(job_dir, "failed", config, results, record.get("error") or "failed (no message)", overrides, record)
    if results is not None:
        return Job(job_dir, "ok", config, results, None, overrides, record)
    if (job_dir / RESULTS_FILE).exists():
        return Job(job_dir, "failed", config, None, "results.json is unreadable (corrupt or half written)",
                   overrides, record)
    why = "job.json says ok but results.json is missing" if record.get("status") == "ok" else \
        "no results.json and no job record: the job did not finish (killed, or still running)"
    return Job(job_dir, "missing", config, None, why, overrides, record)


def is_job_dir(d: Path) -> bool:
    return (d / ".hydra").is_dir() or (d / RESULTS_FILE).is_file() or (d / JOB_FILE).is_file()


def find_jobs(root: Path) -> list[Job]:
    """Every job dir under ``root`` (``root`` itself included), jobs inside jobs too (``paper``)."""
    root = Path(root)
    found = []
    for dirpath, dirnames, _ in os.walk(root):
        d = Path(dirpath)
        dirnames[:] = sorted(n for n in dirnames if n not in SKIP_DIRS and not n.startswith("."))
        if is_job_dir(d):
            found.append(d)
    jobs = [load_job(d) for d in sorted(found, key=_job_order)]
    known: dict[Path, set[str]] = {}
    for j in jobs:
        if j.experiment != "other":
            known.setdefault(j.sweep, set()).add(j.experiment)
    for j in jobs:  # a job that never got far enough to say what it ran belongs with its siblings
        if j.experiment == "other" and len(known.get(j.sweep, ())) == 1:
            j.sibling_experiment = next(iter(known[j.sweep]))
    return jobs


def _job_order(d: Path) -> tuple:
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in d.parts)


def sweep_time(sweep: Path) -> float:
    """When a sweep last did something: the newest job record, results or Hydra config in it."""
    t = 0.0
    for p in [sweep / "multirun.yaml", *sweep.glob("*/" + JOB_FILE), *sweep.glob("*/" + RESULTS_FILE),
              *sweep.glob("*/.hydra/config.yaml")]:
        try:
            t = max(t, p.stat().st_mtime)
        except OSError:
            pass
    return t


def latest_per_experiment(jobs: list[Job]) -> dict[str, list[Job]]:
    """Jobs grouped by experiment, keeping only each experiment's latest sweep."""
    by_exp: dict[str, dict[Path, list[Job]]] = {}
    for j in jobs:
        by_exp.setdefault(j.experiment, {}).setdefault(j.sweep, []).append(j)
    out = {}
    for exp, sweeps in by_exp.items():
        latest = max(sweeps, key=lambda s: (sweep_time(s), str(s)))
        out[exp] = sweeps[latest]
    return out
