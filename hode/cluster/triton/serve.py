"""A real Triton Inference Server on this machine serving the harness's detectors: writes a model
repository (:mod:`hode.cluster.triton.repo`) and replaces this process with the ``tritonserver``
binary of :mod:`.dist` (the one the ``nvidia-pytriton`` wheel bundles)::

    python -m hode.cluster.triton.serve --grpc-port 8001 --model yolov5n --model yolov5s

The binary's Python backend runs each model in a stub process with an embedded interpreter. The
wheel ships one stub per Python minor version, linked against ``libpython3.X.so.1.0`` found by
the dynamic loader; on a machine whose system ``libpython3.11`` is another patch release than the
interpreter running this (Debian's 3.11.2 under pyenv's 3.11.7) the stub would mix that library
with this interpreter's standard library and fail (``'_thread.RLock' object has no attribute
'_recursion_count'``). So the stub gets this interpreter's own ``libpython`` first on
``LD_LIBRARY_PATH``, its ``PYTHONHOME`` and its ``sys.path`` (venv site-packages, this project).
"""
from __future__ import annotations

import argparse
import os
import shutil
import socket
import sys
import sysconfig
import tempfile
from pathlib import Path
from typing import Callable, Sequence

from hode.cluster.triton import repo
from hode.cluster.triton.dist import libs_dir, server_dir
from hode.errors import ConfigError, HodeError


def cli_errors(main: Callable[[], int]) -> int:
    """Run ``main``; a mistake the user can fix is one ``error:`` line and exit status 2."""
    try:
        return main()
    except HodeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def backends_dir(dist: Path, into: Path) -> Path:
    """A backend directory whose Python backend runs the stub for this interpreter's version,
    through :data:`STUB_GUARD`."""
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    stub = dist / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        raise ConfigError(f"the Triton server at {dist} has no Python-backend stub for Python {version}")
    out = into / "backends"
    shutil.copytree(dist / "backends", out, dirs_exist_ok=True)
    shutil.copy2(stub, out / "python" / "triton_python_backend_stub.real")
    guard = out / "python" / "triton_python_backend_stub"
    guard.write_text(STUB_GUARD)
    guard.chmod(0o755)
    return out


# A stub whose server was killed (SIGKILL) while it was inside a request waits for it for ever (and
# holds its detector's memory and its shared-memory region). The guard starts the stub in its own
# place (same pid, via exec) with a watcher beside it that kills the stub once its parent is no
# longer the server, and removes the region (the stub's second argument) the server can no longer.
STUB_GUARD = """#!/bin/sh
server=$PPID
(
  while [ "$(cut -d' ' -f4 /proc/$$/stat 2>/dev/null)" = "$server" ]; do sleep 1; done
  [ -e /proc/$$ ] && kill -9 $$ 2>/dev/null && rm -f "/dev/shm/$2"
) </dev/null >/dev/null 2>&1 &
exec "$0.real" "$@"
"""


def stub_env(dist: Path, torch_threads: int = 0) -> dict[str, str]:
    """The environment the server (and so its stubs) runs with: this interpreter's libpython, home and
    path; with ``torch_threads``, OpenMP and MKL held to as many threads (as the live runner's workers)."""
    env = dict(os.environ)
    if torch_threads > 0:
        env.update(OMP_NUM_THREADS=str(torch_threads), MKL_NUM_THREADS=str(torch_threads))
    libs = [sysconfig.get_config_var("LIBDIR") or "", str(libs_dir(dist))]
    env["LD_LIBRARY_PATH"] = os.pathsep.join([p for p in libs if p] + [env.get("LD_LIBRARY_PATH", "")]).rstrip(os.pathsep)
    env["PYTHONHOME"] = sys.base_prefix
    here = Path(__file__).resolve().parents[3]  # the project root, so `import hode` works from a checkout
    env["PYTHONPATH"] = os.pathsep.join([str(here), *[p for p in sys.path if p.endswith("site-packages")]])
    return env


def exit_with_parent(parent_pid: int) -> None:
    """Have the kernel send SIGTERM to this process (and to the server it becomes: the setting
    survives ``exec``) when its parent dies, so a camera killed with SIGKILL leaves no server behind."""
    import ctypes
    import signal

    pr_set_pdeathsig = 1
    try:
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the camera's own shutdown is the only guard
        return
    if os.getppid() != parent_pid:  # the parent died before the setting took effect
        raise SystemExit(0)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def command(dist: Path, repository: Path, backends: Path, host: str, grpc_port: int, metrics_port: int | None,
            verbose: int = 0) -> list[str]:
    cmd = [str(dist / "bin" / "tritonserver"), f"--model-repository={repository}", f"--backend-directory={backends}",
           f"--grpc-address={host}", f"--grpc-port={grpc_port}", "--allow-http=false",
           "--strict-readiness=true", "--exit-on-error=true", f"--log-verbose={verbose}",
           f"--cache-directory={dist / 'caches'}"]
    if metrics_port:
        cmd += ["--allow-metrics=true", f"--metrics-address={host}", f"--metrics-port={metrics_port}"]
    else:
        cmd += ["--allow-metrics=false"]
    return cmd


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hode.cluster.triton.serve", description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default loopback)")
    p.add_argument("--grpc-port", type=int, default=8001, help="KServe v2 gRPC port; 0: a free one (printed)")
    p.add_argument("--metrics-port", type=int, default=0, help="Prometheus metrics port; 0: metrics off")
    p.add_argument("--workdir", type=Path, default=None, help="where the repository goes; default: a temp folder")
    p.add_argument("--verbose", type=int, default=0, help="tritonserver --log-verbose level")
    p.add_argument("--parent-pid", type=int, default=0,
                   help="exit when this process (the camera that started the server) is gone, even by SIGKILL")
    repo.add_arguments(p)
    args = p.parse_args(argv)
    dist = server_dir()
    work = (args.workdir or Path(tempfile.mkdtemp(prefix="hode-triton-"))).resolve()  # absolute: the cwd changes below
    repository = work / "models"
    repo.write_repository(repository, args)
    backends = backends_dir(dist, work)
    port = args.grpc_port or free_port(args.host)
    cmd = command(dist, repository, backends, args.host, port, args.metrics_port, args.verbose)
    print(f"tritonserver: grpc {args.host}:{port}, models in {repository}", flush=True)
    if args.parent_pid:
        exit_with_parent(args.parent_pid)
    # The stub finds `import hode` through its working directory (the PYTHONPATH given it is not enough for an
    # installed wheel, e.g. on a host of `python -m remote deploy`): run from the folder holding this `hode`.
    os.chdir(Path(__file__).resolve().parents[3])
    os.execve(cmd[0], cmd, stub_env(dist, args.torch_threads))  # this process becomes the server: signals reach it directly
    return 0  # not reached


if __name__ == "__main__":
    raise SystemExit(cli_errors(main))
