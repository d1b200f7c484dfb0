"""What gets shipped to a host: the project wheel (built once per source state) and weights files.

The wheel is built from a copy of the sources with ``pip wheel --no-deps --no-build-isolation``
(nothing is downloaded, nothing is written into the checkout) and cached under
``~/.cache/hode/wheels/<source hash>/``; an unchanged tree is never rebuilt, and the host gets
a file again only when its SHA-256 differs from the one already there.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from hode.config import ROOT
from hode.errors import HodeError
from hode.hashing import file_sha256

CACHE = Path(os.environ.get("HODE_CACHE", Path.home() / ".cache" / "hode"))
PACKAGE = "hode"  # the worker needs the library only; run.py and conf/ stay on the camera side
_BUILD_LOCK = threading.Lock()


@dataclass(frozen=True)
class Artifact:
    local: Path
    sha256: str

    @property
    def name(self) -> str:
        return self.local.name


def _sources(root: Path) -> list[Path]:
    files = [p for p in sorted((root / PACKAGE).rglob("*")) if p.is_file() and "__pycache__" not in p.parts
             and p.suffix not in (".pyc", ".tmp")]
    return files + [root / "pyproject.toml"]


def source_hash(root: Path = ROOT) -> str:
    h = hashlib.sha256()
    for p in _sources(root):
        h.update(str(p.relative_to(root)).encode() + b"\0")
        h.update(p.read_bytes() + b"\0")
    return h.hexdigest()


def project_wheel(root: Path = ROOT) -> Artifact:
    """The wheel of the current sources (built on first use, then taken from the cache)."""
    with _BUILD_LOCK:
        key = source_hash(root)[:20]
        out = CACHE / "wheels" / key
        found = sorted(out.glob(f"{PACKAGE}-*.whl")) if out.is_dir() else []
        if not found:
            out = _build(root, out)
            found = sorted(out.glob(f"{PACKAGE}-*.whl"))
        return Artifact(found[0], file_sha256(found[0]))


def _build(root: Path, out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="hode-wheel-") as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.tmp")
        shutil.copytree(root / PACKAGE, src / PACKAGE, ignore=ignore)
        for name in ("pyproject.toml", "README.md", "LICENSE"):
            if (root / name).is_file():
                shutil.copy2(root / name, src / name)
        dist = Path(tmp) / "dist"
        r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                            "--disable-pip-version-check", "-q", "-w", str(dist), str(src)],
                           capture_output=True, text=True)
        if r.returncode != 0 or not list(dist.glob("*.whl")):
            last = (r.stderr.strip().splitlines() or ["no wheel produced"])[-1]
            raise HodeError(f"building the project wheel failed: {last}")
        staged = Path(tempfile.mkdtemp(prefix=".stage-", dir=out.parent))
        for whl in dist.glob("*.whl"):
            shutil.move(str(whl), staged / whl.name)
        try:
            staged.rename(out)  # atomic: a concurrent build never sees half a cache entry
        except OSError:  # another process built the same sources first
            shutil.rmtree(staged, ignore_errors=True)
    return out


def weights_file(path: str | os.PathLike) -> Artifact:
    p = Path(path)
    if not p.is_file():
        from hode.errors import WeightsError

        raise WeightsError(f"detector weights to deploy not found: {p}")
    return Artifact(p, file_sha256(p))
