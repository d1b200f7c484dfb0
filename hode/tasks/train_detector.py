"""``task=train_detector``: train an ultralytics YOLOv5 from its architecture yaml on synthetic tiles.

No pretrained weights are downloaded: the network starts from random init (``yolov5n.yaml`` etc.),
learns on crops of synthetic scenes whose seeds are disjoint from evaluation's, and the best
checkpoint (by validation mAP) is copied to ``detector.weights``.
"""
from __future__ import annotations

import json
import shutil
import time
from itertools import chain
from pathlib import Path

from omegaconf import DictConfig

from hode.data.synthetic import SyntheticCrowd
from hode.detect.yolo import resolve_device
from hode.detect.yolo_dataset import write_data_yaml, write_split
from hode.results import run_dir, write_results


def build_dataset(out: Path, train_seeds, val_seeds, frames_per_seed: int, every: int, crops_per_frame: int,
                  crop: int, width: int, height: int, density: float) -> Path:
    def frames(seeds):
        return chain(*(SyntheticCrowd(width=width, height=height, frames=frames_per_seed, every=every,
                                      seed=int(s), density=density) for s in seeds))
    write_split(frames(train_seeds), out, "train", crop, crops_per_frame, seed=0)
    write_split(frames(val_seeds), out, "val", crop, crops_per_frame, seed=1)
    return write_data_yaml(out)


def train(arch: str, weights_out: str, work: Path, train_seeds, val_seeds, frames_per_seed: int = 10,
          every: int = 15, crops_per_frame: int = 30, crop: int = 256, epochs: int = 30,
          time_h: float | None = None, batch: int = 16, workers: int = 2, device: str = "auto",
          width: int = 3840, height: int = 2160, density: float = 1.0, seed: int = 0) -> dict:
    from ultralytics import YOLO

    t0 = time.time()
    data = build_dataset(work / "data", train_seeds, val_seeds, frames_per_seed, every, crops_per_frame,
                         crop, width, height, density)
    t_data = time.time() - t0
    model = YOLO(arch)
    extra = {"time": time_h} if time_h else {}
    # scale/mosaic kept mild: tiles are inferred at native scale, so sizes need not generalise far
    model.train(data=str(data), epochs=epochs, imgsz=crop, batch=batch, device=resolve_device(device),
                workers=workers, plots=False, amp=False, project=str(work), name="yolo", exist_ok=True,
                pretrained=False, verbose=False, seed=seed, scale=0.3, patience=100, **extra)
    best = work / "yolo" / "weights" / "best.pt"
    Path(weights_out).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(best, weights_out)
    return {"arch": arch, "weights": weights_out, "data_s": round(t_data, 1),
            "train_s": round(time.time() - t0 - t_data, 1), "epochs": epochs,
            "device": resolve_device(device)}


def main(cfg: DictConfig) -> dict:
    t = cfg.task
    out = run_dir()
    info = train(arch=cfg.detector.arch, weights_out=t.weights_out or cfg.detector.weights, work=out,
                 train_seeds=list(t.train_seeds), val_seeds=list(t.val_seeds),
                 frames_per_seed=t.frames_per_seed, every=t.every, crops_per_frame=t.crops_per_frame,
                 crop=t.crop, epochs=t.epochs, time_h=t.time_h, batch=t.batch, workers=t.workers,
                 device=cfg.detector.device, width=t.width, height=t.height, density=t.density)
    print(json.dumps(info, indent=1))
    return write_results(cfg, {"task": "train_detector", **info})
