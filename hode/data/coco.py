"""Ground truth in COCO ``instances.json`` form for a video or a frame folder.

The file's ``images[].id`` is the 0-based frame number in the footage (the same ``image_id`` a run's
``predictions.json`` uses), boxes ``[x, y, w, h]`` are in the footage's own pixels, and only the
``person`` category counts. ``iscrowd: 1`` boxes are ignore regions: a detection there is neither a
hit nor a false positive. Frames without an ``images`` entry are not scored.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from hode.errors import DataError

Truth = dict[int, tuple[np.ndarray, np.ndarray]]  # frame number -> (boxes xyxy, ignore flags)


def find_truth(source_path: Path) -> Path | None:
    """``instances.json`` in a frame folder, or ``<stem>.instances.json`` / ``instances.json`` beside a video."""
    if source_path.is_dir():
        candidates = [source_path / "instances.json"]
    else:
        candidates = [source_path.with_name(source_path.stem + ".instances.json"), source_path.with_name("instances.json")]
    return next((p for p in candidates if p.is_file()), None)


def load_truth(path: str | Path) -> Truth:
    """Person boxes per frame number; a malformed file is one :class:`DataError` line."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
        images = {int(im["id"]) for im in doc["images"]}
        cats = doc.get("categories") or [{"id": 1, "name": "person"}]
        person = {int(c["id"]) for c in cats if str(c.get("name", "")).lower() in ("person", "pedestrian")}
        if not person:
            raise DataError(f"{path}: no 'person' category (categories: {[c.get('name') for c in cats][:8]})")
        rows: dict[int, list] = {i: [] for i in images}
        for a in doc.get("annotations", []):
            if int(a["category_id"]) not in person:
                continue
            i = int(a["image_id"])
            if i not in rows:
                raise DataError(f"{path}: annotation {a.get('id')} names image_id {i}, which is not in images")
            x, y, w, h = (float(v) for v in a["bbox"])
            if not (w > 0 and h > 0 and np.isfinite([x, y, w, h]).all()):
                raise DataError(f"{path}: annotation {a.get('id')} has a bad bbox {a['bbox']}")
            rows[i].append((x, y, x + w, y + h, bool(a.get("iscrowd", 0))))
    except DataError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DataError(f"{path} is not a COCO instances file ({type(e).__name__}: {str(e)[:120]})") from None
    out: Truth = {}
    for i, r in rows.items():
        a = np.array([b[:4] for b in r], np.float32).reshape(-1, 4)
        out[i] = (a, np.array([b[4] for b in r], bool))
    return out
