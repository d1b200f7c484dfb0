"""Local worker processes: spawn one per node, find its port, stop it and everything it started.

No orphans, ever, by three independent means:

- each worker runs in its own process group (session), and :meth:`WorkerProcess.stop` sends
  SIGTERM to the group, then SIGKILL after a grace period;
- every started worker is registered here and stopped by an ``atexit`` hook (normal exit, an
  exception, Ctrl-C in the camera);
- the worker itself exits when its parent process goes away (SIGKILL of the camera, a crash), see
  :func:`hode.edge.server.watch_parent`.

Being in their own session also keeps a terminal's Ctrl-C away from the workers: the camera gets
it and shuts them down in order.
"""
from __future__ import annotations

import atexit
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from hode.config import ROOT
from hode.edge.server import WorkerSpec, spec_json
from hode.errors import HodeError

_RUNNING: set["WorkerProcess"] = set()
_LOCK = threading.Lock()


class WorkerError(HodeError):
    """An edge worker did not start, died, or failed a request."""


class WorkerProcess:
    def __init__(self, spec: WorkerSpec, log_dir: Path, torch_threads: int = 1) -> None:
        self.spec, self.log_dir, self.torch_threads = spec, Path(log_dir), torch_threads
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in spec.node)
        self.log_path = self.log_dir / f"{safe}.log"
        self.spec_path = self.log_dir / f"{safe}.spec.json"
        self.port_path = self.log_dir / f"{safe}.port"
        self.proc: subprocess.Popen | None = None

    @property
    def node(self) -> str:
        return self.spec.node

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def spawn(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.port_path.unlink(missing_ok=True)
        self.spec.port_file, self.spec.parent_pid = str(self.port_path), os.getpid()
        self.spec_path.write_text(spec_json(self.spec))
        env = dict(os.environ, PYTHONUNBUFFERED="1", YOLO_OFFLINE="1")
        if self.torch_threads > 0:  # n workers share this machine's cores: no oversubscription
            env.update(OMP_NUM_THREADS=str(self.torch_threads), MKL_NUM_THREADS=str(self.torch_threads))
        with open(self.log_path, "ab" if self.proc is not None else "wb") as log:  # a restart keeps the old log
            self.proc = subprocess.Popen([sys.executable, "-m", "hode.edge.server", "--spec", str(self.spec_path)],
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                         cwd=str(ROOT), env=env, start_new_session=True)
        with _LOCK:
            _RUNNING.add(self)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def port(self) -> int | None:
        """The port the worker listens on, once it has written it."""
        try:
            return int(self.port_path.read_text())
        except (FileNotFoundError, ValueError):
            return None

    def log_tail(self, lines: int = 3) -> str:
        """The last meaningful lines of the worker's log (its error line first if it printed one)."""
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except FileNotFoundError:
            return ""
        errors = [line for line in text if line.startswith("error:")]
        return " | ".join((errors or text)[-lines:])

    def stop(self, grace_s: float = 3.0) -> None:
        """SIGTERM the worker's process group, SIGKILL what is left after ``grace_s``; reap it."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            _signal_group(proc.pid, signal.SIGTERM)
            try:
                proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                pass
        _signal_group(proc.pid, signal.SIGKILL)  # anything of its group still there
        try:
            proc.wait(5.0)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL cannot be ignored
            pass
        with _LOCK:
            _RUNNING.discard(self)


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def stop_all() -> None:
    """Stop every worker this process started and has not stopped yet."""
    with _LOCK:
        running = list(_RUNNING)
    for w in running:
        w.stop(grace_s=1.0)


atexit.register(stop_all)
