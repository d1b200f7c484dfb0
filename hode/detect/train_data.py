"""The user's labelled images for ``task=train_detector``: a COCO instances file with its images, or an
ultralytics YOLO dataset (``data.yaml``).

Each image becomes a :class:`~hode.types.Frame` holding its *person* boxes in pixels (every other class
is dropped; COCO ``iscrowd`` boxes become ignore regions), so all formats go through the same
tile-sized cropping as the harness's own frame sources (hode/detect/yolo_dataset.py). Bad input is one
:class:`DataError` line naming the file; images that are missing or unreadable are skipped with a
warning (all of them missing is an error).
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from hode.errors import DataError, check
from hode.types import Detections, Frame

log = logging.getLogger(__name__)
PERSON = ("person", "pedestrian")


@dataclass
class Entry:
    """One labelled image: person boxes ``(N, 4)`` xyxy, in pixels or (``normalized``) fractions."""

    path: Path
    boxes: np.ndarray
    ignore: np.ndarray
    normalized: bool = False


def split_tail(items: Sequence, val_fraction: float, what: str) -> tuple[list, list]:
    """(train, val): the last ``val_fraction`` of ``items`` (in order: time, for frames of a video) is
    validation, so validation images are not neighbours of most training images."""
    check(0.0 < float(val_fraction) < 1.0, f"task.val_fraction must be in (0, 1), got {val_fraction!r}")
    n = len(items)
    check(n >= 2, f"{what}: {n} labelled image(s); need at least 2 (training and validation)", DataError)
    n_val = min(n - 1, max(1, round(n * float(val_fraction))))
    return list(items[:n - n_val]), list(items[n - n_val:])


def coco_entries(json_path: str, images: str | None = None) -> list[Entry]:
    """Images of a COCO instances file (``file_name`` relative to ``images``, default the file's
    folder), sorted by image id, with their person boxes."""
    from hode.data.coco import load_truth

    path = Path(str(json_path)).expanduser()
    if not path.is_file():
        raise DataError(f"task.coco: no such file: {path}")
    truth = load_truth(path)  # validates categories, boxes and image ids
    doc = json.loads(path.read_text())
    root = Path(str(images)).expanduser() if images else path.parent
    if not root.is_dir():
        raise DataError(f"task.images: no such folder: {root}")
    out = []
    for im in sorted(doc["images"], key=lambda im: int(im["id"])):
        name = im.get("file_name")
        if not isinstance(name, str) or not name:
            raise DataError(f"{path}: image {im.get('id')} has no file_name")
        boxes, ignore = truth[int(im["id"])]
        out.append(Entry(root / name, boxes, ignore))
    return _existing(out, f"{path} (images under {root})")


def _names(doc: dict, path: Path) -> dict[int, str]:
    names = doc.get("names")
    if isinstance(names, list):
        return dict(enumerate(str(n) for n in names))
    if isinstance(names, dict):
        return {int(k): str(v) for k, v in names.items()}
    raise DataError(f"{path}: 'names' must be a list or a mapping of class names")


def _dataset_root(doc: dict, path: Path) -> Path:
    """``path:`` of a data.yaml: absolute; else relative to the yaml's folder, then to the cwd; absent:
    the yaml's folder."""
    root = doc.get("path")
    if not root:
        return path.parent
    root = Path(str(root)).expanduser()
    if root.is_absolute():
        return root
    return next((p for p in (path.parent / root, Path.cwd() / root) if p.is_dir()), path.parent / root)


def _image_files(spec, root: Path, where: str) -> list[Path]:
    """Images of one split entry of a data.yaml: a folder (recursively), a .txt list, or an image."""
    from ultralytics.data.utils import IMG_FORMATS

    out: list[Path] = []
    for s in spec if isinstance(spec, list) else [spec]:
        p = Path(str(s)).expanduser()
        p = p if p.is_absolute() else root / p
        if p.is_dir():
            out += sorted(q for q in p.rglob("*") if q.suffix[1:].lower() in IMG_FORMATS)
        elif p.suffix == ".txt" and p.is_file():
            for line in p.read_text().splitlines():
                line = line.strip()
                if line:
                    q = Path(line)
                    out.append(q if q.is_absolute() else (p.parent / q) if line.startswith("./") else root / q)
        elif p.is_file():
            out.append(p)
        else:
            raise DataError(f"{where}: no such folder or file: {p}")
    return out


def _yolo_labels(label: Path, person: int) -> np.ndarray:
    """Normalized xyxy boxes of the person rows of one YOLO label file (boxes or polygons)."""
    if not label.is_file():
        return np.zeros((0, 4), np.float32)  # an image without a label file has nobody in it
    boxes = []
    for n, line in enumerate(label.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        try:
            row = [float(v) for v in parts]
        except ValueError:
            raise DataError(f"{label}:{n}: not a YOLO label row (class cx cy w h): {line[:60]!r}") from None
        if int(row[0]) != person:
            continue
        if len(row) == 5:
            cx, cy, w, h = row[1:]
            boxes.append((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2))
        elif len(row) >= 7 and len(row) % 2 == 1:  # a segment: class x1 y1 x2 y2 ...
            xs, ys = row[1::2], row[2::2]
            boxes.append((min(xs), min(ys), max(xs), max(ys)))
        else:
            raise DataError(f"{label}:{n}: a YOLO label row has 5 numbers (class cx cy w h), got {len(row)}")
    return np.clip(np.array(boxes, np.float32).reshape(-1, 4), 0.0, 1.0)


def yolo_entries(data_yaml: str) -> dict[str, list[Entry]]:
    """``{"train": [...], "val": [...]}`` of an ultralytics data.yaml (``val`` empty when it has none);
    only the class named person (or pedestrian) is kept."""
    import yaml
    from ultralytics.data.utils import img2label_paths

    path = Path(str(data_yaml)).expanduser()
    if not path.is_file():
        raise DataError(f"task.yolo_data: no such file: {path}")
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise DataError(f"{path}: not valid YAML ({str(e).splitlines()[0][:120]})") from None
    if not isinstance(doc, dict) or "train" not in doc:
        raise DataError(f"{path}: not an ultralytics data.yaml (needs 'train', 'names')")
    names = _names(doc, path)
    person = next((i for i, n in names.items() if n.lower() in PERSON), None)
    if person is None:
        raise DataError(f"{path}: no 'person' class (names: {list(names.values())[:10]})")
    root = _dataset_root(doc, path)
    out = {}
    for split in ("train", "val"):
        files = _image_files(doc[split], root, f"{path} {split}") if doc.get(split) else []
        labels = img2label_paths([str(f) for f in files])
        entries = [Entry(f, b, np.zeros(len(b), bool), normalized=True)
                   for f, b in ((f, _yolo_labels(Path(lb), person)) for f, lb in zip(files, labels))]
        out[split] = _existing(entries, f"{path} {split}") if entries else []
    check(bool(out["train"]), f"{path}: the train split lists no images", DataError)
    return out


def _existing(entries: list[Entry], where: str) -> list[Entry]:
    """The entries whose image file exists; a warning for the rest, an error when none does."""
    found = [e for e in entries if e.path.is_file()]
    if not found:
        first = entries[0].path if entries else "(none listed)"
        raise DataError(f"{where}: none of the {len(entries)} images exists (first: {first})")
    if len(found) < len(entries):
        log.warning("%s: %d of %d images missing, skipped", where, len(entries) - len(found), len(entries))
    return found


def read_frames(entries: Sequence[Entry]) -> Iterator[Frame]:
    """Each entry's image and person boxes in pixels; unreadable images are skipped with a warning."""
    from hode.data.video import read_image

    for k, e in enumerate(entries):
        image, why = read_image(e.path)
        if image is None:
            log.warning("skipped %s: %s", e.path, why)
            continue
        H, W = image.shape[:2]
        boxes = e.boxes * np.array([W, H, W, H], np.float32) if e.normalized else e.boxes
        yield Frame(k, image, Detections(boxes, np.ones(len(boxes), np.float32),
                                         ids=np.full(len(boxes), -1, np.int64), ignore=e.ignore))
