"""The tensors ``runner=triton`` exchanges with a Triton model (KServe v2), shared by the client, the
served model and the model-repository generator so the three cannot drift apart.

Request: ``TILES``, UINT8 ``[n, H, W, 3]``: ``n`` crops of one shape (BGR, as the tiler cuts them).
Crops of different shapes go in separate requests; Triton's dynamic batcher merges requests of one
shape, which is what a frame's tiles are. Raw pixels, not JPEG: on loopback and a LAN the bytes cost
less than a decode, and the detector sees exactly what ``runner=inline`` sees.

Reply, per request: ``BOXES`` FP32 ``[n, K, 4]`` (x0, y0, x1, y1 in crop pixels), ``SCORES`` FP32
``[n, K]`` and ``COUNT`` INT32 ``[n, 1]``: crop ``i`` has ``COUNT[i]`` detections, the first of its
``K`` rows (``K`` is the largest count in the request, at least 1; the rest is zero padding).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from hode.types import Detections

INPUT, INPUT_DTYPE = "TILES", "UINT8"
OUTPUTS = ("BOXES", "SCORES", "COUNT")
OUTPUT_DTYPES = {"BOXES": "FP32", "SCORES": "FP32", "COUNT": "INT32"}


def tiles_tensor(crops: Sequence[np.ndarray]) -> np.ndarray:
    """``crops`` (one shape) as one contiguous ``[n, H, W, 3]`` uint8 array."""
    return np.ascontiguousarray(np.stack([np.asarray(c, dtype=np.uint8) for c in crops]))


def pack(dets: Sequence[Detections]) -> dict[str, np.ndarray]:
    """Detections of ``n`` crops as the padded reply tensors."""
    k = max(max((len(d) for d in dets), default=0), 1)  # >= 1: Triton drops a zero-size tensor's bytes
    boxes = np.zeros((len(dets), k, 4), np.float32)
    scores = np.zeros((len(dets), k), np.float32)
    count = np.zeros((len(dets), 1), np.int32)
    for i, d in enumerate(dets):
        boxes[i, :len(d)] = d.boxes
        scores[i, :len(d)] = d.scores
        count[i, 0] = len(d)
    return {"BOXES": boxes, "SCORES": scores, "COUNT": count}


def unpack(boxes: np.ndarray, scores: np.ndarray, count: np.ndarray) -> list[Detections]:
    """The reply tensors back as one :class:`Detections` per crop."""
    out = []
    for i, c in enumerate(np.asarray(count).reshape(-1)):
        c = int(c)
        out.append(Detections(np.asarray(boxes[i, :c], np.float32).reshape(-1, 4),
                              np.asarray(scores[i, :c], np.float32).reshape(-1)))
    return out
