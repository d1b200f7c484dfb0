"""``task=eval_detector``: accuracy of one detector on held-out synthetic tiles.

Scenes come from seeds disjoint from training's. Each frame is cut with the run's tiler and every
padded tile is one COCO image: ground truth is each person at least 60% inside the tile; people
cut harder than that by the tile border become ignore regions (a partial detection of them is
neither a hit nor a false positive). The tiles' detections are also merged back into whole frames
and scored again (``map50_frame``): the number the pipeline sees.
"""
from __future__ import annotations

import time
from itertools import chain

import numpy as np
from omegaconf import DictConfig
from tqdm import tqdm

from hode.config import build
from hode.data.synthetic import SyntheticCrowd
from hode.metrics import coco_map
from hode.results import summary_table, write_results
from hode.tiling import Tiler, crop, merge
from hode.types import Detections, Frame


def tile_ground_truth(gt: Detections, window: tuple[int, int, int, int], min_inside: float = 0.6) -> Detections:
    """Ground truth of one tile, in tile coordinates."""
    x0, y0, x1, y1 = window
    b = gt.boxes - np.array([x0, y0, x0, y0], np.float32)
    c = np.clip(b, 0, [x1 - x0, y1 - y0, x1 - x0, y1 - y0])
    area = np.maximum((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]), 1e-6)
    inside = np.clip(c[:, 2] - c[:, 0], 0, None) * np.clip(c[:, 3] - c[:, 1], 0, None) / area
    touching = inside > 0
    ignore = (inside < min_inside) | (gt.ignore if gt.ignore is not None else False)
    return Detections(c[touching], np.ones(int(touching.sum()), np.float32), ignore=ignore[touching])


def evaluate(detector, frames: list[Frame], tiler: Tiler, batch: int = 8, progress: bool = True) -> dict:
    tile_gts, tile_dets, frame_dets, times = [], [], [], []
    for frame in tqdm(frames, desc="eval", disable=not progress, leave=False):
        H, W = frame.shape
        tiles = tiler.tiles(H, W)
        dets = []
        for i in range(0, len(tiles), batch):
            chunk = tiles[i:i + batch]
            t0 = time.perf_counter()
            dets += detector.predict([crop(frame.image, t.window) for t in chunk])
            times.append((time.perf_counter() - t0) / len(chunk))
        tile_gts += [tile_ground_truth(frame.gt, t.window) for t in tiles]
        tile_dets += dets
        frame_dets.append(merge([(d, t.window, t.core) for d, t in zip(dets, tiles)], H, W, tiler.merge_iou))
    acc = coco_map(tile_gts, tile_dets)
    acc_frame = coco_map([f.gt for f in frames], frame_dets)
    return {**acc, "map50_frame": acc_frame["map50"], "map50_95_frame": acc_frame["map50_95"],
            "tiles": len(tile_gts), "tile_ms_median": float(np.median(times) * 1000) if times else None}


def main(cfg: DictConfig) -> dict:
    t = cfg.task
    detector = build(cfg.detector)
    tiler = build(cfg.tiling)
    frames = list(chain(*(SyntheticCrowd(width=t.width, height=t.height, frames=t.frames_per_seed, every=t.every,
                                         seed=int(s), density=t.density) for s in t.seeds)))
    r = evaluate(detector, frames, tiler, progress=cfg.progress)
    results = write_results(cfg, {"task": "eval_detector", "detector": detector.name,
                                  "weights": detector.weights, "frames": len(frames), **r})
    print(summary_table(results))
    print(f"tiles={r['tiles']}  map50_frame={r['map50_frame']:.3f}  tile_ms_median={r['tile_ms_median']:.1f}")
    return results
