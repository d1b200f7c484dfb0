"""The flow filter's training data from the user's own video (``task=train_filter task.source=video``).

Per-frame person boxes come from the dataset's ground truth when it has any (a COCO instances.json
beside the footage), else from golden labels (the golden configuration's output, computed once with a
progress bar and cached under ``.cache/golden``). The video is split in time into train / val / a
held-out *later* stretch for the test (3:1:1, i.e. 60/20/20), and each stretch keeps its own frames
(:class:`FrameRange`), so the motion guard can be evaluated on it from the pixels.
"""
from __future__ import annotations

import logging
from itertools import islice
from pathlib import Path
from typing import Iterator

import numpy as np

from hode.errors import DataError, check
from hode.filter.tracks import TrackSequence, from_source
from hode.types import Frame

log = logging.getLogger(__name__)
RATIOS = (3, 1, 1)  # train : val : test, in time order


class FrameRange:
    """Frames ``[start, stop)`` of a frame source, re-iterable (the pixels of one stretch of a video).
    Its simple attributes identify it for the motion-mask cache (hode/filter/motion.py)."""

    def __init__(self, source, start: int, stop: int) -> None:
        self._source = source
        self.start_frame, self.stop_frame = int(start), int(stop)
        base = getattr(source, "name", type(source).__name__)
        self.name = f"{base}[{start}:{stop}]"
        path = Path(str(getattr(source, "path", "")))
        self.path = str(path.resolve()) if path.exists() else str(path)
        # the footage's identity and the source's frame selection, so an edited file is never a cache hit
        self.stamp = f"{path.stat().st_size}-{path.stat().st_mtime_ns}" if path.is_file() else ""
        for k in ("width", "height", "start", "every", "frames"):
            v = getattr(source, k, None)
            setattr(self, f"source_{k}", v if isinstance(v, (int, str)) else str(v))
        self.source_size = tuple(getattr(source, "size", ()) or ())
        self.gt_kind = getattr(source, "gt_kind", None)  # where the boxes came from: dataset | golden

    def __len__(self) -> int:
        return self.stop_frame - self.start_frame

    def __iter__(self) -> Iterator[Frame]:
        return islice(iter(self._source), self.start_frame, self.stop_frame)


def video_splits(source, trend: int) -> dict[str, list[TrackSequence]]:
    """Train / val / test stretches (3:1:1 in time) of one video's person boxes."""
    labels = getattr(source, "gt_kind", None)
    check(labels is not None, "task.source=video needs person boxes: a COCO instances.json beside the footage "
                              "or golden labels (dataset.golden=true)")
    if labels == "golden" and hasattr(source, "prepare"):
        log.info("person boxes from golden labels (cached under dataset.golden_cache)")
        source.prepare()  # every frame labelled once, with a progress bar; cached on disk
    seq = from_source(source)
    n = len(seq)
    edges = np.round(np.cumsum([0, *RATIOS]) / sum(RATIOS) * n).astype(int)
    need = trend + 6  # a history of `trend` frames, and evaluation's warm-up of 5
    shortest = int(np.diff(edges).min())
    if shortest < need:
        raise DataError(f"video {seq.name}: {n} frames is too short to split 3:1:1 in time (each stretch needs "
                        f">= {need} frames, the shortest has {shortest}): use a longer stretch (dataset.frames, "
                        "dataset.every)")
    out = {}
    for split, a, b in zip(("train", "val", "test"), edges[:-1], edges[1:]):
        part = seq.part(int(a), int(b), f"{a}:{b}")
        part.source = FrameRange(source, int(a), int(b))
        out[split] = [part]
    return out
