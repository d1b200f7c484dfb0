"""A folder of immutable shard files that processes on many machines add to without any lock.

Why no lock: sweep jobs may run on different machines over a shared filesystem (Ray, SLURM), where
``fcntl`` locks are unreliable or unsupported (many NFS setups). Instead:

- every save **publishes a new shard** under a name no other writer can pick (time, host, pid and
  random bits): written to a hidden temporary name, flushed, then renamed into place, so a reader
  sees a whole shard or none, and two writers never touch the same file;
- readers **merge every shard** they list;
- **compaction** folds many shards into one new shard, published the same way, and only then deletes
  the shards it read. An entry is never deleted before a shard holding it is in place, so two
  compactions at once, or a compaction beside writers, lose nothing (at worst they leave a duplicate,
  merged again later). A reader that finds a listed shard gone (compacted meanwhile) lists again.
"""
from __future__ import annotations

import logging
import os
import re
import secrets
import socket
import time
from pathlib import Path
from typing import BinaryIO, Callable

log = logging.getLogger(__name__)

SUFFIX = ".npz"
STALE_TMP_S = 6 * 3600  # a temporary file this old belongs to a writer that died


def unique_name() -> str:
    """A shard name no other process on any machine picks: time first, so names sort by age."""
    host = re.sub(r"[^A-Za-z0-9.-]", "_", socket.gethostname())[:40] or "host"
    return f"{time.time_ns():016x}-{host}-{os.getpid()}-{secrets.token_hex(4)}{SUFFIX}"


def publish(folder: Path, write: Callable[[BinaryIO], None]) -> Path:
    """Write a new shard into ``folder`` with ``write(file)`` and rename it into place; its path."""
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / unique_name()
    tmp = folder / f".{final.name}.tmp"  # hidden and not *.npz: never listed as a shard
    try:
        with open(tmp, "xb") as f:  # O_EXCL: a name clash fails loudly instead of sharing a file
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)  # atomic within one folder, NFS included
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return final


def list_shards(folder: Path) -> list[Path]:
    """The published shards of ``folder``, oldest first (empty when the folder is not there)."""
    try:
        return sorted(p for p in folder.iterdir() if p.name.endswith(SUFFIX) and not p.name.startswith("."))
    except FileNotFoundError:
        return []


def remove(paths: list[Path]) -> None:
    """Delete shards whose entries another published shard holds (already gone: fine)."""
    for p in paths:
        try:
            p.unlink()
        except FileNotFoundError:
            pass


def remove_stale_tmp(folder: Path, max_age_s: float = STALE_TMP_S) -> None:
    """Delete temporary files left by writers that died mid-write (old enough to be no one's)."""
    now = time.time()
    for p in folder.glob(".*.tmp"):
        try:
            if now - p.stat().st_mtime > max_age_s:
                p.unlink()
        except FileNotFoundError:
            pass
