"""The session's shared edge worker and what the edge and live-runner tests use around it.

Loading a detector in a fresh worker process is the expensive part of these tests, so one real
worker serves every test that only needs *a* running worker; it is started on first use and
stopped at the end of the session (hode.edge.process stops every worker it started at exit).
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

from omegaconf import OmegaConf

from hode.detect.factory import detector_config
from hode.edge.client import EdgeClient
from hode.edge.process import WorkerProcess
from hode.edge.server import WorkerSpec

# A very low threshold so that boxes come back whatever state the shipped weights are in: the
# point of these tests is transport and coordinates, not accuracy.
LOW_CONF = 0.001
# A device profile of our own named "fast" (noise 0): the tests do not depend on the shipped profiles' numbers.
FAST_PROFILE = {"name": "fast", "source": "test", "models": {m: {"tile_ms": 10.0, "frame4k_ms": 100.0, "noise": 0.0}
                                                              for m in ("yolov5n", "yolov5s", "yolov5m")}}

_shared: WorkerProcess | None = None


def write_fast_profile(profiles_dir: Path) -> Path:
    """``profiles_dir/fast.yaml`` holding FAST_PROFILE (for ``runner.backend.profiles_dir``); returns the folder."""
    (profiles_dir / "fast.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(FAST_PROFILE)))
    return profiles_dir


def yolov5n_config(**changes) -> dict:
    cfg = OmegaConf.to_container(detector_config("yolov5n", None), resolve=True)
    cfg.update(conf=LOW_CONF, **changes)
    return cfg


def shared_worker() -> WorkerProcess:
    """The session's worker: yolov5n, paced to FAST_PROFILE, one torch thread, any free port."""
    global _shared
    if _shared is None or not _shared.alive():
        spec = WorkerSpec(node="ext", detector=yolov5n_config(), device_kind="fast", emulate=True, profile=FAST_PROFILE,
                          torch_threads=1, max_side=4096)
        _shared = WorkerProcess(spec, Path(tempfile.mkdtemp(prefix="hode-test-worker-")), torch_threads=1)
        _shared.spawn()
    return _shared


def wait_for(cond, timeout: float = 30.0, what: str = "the condition", poll: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(poll)


def wait_serving(proc: WorkerProcess, timeout: float = 120.0, encoding: str = "raw") -> EdgeClient:
    """A client of ``proc`` once its health check says SERVING."""
    wait_for(lambda: proc.port() is not None or not proc.alive(), timeout, f"{proc.node}'s port")
    assert proc.alive(), f"worker died: {proc.log_tail()}"
    client = EdgeClient(f"127.0.0.1:{proc.port()}", encoding=encoding)
    wait_for(lambda: client.serving() or not proc.alive(), timeout, f"{proc.node} to serve")
    assert proc.alive(), f"worker died: {proc.log_tail()}"
    return client


def running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def workers_of(marker: str) -> list[int]:
    """Live (non-zombie) worker processes whose command line mentions ``marker`` (a tmp dir)."""
    pids = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            cmd = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if "hode.edge.server" in cmd and marker in cmd and running(int(p.name)):
            pids.append(int(p.name))
    return pids
