"""``python run.py`` as a user runs it: a process of its own in the repo root, and the results.json it wrote.

The process is a fork of a server that imported torch & co. once (tests/support/warm.py), unless
``HODE_TEST_COLD_RUN=1``: then a cold ``python run.py``."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from hode.config import ROOT

from support import warm


def run_py(run_dir: Path | None, *overrides: str, expect_rc: int | None = 0, env: dict[str, str | None] | None = None,
           timeout: float = 300, text: bool = True) -> tuple[subprocess.CompletedProcess, dict | None]:
    """``python run.py <overrides> hydra.run.dir=<run_dir>`` (no run dir override when ``run_dir`` is None).

    Returns the finished process and the run's results.json as a dict (None when it wrote none).
    ``expect_rc`` is asserted, with the stderr tail as the message (None: the caller checks).
    ``env`` is laid over this process's environment (W&B offline); a None value removes a variable.
    """
    full_env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    for key, value in (env or {}).items():
        if value is None:
            full_env.pop(key, None)
        else:
            full_env[key] = value
    argv = [*overrides] + ([f"hydra.run.dir={run_dir}"] if run_dir is not None else [])
    if warm.enabled(full_env):  # a fork of a process that imported torch & co. once (tests/support/warm.py)
        proc = warm.run(argv, full_env, timeout, text=text)
    else:
        proc = subprocess.run([sys.executable, "run.py", *argv], cwd=ROOT, capture_output=True, text=text,
                              timeout=timeout, env=full_env)
    if expect_rc is not None:
        assert proc.returncode == expect_rc, (proc.returncode, proc.stderr[-3000:])
    results_file = Path(run_dir) / "results.json" if run_dir is not None else None
    results = json.loads(results_file.read_text()) if results_file is not None and results_file.is_file() else None
    return proc, results


def error_lines(proc: subprocess.CompletedProcess) -> list[str]:
    """The non-blank lines of a finished run's stderr."""
    return [line for line in proc.stderr.splitlines() if line.strip()]
