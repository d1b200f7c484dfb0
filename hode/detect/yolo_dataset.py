"""Write tiles of a frame source as an ultralytics (YOLO txt) dataset, for detector training.

Training uses small crops at the frame's native scale: YOLO is fully convolutional, so a model
trained on 256 px crops runs unchanged on 704 px tiles at inference, for a fraction of the cost.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import cv2
import numpy as np
from tqdm import tqdm

from hode.types import Frame


def sample_crops(frame: Frame, size: int, n: int, rng: np.random.Generator, min_inside: float = 0.6):
    """``n`` random ``size`` crops of a frame, half centred on people, with their YOLO labels."""
    H, W = frame.shape
    gt = frame.gt
    for k in range(n):
        if len(gt) and k % 2 == 0:
            cx, cy = gt.centers()[rng.integers(len(gt))]
            x0 = int(np.clip(cx - rng.uniform(0.2, 0.8) * size, 0, W - size))
            y0 = int(np.clip(cy - rng.uniform(0.2, 0.8) * size, 0, H - size))
        else:
            x0, y0 = int(rng.integers(0, W - size + 1)), int(rng.integers(0, H - size + 1))
        crop = frame.image[y0:y0 + size, x0:x0 + size]
        b = gt.boxes - np.array([x0, y0, x0, y0], np.float32)
        c = np.clip(b, 0, size)
        area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
        carea = np.clip(c[:, 2] - c[:, 0], 0, None) * np.clip(c[:, 3] - c[:, 1], 0, None)
        keep = (carea >= min_inside * area) & (area > 0)
        if gt.ignore is not None:
            keep &= ~gt.ignore
        c = c[keep]
        labels = np.stack([np.zeros(len(c)), (c[:, 0] + c[:, 2]) / 2 / size, (c[:, 1] + c[:, 3]) / 2 / size,
                           (c[:, 2] - c[:, 0]) / size, (c[:, 3] - c[:, 1]) / size], 1)
        yield crop, labels


def write_split(frames: Iterable[Frame], out: Path, split: str, size: int, per_frame: int, seed: int) -> int:
    """Write crops of each frame into ``out/images/split`` and ``out/labels/split``; returns count."""
    rng = np.random.default_rng(seed)
    (out / "images" / split).mkdir(parents=True, exist_ok=True)
    (out / "labels" / split).mkdir(parents=True, exist_ok=True)
    n = 0
    for frame in tqdm(frames, desc=f"tiles:{split}", leave=False):
        for crop, labels in sample_crops(frame, size, per_frame, rng):
            stem = f"{split}_{n:06d}"
            cv2.imwrite(str(out / "images" / split / f"{stem}.png"), crop)
            np.savetxt(out / "labels" / split / f"{stem}.txt", labels, fmt="%d %.6f %.6f %.6f %.6f")
            n += 1
    return n


def write_data_yaml(out: Path) -> Path:
    path = out / "data.yaml"
    path.write_text(f"path: {out.resolve()}\ntrain: images/train\nval: images/val\nnames:\n  0: person\n")
    return path
