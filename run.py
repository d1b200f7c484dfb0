#!/usr/bin/env python
"""The one entry point: ``python run.py [group=option ...] [key=value ...]`` (Hydra).

Dispatches on ``cfg.task`` (run, train_detector, eval_detector, ...). A mistake the user can fix
(bad config value, unknown option, missing or corrupt file) prints one ``error:`` line and exits 2.
"""
from __future__ import annotations

import logging
import sys

import hydra
from omegaconf import DictConfig

from hode.config import check_cli
from hode.errors import HodeError

EXIT_USER_ERROR = 2


def _check_cli(argv: list[str]) -> None:
    """Refuse, in one line, what Hydra would turn into a traceback or a many-line error: unknown
    groups, options and keys, malformed overrides, bad values, an unusable run dir."""
    try:
        check_cli(argv)
    except HodeError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)


def _apply_safety_settings(cfg: DictConfig) -> None:
    """``limits:`` and ``trust_weights`` act process-wide (sources and detectors read them); the
    environment carries the trust to worker processes this run starts."""
    import os

    from hode.data import limits

    limits.configure(cfg.get("limits"))
    if cfg.get("trust_weights"):
        os.environ["HODE_TRUST_WEIGHTS"] = "1"


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    from hydra.utils import get_method

    from hode.sweep import SweepJob, check_size

    logging.getLogger("ultralytics").setLevel(logging.WARNING)
    from hode.edge.security import redact_hydra_outputs

    redact_hydra_outputs()  # Hydra saved the config and overrides already: mask secret-looking values
    job = SweepJob.current(cfg)  # a job of a multirun (-m): a failure is recorded, the sweep goes on
    if job is not None:
        if job.finished_before():  # experiment.resume=true: done in an earlier try of this sweep
            job.skipped()
            return
        job.prepare()
    try:
        _apply_safety_settings(cfg)
        check_size(cfg)  # +experiment=...: experiment.size names one of its sizes
        task = get_method(cfg.task._target_)  # the task's function; its settings live in cfg.task
        task(cfg)
    except HodeError as e:
        if job is None:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(EXIT_USER_ERROR)
        job.failed(e)
    except KeyboardInterrupt:
        if job is not None:  # a sweep stops here; the record says why (and a resumed sweep reruns it)
            job.record("interrupted", error="interrupted (SIGINT/SIGTERM)")
        from hode.results import written

        done = written()  # claim only what was completely written (an atomic rename happened)
        print(f"interrupted: results of the finished frames were written to {done[-1]}" if done
              else "interrupted: no results were written", file=sys.stderr)
        sys.exit(130)
    except Exception as e:
        if job is None:
            raise
        job.failed(e)
    else:
        if job is not None:
            job.ok()


if __name__ == "__main__":
    _check_cli(sys.argv[1:])
    main()
