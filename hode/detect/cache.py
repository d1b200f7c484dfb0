"""Detection cache: real detector outputs stored on disk, replayed by the simulator.

One entry per (frame index, item window); one folder of compressed ``.npz`` shards per (dataset
identity, model, weights file hash, detector settings), so a retrained checkpoint or a changed
threshold never replays stale boxes: it simply names another folder. Misses are computed with the
real detector (:func:`hode.detect.factory.make_detector`) on the item's crop; a save publishes them
as a new shard, so jobs on several machines can share the folder over a shared filesystem without
locks (:mod:`hode.detect.shards`).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any, BinaryIO, Sequence

import numpy as np

from hode.detect import shards
from hode.detect.factory import detector_config, make_detector
from hode.errors import WeightsError
from hode.hashing import file_sha256
from hode.types import Detections

log = logging.getLogger(__name__)

Window = tuple[int, int, int, int]
# Detector settings that change its output (device and half do not, up to float noise).
SETTING_KEYS = ("_target_", "imgsz", "conf", "iou", "max_det", "native_scale")
# Dataset keys that only choose how many frames are read, not what frame k looks like.
COUNT_KEYS = ("frames", "max_frames", "limit")
MAX_SHARDS = 16  # a save that finds more shards than this compacts them into one


def _short_hash(obj: Any, n: int = 10) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:n]


def weights_hash(path: str | Path) -> str:
    """sha256 of a weights file's bytes (memoised on path, size and mtime)."""
    try:
        return file_sha256(path)
    except OSError:
        raise WeightsError(f"detector.weights: no such file: {path}") from None


def dataset_identity(dataset: dict | str | None) -> str:
    """A short stable name for what a dataset config renders: its ``_target_`` and every setting
    except the frame count (frame ``k`` of a source does not depend on how many are read)."""
    if dataset is None:
        return "unknown"
    if isinstance(dataset, str):
        return dataset
    d = {k: v for k, v in dict(dataset).items() if k not in COUNT_KEYS}
    kind = str(d.get("_target_", "dataset")).rsplit(".", 1)[-1].lower()
    return f"{kind}-{_short_hash(d)}"


class DetectionStore:
    """The entries of one (dataset, model, weights, settings) key: a folder of shards
    (:mod:`hode.detect.shards`), in memory; :meth:`save` publishes what this process added."""

    def __init__(self, path: Path, meta: dict, max_shards: int = MAX_SHARDS) -> None:
        self.path, self.meta, self.max_shards = path, meta, max_shards
        self.legacy = path.with_name(path.name + ".npz")  # the one-file layout before shards: read, folded in
        self.entries: dict[tuple[int, Window], Detections] = {}
        self._new: dict[tuple[int, Window], Detections] = {}  # put since the last save
        self._seen: set[Path] = set()
        self.refresh()

    def _listing(self) -> list[Path]:
        return ([self.legacy] if self.legacy.is_file() else []) + shards.list_shards(self.path)

    def refresh(self) -> None:
        """Read the shards not read yet (other writers' since the last look)."""
        for _ in range(5):
            vanished = False
            for p in self._listing():
                if p in self._seen:
                    continue
                try:
                    got = _read(p)
                except FileNotFoundError:  # compacted meanwhile: its entries are in a newer shard
                    vanished = True
                    continue
                self._seen.add(p)
                for k, d in got.items():  # what this process holds stays (same key, same detector: same boxes)
                    self.entries.setdefault(k, d)
            if not vanished:
                return

    def get(self, frame: int, window: Window) -> Detections | None:
        return self.entries.get((frame, window))

    def put(self, frame: int, window: Window, det: Detections) -> None:
        d = Detections(det.boxes, det.scores)
        self.entries[(frame, window)] = self._new[(frame, window)] = d

    def save(self) -> None:
        """Publish this process's new entries as one new shard, read other writers' new shards, and
        compact the folder when it holds more than ``max_shards``. No lock (see :mod:`hode.detect.shards`)."""
        if not self._new:
            return
        self._seen.add(shards.publish(self.path, lambda f: _write(f, self._new, self.meta)))
        self._new = {}
        self.refresh()
        if len(self._listing()) > self.max_shards:
            self.compact()

    def compact(self) -> None:
        """Fold every shard into one new shard, then delete the shards read (unreadable ones too)."""
        merged: dict[tuple[int, Window], Detections] = {}
        done: list[Path] = []
        for p in self._listing():
            try:
                got = _read(p)
            except FileNotFoundError:  # another compaction took it: its entries are in that one's shard
                continue
            for k, d in got.items():
                merged.setdefault(k, d)
            done.append(p)
        self._seen.add(shards.publish(self.path, lambda f: _write(f, merged, self.meta)))
        shards.remove(done)
        shards.remove_stale_tmp(self.path)
        for k, d in merged.items():
            self.entries.setdefault(k, d)


def _read(path: Path) -> dict[tuple[int, Window], Detections]:
    """The entries of one shard; an unreadable one is logged and yields none (a cache is rebuildable).
    A shard gone meanwhile raises FileNotFoundError (the caller lists again)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            frames, windows, offsets = z["frames"], z["windows"], z["offsets"]
            boxes, scores = z["boxes"], z["scores"]
    except FileNotFoundError:
        raise
    except Exception as e:
        log.warning("detection cache %s is unreadable (%s); recomputing it", path, type(e).__name__)
        return {}
    out = {}
    for k in range(len(frames)):
        a, b = offsets[k], offsets[k + 1]
        out[(int(frames[k]), tuple(int(x) for x in windows[k]))] = Detections(boxes[a:b], scores[a:b])
    return out


def _write(f: BinaryIO, entries: dict[tuple[int, Window], Detections], meta: dict) -> None:
    keys = sorted(entries)
    dets = [entries[k] for k in keys]
    offsets = np.zeros(len(keys) + 1, np.int64)
    offsets[1:] = np.cumsum([len(d) for d in dets])
    np.savez_compressed(
        f, frames=np.array([k[0] for k in keys], np.int64).reshape(-1),
        windows=np.array([k[1] for k in keys], np.int32).reshape(-1, 4), offsets=offsets,
        boxes=np.concatenate([d.boxes for d in dets]) if dets else np.zeros((0, 4), np.float32),
        scores=np.concatenate([d.scores for d in dets]) if dets else np.zeros((0,), np.float32),
        meta=np.array(json.dumps(meta)))


class DetectionCache:
    """Cached detections of every model a run uses, for one dataset."""

    def __init__(self, root: str | Path, dataset: dict | str | None, detector: Any = None) -> None:
        self.root, self.dataset_id = Path(root), dataset_identity(dataset)
        self._detector_cfg = detector
        self._stores: dict[str, DetectionStore] = {}
        self._detectors: dict[str, Any] = {}
        self.hits = self.misses = 0

    def store(self, model: str) -> DetectionStore:
        """The store of ``model``, keyed by its weights' hash and output-changing settings."""
        if model not in self._stores:
            cfg = detector_config(model, self._detector_cfg)
            whash = weights_hash(cfg["weights"])
            settings = {k: cfg.get(k) for k in SETTING_KEYS}
            if cfg.get("canvas") is not None:  # only when set: caches made before the option keep their names
                settings["canvas"] = list(cfg.get("canvas"))
            name = f"{self.dataset_id}__{model}__{whash[:12]}__{_short_hash(settings, 8)}"
            meta = {"dataset": self.dataset_id, "model": model, "weights": str(cfg["weights"]),
                    "weights_sha256": whash, "settings": settings}
            self._stores[model] = DetectionStore(self.root / name, meta)
        return self._stores[model]

    def detections(self, model: str, keys: Sequence[tuple[int, Window]],
                   crops: Sequence[np.ndarray | None] | None = None) -> list[Detections]:
        """Detections of ``model`` for each ``(frame, window)``; misses run the real detector on the
        matching crop (``crops[i]`` for ``keys[i]``; only misses need pixels)."""
        st = self.store(model)
        out = [st.entries.get(k) for k in keys]
        miss = [i for i, d in enumerate(out) if d is None]
        self.hits += len(out) - len(miss)
        if miss:
            self.misses += len(miss)
            if crops is None or any(crops[i] is None for i in miss):
                from hode.errors import DataError

                raise DataError(f"detection cache {st.path.name} lacks {len(miss)} item(s) "
                                f"(first: frame {keys[miss[0]][0]}, window {keys[miss[0]][1]}) and no pixels were given")
            # One crop per call: batched convolutions round differently from single ones, which
            # flips marginal boxes; batch-1 results are what a live worker computes for one tile.
            det = self._detector(model)
            dets = [det.predict([crops[i]])[0] for i in miss]
            for i, d in zip(miss, dets):
                st.put(keys[i][0], keys[i][1], d)
                out[i] = st.entries[keys[i]]
        return out

    def stores(self) -> list[DetectionStore]:
        return list(self._stores.values())

    def _detector(self, model: str):
        if model not in self._detectors:
            self._detectors[model] = make_detector(model, self._detector_cfg)
        return self._detectors[model]

    def save(self) -> None:
        for st in self._stores.values():
            st.save()
