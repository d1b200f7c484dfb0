"""Real pedestrian tracks for the filter: the MOT-format ground truth bundled with ``motmetrics``.

``motmetrics`` ships ``data/TUD-Campus/gt.txt`` and ``data/TUD-Stadtmitte/gt.txt`` (no images).
Lines are ``frame, id, x, y, w, h, flag, ...`` with 1-based frames; a ``flag`` of 0 marks a box
the benchmark does not score. Both videos are 640x480 (the gt files carry no frame size).
A small reader of its own, so the filter does not depend on the ``dataset=mot`` frame source.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from hode.errors import DataError
from hode.filter.tracks import TrackSequence

# Frame sizes of the bundled sequences (from the TUD / MOTChallenge sequence info).
TUD_SIZES = {"TUD-Campus": (640, 480), "TUD-Stadtmitte": (640, 480)}


def motmetrics_data() -> Path:
    import motmetrics

    return Path(motmetrics.__file__).resolve().parent / "data"


def read_mot_gt(path: str | Path, width: int, height: int, name: str | None = None) -> TrackSequence:
    """One MOT ``gt.txt`` as boxes per frame, frames 1..last (frames without boxes are empty)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"MOT ground truth {path} does not exist")
    try:
        rows = np.loadtxt(path, delimiter=",", ndmin=2, dtype=np.float64)
    except ValueError as e:
        raise DataError(f"{path} is not MOT gt.txt (frame,id,x,y,w,h,...): {str(e).splitlines()[0][:120]}") from None
    if rows.shape[1] < 6 or not len(rows):
        raise DataError(f"{path} is not MOT gt.txt: need at least 6 comma-separated columns per line")
    if rows.shape[1] >= 7:
        rows = rows[rows[:, 6] != 0]
    frames = rows[:, 0].astype(int)
    if frames.min() < 1:
        raise DataError(f"{path}: MOT frame numbers start at 1, found {frames.min()}")
    boxes = [np.zeros((0, 4), np.float32) for _ in range(frames.max())]
    for f in np.unique(frames):
        r = rows[frames == f]
        boxes[f - 1] = np.stack([r[:, 2], r[:, 3], r[:, 2] + r[:, 4], r[:, 3] + r[:, 5]], 1).astype(np.float32)
    return TrackSequence(name or path.parent.name, width, height, boxes)


def tud_tracks(names=("TUD-Campus", "TUD-Stadtmitte")) -> list[TrackSequence]:
    """The bundled TUD sequences by name."""
    out = []
    for n in names:
        if n not in TUD_SIZES:
            raise DataError(f"unknown motmetrics sequence '{n}' (available: {', '.join(TUD_SIZES)})")
        w, h = TUD_SIZES[n]
        out.append(read_mot_gt(motmetrics_data() / n / "gt.txt", w, h, n))
    return out
