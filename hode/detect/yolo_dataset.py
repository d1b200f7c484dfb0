"""Write tiles of a frame source as an ultralytics (YOLO txt) dataset, for detector training.

Training uses small crops at the frame's native scale: YOLO is fully convolutional, so a model
trained on 256 px crops runs unchanged on 704 px tiles at inference, for a fraction of the cost.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable

import cv2
import numpy as np
from tqdm import tqdm

from hode.types import Frame

PAD = 114  # ultralytics' letterbox grey: a frame smaller than the crop is padded with it


def sample_crops(frame: Frame, size: int, n: int, rng: np.random.Generator, min_inside: float = 0.6, cls: int = 0):
    """``n`` random ``size`` crops of a frame, half centred on people, with their YOLO labels (class
    ``cls``). A frame smaller than ``size`` is padded right and below (the boxes stay put)."""
    image = frame.image
    H, W = image.shape[:2]
    if H < size or W < size:
        image = cv2.copyMakeBorder(image, 0, max(0, size - H), 0, max(0, size - W), cv2.BORDER_CONSTANT,
                                   value=(PAD, PAD, PAD))
        H, W = image.shape[:2]
    gt = frame.gt
    for k in range(n):
        if len(gt) and k % 2 == 0:
            cx, cy = gt.centers()[rng.integers(len(gt))]
            x0 = int(np.clip(cx - rng.uniform(0.2, 0.8) * size, 0, W - size))
            y0 = int(np.clip(cy - rng.uniform(0.2, 0.8) * size, 0, H - size))
        else:
            x0, y0 = int(rng.integers(0, W - size + 1)), int(rng.integers(0, H - size + 1))
        crop = image[y0:y0 + size, x0:x0 + size]
        b = gt.boxes - np.array([x0, y0, x0, y0], np.float32)
        c = np.clip(b, 0, size)
        area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
        carea = np.clip(c[:, 2] - c[:, 0], 0, None) * np.clip(c[:, 3] - c[:, 1], 0, None)
        keep = (carea >= min_inside * area) & (area > 0)
        if gt.ignore is not None:
            keep &= ~gt.ignore
        c = c[keep]
        labels = np.stack([np.full(len(c), cls), (c[:, 0] + c[:, 2]) / 2 / size, (c[:, 1] + c[:, 3]) / 2 / size,
                           (c[:, 2] - c[:, 0]) / size, (c[:, 3] - c[:, 1]) / size], 1)
        yield crop, labels


def write_crops(frames: Iterable[Frame], out: Path, split_of: Callable[[int], str], size: int,
                per_frame: int | Callable[[Frame], int], seed: int, cls: int = 0, total: int | None = None,
                desc: str = "tiles") -> dict[str, int]:
    """Write crops of each frame into ``out/images/<split>`` and ``out/labels/<split>``, the split of
    the ``k``-th frame being ``split_of(k)`` (one pass over the source); returns crops per split."""
    rng = np.random.default_rng(seed)
    counts: dict[str, int] = {}
    for k, frame in enumerate(tqdm(frames, desc=desc, total=total, leave=False)):
        split = split_of(k)
        if split not in counts:
            (out / "images" / split).mkdir(parents=True, exist_ok=True)
            (out / "labels" / split).mkdir(parents=True, exist_ok=True)
            counts[split] = 0
        n = per_frame(frame) if callable(per_frame) else per_frame
        for crop, labels in sample_crops(frame, size, n, rng, cls=cls):
            stem = f"{split}_{counts[split]:06d}"
            cv2.imwrite(str(out / "images" / split / f"{stem}.png"), crop)
            np.savetxt(out / "labels" / split / f"{stem}.txt", labels, fmt="%d %.6f %.6f %.6f %.6f")
            counts[split] += 1
    return counts


def write_split(frames: Iterable[Frame], out: Path, split: str, size: int, per_frame: int, seed: int,
                cls: int = 0) -> int:
    """Write crops of each frame into ``out/images/split`` and ``out/labels/split``; returns count."""
    return write_crops(frames, out, lambda k: split, size, per_frame, seed, cls, desc=f"tiles:{split}").get(split, 0)


def write_data_yaml(out: Path, names: dict[int, str] | None = None) -> Path:
    """``out/data.yaml``; ``names`` the class map (default one class, person)."""
    import yaml

    path = out / "data.yaml"
    doc = {"path": str(out.resolve()), "train": "images/train", "val": "images/val",
           "names": {int(k): str(v) for k, v in (names or {0: "person"}).items()}}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path
