"""What a run writes besides ``results.json``: its detections, in the formats the field reads.

- ``predictions.json`` (on by default): COCO results format, one entry per box:
  ``{"image_id": <0-based frame number in the source>, "category_id": 1, "bbox": [x, y, w, h],
  "score": s}``, boxes in the pixels of the *source* frame (before any ``dataset.width/height``
  resize), so the file scores against ground truth at the footage's own size (``python -m hode.score``).
- ``det.txt`` (``save.mot=true``): MOTChallenge detections, ``frame,-1,x,y,w,h,score,-1,-1,-1`` with
  1-based frame numbers, the same boxes.
- ``annotated.mp4`` or ``annotated/<frame>.jpg`` (``save.annotated=video|frames``): every frame with its
  detections drawn and the tiles the flow filter skipped shaded, like ultralytics' ``save=True``.

A source maps its yielded frame ``k`` to the source's frame number and scale through an optional
``geometry(k) -> (frame_number, sx, sy)``; without it, frame ``k`` is frame ``k`` at scale 1.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from hode.errors import check
from hode.types import Detections

PERSON = 1  # COCO category id of 'person'
ANNOTATED = (None, "video", "frames")


@dataclass(frozen=True)
class SaveSettings:
    """``save:`` in conf/config.yaml: which detection files a run writes into its run dir."""

    predictions: bool = True  # predictions.json (COCO results)
    mot: bool = False  # det.txt (MOTChallenge detections)
    annotated: str | None = None  # video | frames | None

    def __post_init__(self) -> None:
        check(isinstance(self.predictions, bool), f"save.predictions must be true or false, got {self.predictions!r}")
        check(isinstance(self.mot, bool), f"save.mot must be true or false, got {self.mot!r}")
        check(self.annotated in ANNOTATED, f"save.annotated must be video, frames or null, got {self.annotated!r}")


def geometry(source, k: int) -> tuple[int, float, float]:
    """(source frame number, x scale, y scale) that take frame ``k``'s boxes to source pixels."""
    fn = getattr(source, "geometry", None)
    return fn(k) if fn is not None else (k, 1.0, 1.0)


def to_source(boxes: np.ndarray, sx: float, sy: float) -> np.ndarray:
    return np.asarray(boxes, np.float64).reshape(-1, 4) * np.array([sx, sy, sx, sy])


def source_boxes(frames: Iterable[tuple[int, Detections]], source=None) -> Iterator[tuple[int, float, float, float, float, float]]:
    """``(frame number, x, y, w, h, score)`` in source pixels for ``(k, detections)`` pairs."""
    for k, det in frames:
        number, sx, sy = geometry(source, k)
        for (x1, y1, x2, y2), s in zip(to_source(det.boxes, sx, sy), det.scores):
            yield int(number), float(x1), float(y1), float(x2 - x1), float(y2 - y1), float(s)


def coco_results(frames: Iterable[tuple[int, Detections]], source=None) -> list[dict]:
    """COCO results entries for ``(k, detections)`` pairs (boxes in run-frame pixels)."""
    return [{"image_id": n, "category_id": PERSON, "bbox": [round(x, 2), round(y, 2), round(w, 2), round(h, 2)],
             "score": round(s, 5)} for n, x, y, w, h, s in source_boxes(frames, source)]


def mot_lines(frames: Iterable[tuple[int, Detections]], source=None) -> list[str]:
    """MOTChallenge ``det.txt`` rows: ``frame,-1,x,y,w,h,score,-1,-1,-1`` (frame 1-based)."""
    return [f"{n + 1},-1,{x:.2f},{y:.2f},{w:.2f},{h:.2f},{s:.5f},-1,-1,-1" for n, x, y, w, h, s in source_boxes(frames, source)]


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_detections(out: Path, records: Sequence, settings: SaveSettings, source=None) -> dict[str, str]:
    """Write predictions.json / det.txt for the run's finished frames; returns {kind: path}."""
    frames = [(r.index, r.detections) for r in records]
    written: dict[str, str] = {}
    if settings.predictions:
        path = out / "predictions.json"
        _atomic_write(path, json.dumps(coco_results(frames, source)))
        written["predictions"] = str(path)
    if settings.mot:
        path = out / "det.txt"
        lines = mot_lines(frames, source)
        _atomic_write(path, "\n".join(lines) + ("\n" if lines else ""))
        written["mot"] = str(path)
    return written


def draw(image: np.ndarray, det: Detections, tiles: Sequence = (), keep: np.ndarray | None = None) -> np.ndarray:
    """A copy of ``image`` with the skipped tiles shaded, the tile grid drawn and each box with its score."""
    import cv2

    img = image.copy()
    if keep is not None and len(tiles):
        flat = np.asarray(keep).reshape(-1)
        shade = img.copy()
        for t, kept in zip(tiles, flat):
            x0, y0, x1, y1 = t.core
            if not kept:
                cv2.rectangle(shade, (x0, y0), (x1 - 1, y1 - 1), (40, 40, 40), -1)
            cv2.rectangle(img, (x0, y0), (x1 - 1, y1 - 1), (200, 200, 200), 1)
        img = cv2.addWeighted(shade, 0.45, img, 0.55, 0)
    thick = max(1, round(max(img.shape[:2]) / 900))
    for (x1, y1, x2, y2), s in zip(det.boxes.astype(int), det.scores):
        cv2.rectangle(img, (x1, y1), (x2, y2), (0, 220, 0), thick)
        cv2.putText(img, f"{s:.2f}", (x1, max(y1 - 3, 10)), cv2.FONT_HERSHEY_SIMPLEX, 0.4 * thick, (0, 220, 0), thick)
    return img


def write_annotated(out: Path, frames: Iterable, records: Sequence, tiler, mode: str, fps: float = 10.0) -> str:
    """Draw every finished frame (``frames`` yields the run's frames again) into a video or a folder."""
    import cv2

    by_index = {r.index: r for r in records}
    writer, folder = None, out / "annotated"
    target = out / "annotated.mp4" if mode == "video" else folder
    if mode == "frames":
        folder.mkdir(parents=True, exist_ok=True)
    try:
        for frame in frames:
            rec = by_index.get(frame.index)
            if rec is None:  # not finished (an interrupted run)
                continue
            h, w = frame.image.shape[:2]
            img = draw(frame.image, rec.detections, tiler.tiles(h, w), rec.keep)
            if mode == "frames":
                cv2.imwrite(str(folder / f"{frame.index:06d}.jpg"), img)
                continue
            if writer is None:
                writer = cv2.VideoWriter(str(target), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
                check(writer.isOpened(), f"save.annotated=video: OpenCV cannot write {target} (no mp4v encoder); "
                                         "use save.annotated=frames")
            writer.write(img)
    finally:
        if writer is not None:
            writer.release()
    return str(target)
