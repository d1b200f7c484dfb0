"""Content hashes of files, memoised on (path, size, mtime) so big weights are read once."""
from __future__ import annotations

import hashlib
from pathlib import Path

_memo: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | Path) -> str:
    """sha256 hex digest of a file's bytes (raises OSError when it cannot be read)."""
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _memo:
        h = hashlib.sha256()
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _memo[key] = h.hexdigest()
    return _memo[key]
