"""``task=train_detector``: train or fine-tune an ultralytics YOLO on tiles of synthetic scenes or of
the user's own labelled data.

``task.data`` says where the frames come from:

- ``synthetic``: scenes of the synthetic crowd, seeds disjoint from evaluation's (the shipped
  ``weights/yolov5*-synth.pt`` were trained so, from the architecture yaml, 256 px crops);
- ``dataset``: the frames of ``dataset=...`` (PANDA, a video or frame folder with a COCO
  ``instances.json`` beside it, or golden labels when it has none), the last ``val_fraction`` of
  the frames (in time) for validation;
- ``coco``: a COCO instances file (``task.coco``) and its images (``task.images``);
- ``yolo``: an ultralytics dataset (``task.yolo_data=data.yaml``), its own train/val splits.

Every frame is cut into ``task.crop`` crops (default: the pipeline's tile, ``tiling.tile``) at its
native scale, people only. ``task.from`` says where the network starts: ``weights`` fine-tunes the
detector's own checkpoint (``detector=yolo11n``: the official COCO weights, ``asset:yolo11n.pt``),
keeping its class map so nothing of it is re-initialised; ``arch`` trains ``detector.arch`` from
scratch; any other value is a checkpoint path or ``asset:<name>``. The best checkpoint (validation
mAP) goes to ``task.weights_out`` (default ``<run dir>/detector.pt``: shipped weights are replaced
only when asked), and ``results.json`` holds the validation mAP50 before (the starting weights) and
after training.
"""
from __future__ import annotations

import json
import logging
import math
import shutil
import time
from itertools import chain
from pathlib import Path

from omegaconf import DictConfig

from hode.config import build
from hode.data.synthetic import SyntheticCrowd
from hode.detect.yolo import resolve_device
from hode.detect.yolo_dataset import write_crops, write_data_yaml, write_split
from hode.errors import ConfigError, check
from hode.results import run_dir, write_results

log = logging.getLogger(__name__)
DATA = ("synthetic", "dataset", "coco", "yolo")


def build_dataset(out: Path, train_seeds, val_seeds, frames_per_seed: int, every: int, crops_per_frame: int,
                  crop: int, width: int, height: int, density: float, cls: int = 0,
                  names: dict[int, str] | None = None) -> Path:
    """Crops of synthetic scenes (train and validation seeds) as a YOLO dataset; its data.yaml."""
    def frames(seeds):
        return chain(*(SyntheticCrowd(width=width, height=height, frames=frames_per_seed, every=every,
                                      seed=int(s), density=density) for s in seeds))
    write_split(frames(train_seeds), out, "train", crop, crops_per_frame, seed=0, cls=cls)
    write_split(frames(val_seeds), out, "val", crop, crops_per_frame, seed=1, cls=cls)
    return write_data_yaml(out, names)


def data_kind(cfg: DictConfig) -> str:
    """``task.data``; ``auto``: synthetic on the synthetic dataset, else the run's dataset."""
    kind = str(cfg.task.get("data", "auto"))
    if kind == "auto":
        return "synthetic" if str(cfg.dataset.get("_target_", "")).endswith("SyntheticCrowd") else "dataset"
    check(kind in DATA, f"task.data must be one of {', '.join(DATA)} or auto, got {kind!r}")
    return kind


def start_point(cfg: DictConfig, kind: str) -> tuple[str, str | None]:
    """(``arch`` | ``weights``, the checkpoint spec to start from or None for ``arch``)."""
    start = str(cfg.task.get("from", "auto"))
    if start == "auto":
        start = "arch" if kind == "synthetic" and cfg.detector.get("arch") else "weights"
    if start == "arch":
        check(bool(cfg.detector.get("arch")), f"task.from=arch: detector {cfg.detector.get('name')} has no "
                                              "architecture yaml (detector.arch); fine-tune its weights (task.from=weights)")
        return "arch", None
    if start == "weights":
        check(bool(cfg.detector.get("weights")), "task.from=weights: the detector has no weights")
        return "weights", str(cfg.detector.weights)
    return "weights", start  # a checkpoint path or asset:<name>


def tile_count(frame, tile: int) -> int:
    """Crops per frame for real data: one per tile of the pipeline's grid for this frame."""
    H, W = frame.shape
    return max(1, math.ceil(H / tile) * math.ceil(W / tile))


def prepare_data(cfg: DictConfig, kind: str, out: Path, crop: int, cls: int, names: dict[int, str]) -> dict:
    """Write the crops of ``kind``'s frames into ``out`` as a YOLO dataset. Returns ``data`` (its
    data.yaml), ``crops`` per split, ``labels`` (where the boxes came from) and ``frames`` per split."""
    from hode.detect.train_data import coco_entries, read_frames, split_tail, yolo_entries

    t = cfg.task
    auto = str(t.crops_per_frame) == "auto"
    per = (lambda f: tile_count(f, int(cfg.tiling.tile))) if auto else int(t.crops_per_frame)
    if kind == "synthetic":
        n = 30 if auto else int(t.crops_per_frame)
        data = build_dataset(out, list(t.train_seeds), list(t.val_seeds), t.frames_per_seed, t.every, n, crop,
                             t.width, t.height, t.density, cls, names)
        return {"data": data, "labels": "synthetic", "crops": {s: len(list((out / "images" / s).iterdir()))
                                                               for s in ("train", "val")}}
    if kind == "dataset":
        source = build(cfg.dataset)
        check(not getattr(source, "blank", False), f"dataset {getattr(source, 'name', '')} has no images "
              "(tracks only): nothing to train a detector on", ConfigError)
        check(hasattr(source, "__len__"), "task.data=dataset needs a dataset that knows its length")
        labels = str(getattr(source, "gt_kind", None) or "none")
        check(labels != "none", "task.data=dataset: the dataset has no ground truth and golden labels are off "
                                "(dataset.golden=false)")
        if labels == "golden":
            log.warning("training on golden labels (the golden configuration's output), not on human labels")
            if hasattr(source, "prepare"):
                source.prepare()  # computed once, cached (.cache/golden)
        n = len(source)
        n_train = len(split_tail(range(n), float(t.val_fraction), f"dataset {getattr(source, 'name', '')}")[0])
        crops = write_crops(iter(source), out, lambda k: "train" if k < n_train else "val", crop, per, int(cfg.seed),
                            cls, total=n)
        frames = {"train": n_train, "val": n - n_train}
    else:
        if kind == "coco":
            check(bool(t.get("coco")), "task.data=coco needs task.coco=path/to/instances.json")
            train, val = split_tail(coco_entries(str(t.coco), t.get("images")), float(t.val_fraction), str(t.coco))
            labels = "coco"
        else:
            check(bool(t.get("yolo_data")), "task.data=yolo needs task.yolo_data=path/to/data.yaml")
            splits = yolo_entries(str(t.yolo_data))
            train, val = (splits["train"], splits["val"]) if splits["val"] else \
                split_tail(splits["train"], float(t.val_fraction), str(t.yolo_data))
            labels = "yolo"
        entries = train + val
        crops = write_crops(read_frames(entries), out, lambda k: "train" if k < len(train) else "val", crop, per,
                            int(cfg.seed), cls, total=len(entries))
        frames = {"train": len(train), "val": len(val)}
    check(crops.get("train", 0) > 0 and crops.get("val", 0) > 0,
          f"no training or validation crops were written ({crops}): are the images readable?", ConfigError)
    return {"data": write_data_yaml(out, names), "labels": labels, "crops": crops, "frames": frames}


def val_map(weights: str | Path, data: Path, imgsz: int, batch: int, device: str, work: Path, name: str) -> dict:
    """mAP50 and mAP50-95 of a checkpoint on the validation crops (ultralytics' validator, person only)."""
    from ultralytics import YOLO

    m = YOLO(str(weights), task="detect").val(data=str(data), imgsz=imgsz, batch=batch, device=device, plots=False,
                                              verbose=False, project=str(work), name=name, exist_ok=True, workers=0)
    return {"map50": round(float(m.box.map50), 4), "map50_95": round(float(m.box.map), 4)}


def train(cfg: DictConfig, work: Path) -> dict:
    from ultralytics import YOLO

    from hode.detect.yolo import YoloDetector

    t = cfg.task
    kind = data_kind(cfg)
    mode, spec = start_point(cfg, kind)
    device = resolve_device(cfg.detector.device)
    crop = (256 if kind == "synthetic" else int(cfg.tiling.tile)) if str(t.crop) == "auto" else int(t.crop)
    imgsz = crop if str(t.get("imgsz", "auto")) == "auto" else int(t.imgsz)
    check(imgsz >= 32 and imgsz % 32 == 0, f"task.imgsz must be auto or a positive multiple of 32, got {t.imgsz!r}")
    if mode == "weights":  # the start checkpoint's own class map: the whole network carries over
        start = YoloDetector(spec, name="start", device="cpu")
        _ = start.model  # loads and checks it (a detection model with a person class), one error line if not
        names, cls, arch = dict(start.model.names), start._person, str(start.path)
    else:
        names, cls, arch = {0: "person"}, 0, str(cfg.detector.arch)
    weights_out = Path(str(t.weights_out)) if t.weights_out else work / "detector.pt"
    from hode import assets

    check(assets.cache_root().resolve() / "assets" not in weights_out.resolve().parents,
          f"task.weights_out={weights_out} is inside the asset cache: write the trained weights elsewhere")
    t0 = time.time()
    d = prepare_data(cfg, kind, work / "data", crop, cls, names)
    t_data = time.time() - t0
    batch, workers = int(t.batch), int(t.workers)
    before = val_map(arch, d["data"], imgsz, batch, device, work, "val_before") if mode == "weights" else None
    model = YOLO(arch, task="detect")
    extra = {"time": t.time_h} if t.time_h else {}
    # scale/mosaic kept mild: tiles are inferred at native scale, so sizes need not generalise far
    model.train(data=str(d["data"]), epochs=int(t.epochs), imgsz=imgsz, batch=batch, device=device,
                workers=workers, plots=False, amp=False, project=str(work), name="yolo", exist_ok=True,
                pretrained=mode == "weights", verbose=False, seed=int(cfg.seed), scale=0.3, patience=100, **extra)
    t_train = time.time() - t0 - t_data
    best = work / "yolo" / "weights" / "best.pt"
    if not best.is_file():
        best = work / "yolo" / "weights" / "last.pt"
    after = val_map(best, d["data"], imgsz, batch, device, work, "val_after")
    weights_out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(best, weights_out)
    return {"data": kind, "labels": d["labels"], "from": mode, "start": spec if mode == "weights" else arch,
            "weights": str(weights_out), "crop": crop, "imgsz": imgsz, "crops": d["crops"], "frames": d.get("frames"),
            "person_class": cls, "classes": len(names), "epochs": int(t.epochs),
            "map50_before": before and before["map50"], "map50_95_before": before and before["map50_95"],
            "map50_after": after["map50"], "map50_95_after": after["map50_95"],
            "data_s": round(t_data, 1), "train_s": round(t_train, 1), "device": device}


def main(cfg: DictConfig) -> dict:
    out = run_dir()
    info = train(cfg, out)
    print(json.dumps({k: v for k, v in info.items()}, indent=1))
    b = info["map50_before"]
    print(f"validation mAP50: {'-' if b is None else f'{b:.3f}'} before, {info['map50_after']:.3f} after "
          f"({info['crops']['train']} train / {info['crops']['val']} val crops of {info['crop']} px)")
    print(f"weights: {info['weights']}  (use: python run.py detector.weights={info['weights']} ...)")
    return write_results(cfg, {"task": "train_detector", **info})
