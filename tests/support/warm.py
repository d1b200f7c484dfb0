"""``python run.py`` as a real process that starts without re-importing torch: a fork server.

Most of a short ``run.py`` subprocess is importing torch, ultralytics, OpenCV and Hydra (seconds
each time on a 2-core machine). One server process per test session imports them once; each run
is a fresh ``fork()`` of it that executes ``run.py`` as ``__main__`` with its own argv, cwd,
environment and stdio files, and exits with run.py's exit status (atexit handlers and
non-daemon threads are run as at a normal interpreter exit). So a test still sees a separate
process: its exit code, stdout and stderr, signals, the worker processes it starts. Only the
third-party packages are preloaded (nothing of hode), so every run imports the project afresh.

``HODE_TEST_COLD_RUN=1`` turns this off (every run a cold ``python run.py``).
"""
from __future__ import annotations

import atexit
import json
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from hode.config import ROOT

PRELOAD = "numpy, cv2, torch, torchvision, ultralytics, hydra, omegaconf"

# The server: read one JSON request per line, fork a child that runs run.py, answer its pid, then its status.
SERVER = r"""
import atexit, json, os, runpy, sys, threading, traceback
import PRELOAD
from ultralytics import YOLO
import hydra.main

def child(req):
    code = 1
    try:
        os.chdir(req["cwd"])
        os.environ.clear()
        os.environ.update(req["env"])
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(os.open(req["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), 1)
        os.dup2(os.open(req["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), 2)
        sys.argv = ["run.py", *req["argv"]]
        sys.path[0] = req["root"]
        try:
            runpy.run_path(os.path.join(req["root"], "run.py"), run_name="__main__")
            code = 0
        except SystemExit as e:
            if e.code is None or isinstance(e.code, int):
                code = e.code or 0
            else:
                print(e.code, file=sys.stderr)
        except BaseException:
            traceback.print_exc()
        threading._shutdown()  # what the interpreter does at exit: join non-daemon threads, then atexit
        atexit._run_exitfuncs()
    except BaseException:
        traceback.print_exc()
    finally:
        for s in (sys.stdout, sys.stderr):
            try:
                s.flush()
            except Exception:
                pass
        os._exit(code)

print(json.dumps(dict(os.environ)), flush=True)  # the imports set OMP_NUM_THREADS & co.
for line in sys.stdin:
    req = json.loads(line)
    sys.stdout.flush()
    pid = os.fork()
    if pid == 0:
        child(req)
    print(json.dumps({"pid": pid}), flush=True)
    _, status = os.waitpid(pid, 0)
    print(json.dumps({"rc": os.waitstatus_to_exitcode(status)}), flush=True)
""".replace("PRELOAD", PRELOAD)

_server: subprocess.Popen | None = None
_log = None


# Read by the preloaded packages when they are imported: a run that changes one of these starts cold.
IMPORT_TIME_ENV = ("OMP_", "MKL_", "OPENBLAS_", "KMP_", "CUDA_", "TORCH", "PYTORCH", "YOLO_", "ULTRALYTICS", "HYDRA_",
                   "PYTHON", "LD_", "OPENCV", "NUMPY")
_server_env: tuple[dict[str, str], dict[str, str]] = ({}, {})  # the server's at its start, after its imports


def enabled(env: dict[str, str]) -> bool:
    """Whether a run with environment ``env`` can be a fork of the server: only when the packages
    it preloaded were imported with the same import-time variables (or ones they set themselves)."""
    if os.environ.get("HODE_TEST_COLD_RUN", "") not in ("", "0"):
        return False
    _get_server()
    spawn, loaded = _server_env
    changed = {k for k in set(env) | set(spawn) if env.get(k) != spawn.get(k) and env.get(k) != loaded.get(k)}
    return not any(k.upper().startswith(IMPORT_TIME_ENV) for k in changed)


def _get_server() -> subprocess.Popen:
    global _server, _server_env, _log
    if _server is None or _server.poll() is not None:
        _log = tempfile.TemporaryFile()  # the server's stderr: unnamed, gone with this process
        spawn = dict(os.environ)
        _server = subprocess.Popen([sys.executable, "-c", SERVER], cwd=ROOT, stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=_log, text=True, bufsize=1)
        _server_env = spawn, _read_reply(_server, 600, _server.kill)  # ultralytics & co. set variables on import
        atexit.register(_stop, _server)
    return _server


def _stop(server: subprocess.Popen) -> None:
    """End of the session: the server exits when its stdin closes."""
    try:
        server.stdin.close()
        server.wait(10)
    except (OSError, subprocess.TimeoutExpired):
        server.kill()


def _read_reply(server: subprocess.Popen, timeout: float | None, on_timeout) -> dict:
    """One reply line of the server, waiting at most ``timeout`` s (then ``on_timeout()`` and again)."""
    got: list[str] = []
    reader = threading.Thread(target=lambda: got.append(server.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    if reader.is_alive():
        on_timeout()
        reader.join(30)
    if not got or not got[0]:
        _log.seek(0)
        raise RuntimeError(f"the warm run.py server died (exit {server.poll()}): {_log.read()[-2000:].decode(errors='replace')}")
    return json.loads(got[0])


def run(argv: list[str], env: dict[str, str], timeout: float, text: bool = True) -> subprocess.CompletedProcess:
    """``python run.py <argv>`` in cwd ROOT with exactly ``env``: a fork of the warm server."""
    server = _get_server()
    with tempfile.TemporaryDirectory(prefix="hode-warm-") as tmp:
        out, err = Path(tmp) / "stdout", Path(tmp) / "stderr"
        server.stdin.write(json.dumps({"argv": argv, "env": env, "cwd": str(ROOT), "root": str(ROOT),
                                       "stdout": str(out), "stderr": str(err)}) + "\n")
        server.stdin.flush()
        pid = _read_reply(server, 120, lambda: None)["pid"]
        timed_out = []

        def kill() -> None:
            timed_out.append(True)
            os.kill(pid, 9)

        rc = _read_reply(server, timeout, kill)["rc"]
        stdout, stderr = out.read_bytes(), err.read_bytes()
    if text:
        stdout, stderr = stdout.decode(), stderr.decode()
    cmd = [sys.executable, "run.py", *argv]
    if timed_out:
        raise subprocess.TimeoutExpired(cmd, timeout, stdout, stderr)
    return subprocess.CompletedProcess(cmd, rc, stdout, stderr)
