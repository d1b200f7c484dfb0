"""Topologies: the edge nodes of a run, each a name, a detector model and a device kind."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hode.errors import check

# Larger model -> larger rank: accuracy-aware dispatch sends crowded tiles to high ranks.
MODEL_RANK = {"yolov5n": 0, "yolov5s": 1, "yolov5m": 2, "yolov5l": 3, "yolov5x": 4,
              "yolov8n": 0, "yolo11n": 0, "yolo11n_x2": 1}  # COCO tiers: x2 sees smaller people


@dataclass
class Node:
    name: str
    model: str  # a detector option name (conf/detector/<model>.yaml)
    device: str = "cpu"  # device kind, the key of its timing profile (conf/device/<device>.yaml)
    host: str | None = None  # address of an already-running or remote worker; None: local
    port: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rank(self) -> int:
        return MODEL_RANK.get(self.model, 1)


class Topology:
    """``topology=...``: the list of edge nodes."""

    def __init__(self, nodes: list[dict], name: str = "custom") -> None:
        check(isinstance(nodes, (list, tuple)) and len(nodes) > 0, f"topology.nodes must be a non-empty list, got {nodes!r}")
        self.name = name
        self.nodes = []
        for i, n in enumerate(nodes):
            n = dict(n)
            check("model" in n, f"topology.nodes[{i}] has no 'model'")
            known = {k: n.pop(k) for k in ("name", "model", "device", "host", "port") if k in n}
            known.setdefault("name", f"node{i}")
            self.nodes.append(Node(**known, extra=n))
        names = [n.name for n in self.nodes]
        check(len(set(names)) == len(names), f"topology node names must be unique, got {names}")

    def __len__(self) -> int:
        return len(self.nodes)

    def __iter__(self):
        return iter(self.nodes)
