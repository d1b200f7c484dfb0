"""Small data types shared by every part of the harness.

Boxes are always float32 ``(N, 4)`` arrays in ``x1, y1, x2, y2`` pixel order, in the coordinate
frame named by whoever holds them (crop coordinates out of a detector, frame coordinates after
merging).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np


def _as_boxes(a) -> np.ndarray:
    return np.asarray(a, dtype=np.float32).reshape(-1, 4)


@dataclass
class Detections:
    """Person detections (or ground truth) as parallel arrays."""

    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    scores: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.float32))
    ids: np.ndarray | None = None  # track ids for ground truth, None for detections
    ignore: np.ndarray | None = None  # ground truth only: boxes scored as crowd/ignore regions

    def __post_init__(self) -> None:
        self.boxes = _as_boxes(self.boxes)
        self.scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        if len(self.scores) != len(self.boxes):
            raise ValueError(f"{len(self.boxes)} boxes but {len(self.scores)} scores")

    def __len__(self) -> int:
        return len(self.boxes)

    def shifted(self, dx: float, dy: float) -> "Detections":
        return Detections(self.boxes + np.array([dx, dy, dx, dy], np.float32), self.scores,
                          self.ids, self.ignore)

    def select(self, mask: np.ndarray) -> "Detections":
        pick = lambda a: None if a is None else a[mask]  # noqa: E731
        return Detections(self.boxes[mask], self.scores[mask], pick(self.ids), pick(self.ignore))

    @staticmethod
    def concat(parts: list["Detections"]) -> "Detections":
        if not parts:
            return Detections()
        boxes = np.concatenate([p.boxes for p in parts])
        scores = np.concatenate([p.scores for p in parts])
        return Detections(boxes, scores)

    def centers(self) -> np.ndarray:
        return np.stack([(self.boxes[:, 0] + self.boxes[:, 2]) / 2,
                         (self.boxes[:, 1] + self.boxes[:, 3]) / 2], axis=1)


@dataclass
class Frame:
    """One video frame; ``gt`` holds full-body person boxes with track ids when known."""

    index: int
    image: np.ndarray  # (H, W, 3) uint8, BGR as OpenCV reads it
    gt: Detections | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return self.image.shape[0], self.image.shape[1]


@dataclass(frozen=True)
class Tile:
    """One grid cell of the frame and the padded window that is actually cropped for it."""

    row: int
    col: int
    core: tuple[int, int, int, int]  # x0, y0, x1, y1 of the unpadded cell
    window: tuple[int, int, int, int]  # x0, y0, x1, y1 of the padded crop, clipped to the frame


WorkKind = Literal["tile", "frame", "crop"]


@dataclass
class WorkItem:
    """A region of one frame that some node must run a detector on."""

    frame_id: int
    item_id: int
    window: tuple[int, int, int, int]  # x0, y0, x1, y1 in frame coordinates
    crop: np.ndarray  # view into the frame image (no copy)
    kind: WorkKind = "tile"
    count: float = 0.0  # pedestrians seen here in the latest result (drives accuracy-aware dispatch)
    tile: Tile | None = None

    @property
    def pixels(self) -> int:
        x0, y0, x1, y1 = self.window
        return (x1 - x0) * (y1 - y0)


@dataclass
class NodeState:
    """What the camera knows about one edge node when it schedules a frame."""

    name: str
    model: str  # detector option name, e.g. "yolov5s"
    rank: int  # model size order: larger model -> larger rank (accuracy-aware dispatch)
    queue: int = 0  # items waiting or running on the node
    speed: float = 1.0  # measured items per second (moving average)
    up: bool = True
    progress: float = 0.0  # fraction of the current frame's items this node has finished
    true_speed: float | None = None  # the node's real current items/s: set only by the simulator (oracle)
    measured: bool = True  # False until the node has returned an item: ``speed`` is then a placeholder


@dataclass
class Completion:
    """One work item finished by a node, with times on the backend's clock (seconds)."""

    frame_id: int
    item_id: int
    node: int
    detections: Detections  # in crop coordinates
    submitted: float
    started: float
    finished: float

    @property
    def service_s(self) -> float:
        return self.finished - self.started


@dataclass
class Feedback:
    """What a learning scheduler sees after its decision for a frame has played out."""

    frame_id: int
    before: list[NodeState]
    after: list[NodeState]
    assignment: list[int]
    latency_s: float
