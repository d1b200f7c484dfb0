"""The ``tritonserver`` binary this machine runs for :mod:`.serve`: taken from the
``nvidia-pytriton`` wheel on the package index, which bundles a real Triton Inference Server (its
Python backend, one backend stub per Python version, and the shared libraries they need).

The wheel is only a carrier, as for :mod:`hode.assets`: fetched once with ``pip download --no-deps``,
checked against the SHA-256 below and unpacked under ``$HODE_CACHE/tritonserver/``; it is never
installed (PyTriton's own Python code pins ``numpy<2``, which this project cannot take).
``HODE_TRITONSERVER=<folder with bin/tritonserver and backends/>`` uses another distribution
(a Triton release unpacked by hand) instead.
"""
from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from hode.assets import AssetError, cache_root, sha256_of
from hode.errors import ConfigError

PACKAGE, VERSION = "nvidia-pytriton", "0.7.0"  # bundles Triton Inference Server 2.51.0
WHEEL = "nvidia_pytriton-0.7.0-py3-none-manylinux_2_35_x86_64.whl"
WHEEL_SHA256 = "21f063ff93bb426d0c06b7a55e7eb9efcfe62c0dddd9a908e9877e18710128df"
MEMBERS = ("pytriton/tritonserver/", "nvidia_pytriton.libs/")


def server_dir() -> Path:
    """A folder with ``bin/tritonserver``, ``backends/`` and ``python_backend_stubs/`` (and, for
    the carrier, ``../../nvidia_pytriton.libs``); fetched on first use."""
    own = os.environ.get("HODE_TRITONSERVER")
    if own:
        d = Path(own)
        if not (d / "bin" / "tritonserver").is_file():
            raise ConfigError(f"HODE_TRITONSERVER={own}: no bin/tritonserver there")
        return d
    if sys.platform != "linux" or os.uname().machine != "x86_64":
        raise ConfigError("the bundled Triton server is for Linux x86-64; elsewhere set HODE_TRITONSERVER or "
                          "run a stock Triton (docs/triton.md)")
    root = cache_root() / "tritonserver" / WHEEL_SHA256[:16]
    done = root / "pytriton" / "tritonserver"
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one process unpacks, the others wait
        if not (root / ".complete").is_file():
            _fetch(root)
    return done


def libs_dir(server: Path) -> Path:
    """The carrier's bundled shared libraries (empty path for a distribution of one's own)."""
    return server.parent.parent / "nvidia_pytriton.libs"


def _fetch(root: Path) -> None:
    print(f"fetching the Triton server from the package index ({PACKAGE}=={VERSION}, once; cached in {root})",
          file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--disable-pip-version-check",
               "--only-binary", ":all:", "--platform", "manylinux_2_35_x86_64", "--dest", tmp, f"{PACKAGE}=={VERSION}"]
        try:
            got = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise AssetError(f"cannot fetch the Triton server: pip download failed ({type(e).__name__})") from None
        wheel = Path(tmp) / WHEEL
        if got.returncode != 0 or not wheel.is_file():
            last = (got.stderr.strip().splitlines() or ["no output"])[-1][:200]
            raise AssetError(f"cannot fetch the Triton server ({PACKAGE}=={VERSION}) from the package index: {last}")
        digest = sha256_of(wheel)
        if digest != WHEEL_SHA256:
            raise AssetError(f"{WHEEL} has SHA-256 {digest}, expected {WHEEL_SHA256}: refusing it")
        with zipfile.ZipFile(wheel) as z:
            for info in z.infolist():
                if info.filename.startswith(MEMBERS) and not info.is_dir():
                    out = root / info.filename
                    out.parent.mkdir(parents=True, exist_ok=True)
                    with z.open(info) as src, open(out, "wb") as dst:
                        shutil.copyfileobj(src, dst)
                    if (info.external_attr >> 16) & 0o111 or out.parent.name in ("bin",) or \
                            out.name == "triton_python_backend_stub":
                        out.chmod(0o755)
    (root / ".complete").write_text(WHEEL_SHA256 + "\n")
