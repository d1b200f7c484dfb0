"""Hand-made simulator work: items of one padded tile size with cached detections (no detector runs)."""
from __future__ import annotations

from hode.profiles import TILE_PIXELS
from hode.cluster.sim import SimBackend
from hode.types import Detections, WorkItem

TILE = (0, 0, 608, 704)  # a full padded tile: TILE_PIXELS pixels
assert (TILE[2] - TILE[0]) * (TILE[3] - TILE[1]) == TILE_PIXELS


def write_profiles(d, noise: float = 0.0) -> str:
    d.mkdir(exist_ok=True)
    for name, ms in (("fast", 100.0), ("slow", 250.0)):
        (d / f"{name}.yaml").write_text(f"name: {name}\nmodels:\n  yolov5n: {{tile_ms: {ms}, frame4k_ms: {ms * 10}, "
                                        f"noise: {noise}, source: test}}\n")
    return str(d)


def items(frame: int, n: int) -> list[WorkItem]:
    out = []
    for k in range(n):
        w = (TILE[0] + k, TILE[1], TILE[2] + k, TILE[3])  # same size, distinct windows
        out.append(WorkItem(frame, k, w, None, "tile"))
    return out


def submit(sim: SimBackend, frame: int, assignment: list[int]) -> list[WorkItem]:
    its = items(frame, len(assignment))
    store = sim.cache.store("yolov5n")
    for it in its:  # cached detections: no detector, no pixels needed
        store.put(frame, it.window, Detections([[1, 2, 3, 4 + it.item_id]], [0.9]))
    sim.submit(frame, its, assignment)
    return its


def drain(sim: SimBackend) -> list:
    out = []
    while (got := sim.poll()):
        out.append([(c.node, c.frame_id, c.item_id, round(c.started, 9), round(c.finished, 9), round(sim.now(), 9))
                    for c in got])
    return out
