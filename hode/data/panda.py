"""``dataset=panda``: PANDA image or video annotations (``../shared/reference/panda-format.md``).

Coordinates in PANDA are fractions of the image size, clipped here to [0, 1] and multiplied by the
size of the yielded frame, so one annotation serves the gigapixel original and any resize of it
(3840x2160 by default, as the HODE paper did). Non-person categories (crowd, fake person, ignore,
...) become ignore regions, scored like COCO crowds: neither hit nor miss.

Bad annotation files raise :class:`DataError` naming the file, the entry and the key. Degenerate
boxes (zero area after clipping, or corners swapped) and image files that are missing or
unreadable are skipped and recorded in :attr:`PandaSource.skipped` (``results.json`` reports them).
"""
from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from hode.data import limits
from hode.data.video import check_size, natural_key, read_image, resize, target_size
from hode.errors import DataError, check
from hode.types import Detections, Frame

log = logging.getLogger(__name__)

RECTS = ("full body", "visible body", "head")
DEFAULTS = {"image": ("image_annos/person_bbox_train.json", "image_train"),
            "video": ("video_annos", "video_train")}


@dataclass
class _Entry:
    """One frame to yield: its image file, native size, and normalized ground truth."""

    name: str
    path: Path
    native: tuple[int, int]  # W, H from the annotation
    boxes: np.ndarray  # (N, 4) in [0, 1]
    ids: np.ndarray
    ignore: np.ndarray


def load_json(path: Path) -> Any:
    if not path.is_file():
        raise DataError(f"PANDA annotation file not found: {path}")
    try:
        with path.open() as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a text (JSON) file") from None


def _get(obj: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    """``obj[key]`` checked for presence and type, or one clear DataError line."""
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected an object, got {type(obj).__name__}")
    if key not in obj:
        raise DataError(f"{where}: missing key '{key}'")
    value = obj[key]
    bad_bool = isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,))
    if not isinstance(value, kind) or bad_bool:
        want = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise DataError(f"{where}: '{key}' must be {want}, got {type(value).__name__} {str(value)[:40]}")
    return value


def norm_rect(rect: Any, where: str) -> np.ndarray:
    """``{"tl": {"x", "y"}, "br": {"x", "y"}}`` -> ``[x1, y1, x2, y2]`` clipped to [0, 1]."""
    num = (int, float)
    tl, br = _get(rect, "tl", dict, where), _get(rect, "br", dict, where)
    box = [_get(tl, "x", num, f"{where}.tl"), _get(tl, "y", num, f"{where}.tl"),
           _get(br, "x", num, f"{where}.br"), _get(br, "y", num, f"{where}.br")]
    if not all(math.isfinite(v) for v in box):  # JSON NaN/Infinity: a broken box, not "outside the frame"
        raise DataError(f"{where}: coordinates must be finite numbers, got {box}")
    return np.clip(np.asarray(box, np.float64), 0.0, 1.0)


def _size(info: dict, wkey: str, hkey: str, where: str) -> tuple[int, int]:
    w, h = _get(info, wkey, int, where), _get(info, hkey, int, where)
    if w <= 0 or h <= 0:
        raise DataError(f"{where}: image size must be positive, got {w}x{h}")
    return w, h


def decoded_pixels(path: Path, native: tuple[int, int], target: tuple[int, int]) -> int:
    """Pixels :func:`read_image` decodes: libjpeg scales a JPEG down by 2, 4 or 8 while decoding;
    other formats are decoded whole."""
    w, h = native
    if path.suffix.lower() not in (".jpg", ".jpeg"):
        return w * h
    factor = min(w / target[0], h / target[1])
    f = next((f for f in (8, 4, 2) if factor >= f), 1)
    return (w // f) * (h // f)


class PandaSource:
    """``dataset=panda``: frames and person ground truth of PANDA images or video sequences."""

    gt_kind = "dataset"

    def __init__(self, root: str | None, kind: str = "image", annos: str | None = None, images: str | None = None,
                 scenes: Sequence[str] | None = None, rect: str = "full body", width: int | None = 3840,
                 height: int | None = 2160, frames: int | None = None,
                 ignore_occlusion: Sequence[str] = ("serious_hide",),
                 drop_occlusion: Sequence[str] = ("disappear",)) -> None:
        check(root not in (None, ""), "dataset.root is required: the folder holding your PANDA copy")
        check(kind in DEFAULTS, f"dataset.kind must be one of {list(DEFAULTS)}, got {kind!r}")
        check(rect in RECTS, f"dataset.rect must be one of {list(RECTS)}, got {rect!r}")
        check(frames is None or (isinstance(frames, int) and frames > 0), f"dataset.frames must be null or a positive integer, got {frames!r}")
        check_size(width, height)
        self.root = Path(str(root)).expanduser()
        if not self.root.is_dir():
            raise DataError(f"dataset.root: PANDA folder not found: {self.root}")
        self.kind, self.rect, self.width, self.height, self.frames = kind, rect, width, height, frames
        self.annos = self.root / (annos or DEFAULTS[kind][0])
        self.images = self.root / (images or DEFAULTS[kind][1])
        self.scenes = list(scenes) if scenes else None
        self.ignore_occlusion, self.drop_occlusion = set(ignore_occlusion), set(drop_occlusion)
        self.skipped: dict[str, str] = {}
        self._degenerate = 0
        entries = self._image_entries() if kind == "image" else self._video_entries()
        self.entries = entries[:frames] if frames else entries
        if not self.entries:
            raise DataError(f"{self.annos}: no annotated frames" + (f" in scenes {self.scenes}" if self.scenes else ""))
        if self._degenerate:
            self._skip("annotations", f"{self._degenerate} degenerate boxes dropped (zero area after clipping "
                                      "to [0,1], or corners swapped)")
        for native in {e.native for e in self.entries}:
            limits.check_pixels(target_size(native, width, height), "dataset.width x dataset.height (the frames yielded)")
        if not any(e.path.is_file() for e in self.entries[:50]):
            raise DataError(f"dataset.root: no image files under {self.images} (first expected: {self.entries[0].path})")
        self.name = f"panda-{kind}"

    def __len__(self) -> int:
        return len(self.entries)

    # ----- annotations --------------------------------------------------------------------------

    def _pick_scenes(self, available: list[str]) -> set[str]:
        if self.scenes is None:
            return set(available)
        unknown = [s for s in self.scenes if s not in available]
        if unknown:
            raise DataError(f"dataset.scenes: {unknown} not in {self.annos.name} (available: {sorted(available)[:20]})")
        return set(self.scenes)

    def _box(self, rect: Any, where: str) -> np.ndarray | None:
        b = norm_rect(rect, where)
        if b[2] <= b[0] or b[3] <= b[1]:
            self._degenerate += 1
            return None
        return b

    def _image_entries(self) -> list[_Entry]:
        data = load_json(self.annos)
        if not isinstance(data, dict):
            raise DataError(f"{self.annos}: expected an object keyed by image path, got {type(data).__name__}")
        keys = sorted(data, key=natural_key)
        wanted = self._pick_scenes(sorted({Path(k).parts[0] for k in keys if Path(k).parts}))
        entries = []
        for key in keys:
            if Path(key).parts[0] not in wanted:
                continue
            where = f"{self.annos.name}['{key}']"
            info = data[key]
            native = _size(_get(info, "image size", dict, where), "width", "height", f"{where}['image size']")
            objects = _get(info, "objects list", list, where)
            limits.check_boxes(len(objects), where)  # 200,000 boxes would keep the mAP step busy for hours
            boxes, ids, ignore = [], [], []
            for i, obj in enumerate(objects):
                at = f"{where}['objects list'][{i}]"
                category = _get(obj, "category", str, at)
                if category == "person":
                    b = self._box(_get(_get(obj, "rects", dict, at), self.rect, dict, f"{at}['rects']"),
                                  f"{at}['rects']['{self.rect}']")
                    person = True
                else:  # crowd, fake person, ignore, ...: a region to ignore
                    b, person = self._box(_get(obj, "rect", dict, at), f"{at}['rect']"), False
                if b is not None:
                    boxes.append(b)
                    ids.append(i if person else -1)
                    ignore.append(not person)
            entries.append(_Entry(key, self.images / key, native, np.asarray(boxes, np.float64).reshape(-1, 4),
                                  np.asarray(ids, np.int64), np.asarray(ignore, bool)))
        return entries

    def _video_entries(self) -> list[_Entry]:
        if not self.annos.is_dir():
            raise DataError(f"PANDA video annotation folder not found: {self.annos}")
        seqs = sorted((p.name for p in self.annos.iterdir() if (p / "seqinfo.json").is_file()), key=natural_key)
        entries = []
        for seq in sorted(self._pick_scenes(seqs), key=natural_key):
            entries += self._sequence(seq)
        return entries

    def _sequence(self, seq: str) -> list[_Entry]:
        folder = self.annos / seq
        where = f"{seq}/seqinfo.json"
        info = load_json(folder / "seqinfo.json")
        native = _size(info, "imWidth", "imHeight", where)
        urls = _get(info, "imUrls", list, where)
        length = _get(info, "seqLength", int, where)
        if length != len(urls) or not all(isinstance(u, str) for u in urls):
            raise DataError(f"{where}: 'imUrls' must be {length} file names ('seqLength'), got {len(urls)} entries")
        per_frame: list[list[tuple[np.ndarray, int, bool]]] = [[] for _ in urls]
        tracks = load_json(folder / "tracks.json")
        if not isinstance(tracks, list):
            raise DataError(f"{seq}/tracks.json: expected a list of tracks, got {type(tracks).__name__}")
        for t, track in enumerate(tracks):
            at = f"{seq}/tracks.json[{t}]"
            tid = _get(track, "track id", int, at)
            for j, fr in enumerate(_get(track, "frames", list, at)):
                fat = f"{at}['frames'][{j}]"
                fid = _get(fr, "frame id", int, fat)
                if not 1 <= fid <= length:  # frame ids count from 1: imUrls[frame id - 1]
                    raise DataError(f"{fat}: 'frame id' {fid} outside 1..{length} (seqLength)")
                occlusion = fr.get("occlusion", "normal")
                if occlusion in self.drop_occlusion:
                    continue
                b = self._box(_get(fr, "rect", dict, fat), f"{fat}['rect']")
                if b is not None:
                    per_frame[fid - 1].append((b, tid, occlusion in self.ignore_occlusion))
        entries = []
        for k, objs in enumerate(per_frame):
            limits.check_boxes(len(objs), f"{seq}/tracks.json, frame id {k + 1}")
        for url, objs in zip(urls, per_frame):
            boxes = np.asarray([o[0] for o in objs], np.float64).reshape(-1, 4)
            entries.append(_Entry(f"{seq}/{url}", self.images / seq / url, native, boxes,
                                  np.asarray([o[1] for o in objs], np.int64), np.asarray([o[2] for o in objs], bool)))
        return entries

    def _skip(self, name: str, why: str) -> None:
        if name not in self.skipped:
            log.warning("skipped %s: %s", name, why)
        self.skipped[name] = why

    # ----- frames --------------------------------------------------------------------------------

    def ground_truth(self, entry: _Entry, size: tuple[int, int]) -> Detections:
        """The entry's boxes in pixels of a ``size = (W, H)`` frame."""
        W, H = size
        boxes = (entry.boxes * np.array([W, H, W, H])).astype(np.float32)
        return Detections(boxes, np.ones(len(boxes), np.float32), ids=entry.ids.copy(), ignore=entry.ignore.copy())

    def __iter__(self) -> Iterator[Frame]:
        for k, e in enumerate(self.entries):
            size = target_size(e.native, self.width, self.height)
            header = limits.image_size(e.path) if e.path.is_file() else None
            if header is not None and decoded_pixels(e.path, header, size) > limits.get("max_pixels"):
                self._skip(e.name, f"{header[0]}x{header[1]} = {limits.mp(header[0] * header[1])} to decode, above "
                                   f"limits.max_pixels ({limits.mp(limits.get('max_pixels'))})")
                continue
            image, why = read_image(e.path, e.native, size)
            if image is None:
                self._skip(e.name, why)
                continue
            if (self.width is None and self.height is None) and (image.shape[1], image.shape[0]) != e.native:
                raise DataError(f"{e.path}: image is {image.shape[1]}x{image.shape[0]} but its annotation says "
                                f"{e.native[0]}x{e.native[1]}")
            yield Frame(k, resize(image, size), self.ground_truth(e, size))
