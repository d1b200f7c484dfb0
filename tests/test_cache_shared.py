"""The detection cache shared by concurrent jobs (as on several machines over a shared filesystem):
real processes write the same key and overlapping keys at once, with compactions under way, and
nothing is lost or corrupt; no lock is taken (hode/detect/shards.py)."""
from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np

from hode.config import ROOT
from hode.detect import shards
from hode.detect.cache import DetectionStore
from hode.types import Detections

W = (0, 0, 96, 64)
SHARED_KEY = 999  # written by every writer

# One writer: its keys one at a time, publishing every 2 puts (many small shards; max_shards=3 makes
# every few saves compact, so compactions race each other and the other writers' saves).
WRITER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from hode.detect.cache import DetectionStore
    from hode.types import Detections
    folder, first, count, start_at = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    st = DetectionStore(folder, {"test": True}, max_shards=3)
    while time.time() < start_at:  # every writer starts at the same moment
        time.sleep(0.001)
    for i, f in enumerate([999, *range(first, first + count)]):
        st.put(f, (0, 0, 96, 64), Detections([[f, f + 1, f + 2, f + 3]] * (1 + f % 4), [f / 1000] * (1 + f % 4)))
        if i % 2:
            st.save()
    st.save()
""")


def expected(f: int) -> Detections:
    n = 1 + f % 4  # entries of different lengths: a mixed-up offset shows as wrong boxes
    return Detections([[f, f + 1, f + 2, f + 3]] * n, [f / 1000] * n)


def test_concurrent_writers_lose_nothing_and_corrupt_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "cache" / "key"
    writers, count, stride = 4, 40, 20  # writer w: frames 20w .. 20w+39, half of them shared with w+1
    start_at = time.time() + 1.2  # after every interpreter has started (about 0.5 s each here)
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(folder), str(w * stride), str(count), str(start_at)],
                              cwd=ROOT, stderr=subprocess.PIPE, text=True) for w in range(writers)]
    errs = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * writers, errs
    st = DetectionStore(folder, {"test": True})
    want = {SHARED_KEY, *range(0, (writers - 1) * stride + count)}
    assert {k[0] for k in st.entries} == want and all(k[1] == W for k in st.entries)  # nothing lost
    for (f, _), d in st.entries.items():  # nothing corrupt
        e = expected(f)
        assert np.array_equal(d.boxes, e.boxes) and np.array_equal(d.scores, e.scores), f
    assert not list(folder.glob(".*.tmp"))  # no temporary file left behind
    assert 1 <= len(shards.list_shards(folder)) <= 3 + writers  # compactions kept the folder small


def test_old_single_file_is_read_folded_in_and_bad_shards_skipped(tmp_path: Path, caplog) -> None:
    old = DetectionStore(tmp_path / "k", {})
    old.put(1, W, expected(1))
    old.save()
    (shard,) = shards.list_shards(tmp_path / "k")
    shard.rename(tmp_path / "k.npz")  # the layout before shards: one file per key beside the folder
    (tmp_path / "k" / "0-garbage.npz").write_bytes(b"not an npz")  # a broken shard is skipped, not fatal
    stale = tmp_path / "k" / ".0-dead.npz.tmp"  # a writer that died mid-write
    stale.write_bytes(b"half")
    st = DetectionStore(tmp_path / "k", {}, max_shards=1)
    assert set(st.entries) == {(1, W)} and "unreadable" in caplog.text
    st.put(2, W, expected(2))
    st.save()  # more than one shard: compacted into one, the old file and the broken shard folded away
    assert not (tmp_path / "k.npz").exists() and len(shards.list_shards(tmp_path / "k")) == 1
    shards.remove_stale_tmp(tmp_path / "k", max_age_s=0)
    assert not stale.exists()
    assert set(DetectionStore(tmp_path / "k", {}).entries) == {(1, W), (2, W)}
