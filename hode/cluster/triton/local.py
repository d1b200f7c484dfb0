"""Triton servers on this machine for the topology nodes that name no ``url``, so that
``python run.py runner=triton`` runs any topology as it is: one ``python -m hode.cluster.triton.serve``
process per node on 127.0.0.1 (a free port), serving the node's detector with the run's shared
detector settings, started at once, waited for until ready, and stopped with the run.
"""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from hode.cluster.triton.client import TritonError, TritonNode
from hode.cluster.triton.serve import free_port

log = logging.getLogger(__name__)


def run_subdir(path: str | None, name: str) -> Path:
    """``path``, or ``<run dir>/<name>`` inside a Hydra run, else a temporary folder."""
    if path:
        return Path(path)
    try:
        from hydra.core.hydra_config import HydraConfig

        return Path(HydraConfig.get().runtime.output_dir) / name
    except Exception:  # not inside a Hydra run (a test, a script)
        import tempfile

        return Path(tempfile.mkdtemp(prefix=f"hode-{name}-"))


def detector_sets(detector: Any) -> list[str]:
    """``--set key=value`` arguments carrying the run's shared detector settings to a served model,
    so that it detects exactly as ``runner=inline`` would."""
    from omegaconf import OmegaConf

    from hode.detect.factory import SHARED_KEYS

    if detector is None:
        return []
    cfg = OmegaConf.to_container(OmegaConf.create(detector), resolve=True) if not isinstance(detector, dict) else detector
    out = []
    for k in SHARED_KEYS:
        if k in cfg and k != "device" and cfg[k] is not None:
            out += ["--set", f"{k}={cfg[k]}"]
    return out


class LocalServer:
    """One server process serving ``model`` (it becomes ``tritonserver``: its pid is the server's)."""

    def __init__(self, node_name: str, model: str, sets: list[str], work: Path, torch_threads: int) -> None:
        self.node_name, self.model = node_name, model
        self.port = free_port()
        self.url = f"127.0.0.1:{self.port}"
        work.mkdir(parents=True, exist_ok=True)
        self.log_path = work / f"triton-{node_name}.log"
        with open(self.log_path, "w") as logf:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "hode.cluster.triton.serve", "--grpc-port", str(self.port),
                 "--workdir", str(work / f"server-{node_name}"), "--torch-threads", str(torch_threads),
                 "--parent-pid", str(os.getpid()), "--model", model, *sets],
                stdout=logf, stderr=subprocess.STDOUT, start_new_session=True)  # Ctrl-C is the run's to handle

    def wait_ready(self, deadline: float) -> None:
        node = TritonNode(self.node_name, self.url, self.model)
        try:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise TritonError(f"local triton server for node '{self.node_name}' exited "
                                      f"({self.proc.returncode}): {self._last_line()} (log: {self.log_path})")
                if node.healthy(1.0):
                    return
                time.sleep(0.5)
        finally:
            node.close()
        raise TritonError(f"local triton server for node '{self.node_name}' not ready in time (log: {self.log_path}); "
                          "raise runner.backend.start_timeout_s")

    def _last_line(self) -> str:
        try:
            lines = [ln for ln in self.log_path.read_text(errors="replace").splitlines() if ln.strip()]
        except OSError:
            return "no log"
        return (lines[-1] if lines else "no output")[:200]

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class LocalServers:
    """The servers of the nodes without a ``url``; :meth:`start` returns ``{node name: url}``."""

    def __init__(self, nodes: list, detector: Any, work: Path, torch_threads: int, start_timeout_s: float) -> None:
        self.nodes, self.detector, self.work = nodes, detector, work
        self.torch_threads, self.start_timeout_s = torch_threads, start_timeout_s
        self.servers: list[LocalServer] = []

    def start(self) -> dict[str, str]:
        if not self.nodes:
            return {}
        sets = detector_sets(self.detector)
        # all at once: each spends most of its start-up loading torch into its model's process
        self.servers = [LocalServer(n.name, n.model, sets, self.work, self.torch_threads) for n in self.nodes]
        log.info("starting %d local triton server(s): %s", len(self.servers),
                 ", ".join(f"{s.node_name}@{s.url}" for s in self.servers))
        deadline = time.monotonic() + self.start_timeout_s
        try:
            for s in self.servers:
                s.wait_ready(deadline)
        except BaseException:
            self.close()
            raise
        return {s.node_name: s.url for s in self.servers}

    def close(self) -> None:
        for s in self.servers:
            s.stop()
        self.servers = []
