"""The flow filters scored on the user's own footage (``task=eval_filter task.source=video``, ``dataset=video``).

The filter needs person boxes on *every* frame (its history is the counts of the frames before).
They come from the dataset's ground truth when it labels every frame the run reads; a truth set that
labels only some frames (the hand-checked vtest set labels one frame in 60) cannot drive a history,
so the boxes then come from golden labels (the golden configuration's output on whole frames,
computed once and cached by :class:`hode.data.video.VideoSource`), and the sparse truth is used to
say how good those labels are: their recall and false positives per frame on the truth frames read.
"""
from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path

from omegaconf import DictConfig

from hode.config import build
from hode.errors import ConfigError, check
from hode.filter.tracks import TrackSequence, from_source, split_blocks
from hode.filter.video_tracks import RATIOS, FrameRange

log = logging.getLogger(__name__)


def labelled_source(dataset: DictConfig):
    """The footage with boxes on every frame: ``(source, truth file or None)``. The source carries
    the dataset's ground truth when it covers every frame read, else golden labels (prepared)."""
    src = build(dataset)
    check(hasattr(src, "geometry") and hasattr(src, "prepare"),
          f"task.source=video needs dataset=video, got {dataset.get('_target_')}")
    truth_file = getattr(src, "gt_file", None)
    if truth_file is not None:
        from hode.data.coco import load_truth

        numbers = set(load_truth(truth_file))
        covered = sum(src.geometry(k)[0] in numbers for k in range(len(src)))
        if covered == len(src):
            return src, truth_file
        log.info("ground truth %s labels %d of the %d frames read: golden labels give the filter its boxes, "
                 "the truth frames score them", truth_file, covered, len(src))
        check(bool(dataset.get("golden", True)), f"dataset.gt {truth_file} labels only {covered} of {len(src)} frames "
              "and dataset.golden=false: the flow filter needs boxes on every frame (turn golden labels on)")
        src = build(dataset, gt=None, golden=True)
    check(getattr(src, "gt_kind", None) == "golden",
          "task.source=video needs person boxes on every frame: a COCO instances.json labelling every frame, "
          "or golden labels (dataset.golden=true)")
    src.prepare()  # every frame labelled once (progress bar), cached under dataset.golden_cache
    return src, truth_file


def video_sequences(dataset: DictConfig, split: str) -> tuple[list[TrackSequence], dict]:
    """The sequences to score (``split=all``: the whole stretch read; ``time``: its last fifth, the
    stretch ``task=train_filter task.source=video`` holds out) and where their boxes came from."""
    check(split in ("all", "time"), "task.source=video: task.split must be 'all' (every frame read) or 'time' (the "
                                    f"last fifth, which train_filter holds out), got {split!r}")
    src, truth_file = labelled_source(dataset)
    seq = from_source(src)  # source kept: the motion guard is evaluated from the frames' pixels
    labels = label_info(src, seq, truth_file)
    if split == "all":
        return [seq], labels
    test = split_blocks(seq, RATIOS)[2]
    a = len(seq) - len(test)
    test.source = FrameRange(src, a, len(seq))
    if len(test) < 6:
        raise ConfigError(f"task.split=time: the last fifth of {len(seq)} frames is {len(test)} frames; read more "
                          "frames (dataset.frames) or use task.split=all")
    return [test], labels


def label_info(src, seq: TrackSequence, truth_file: Path | None) -> dict:
    """What the boxes are (results.json ``labels``), with golden labels' quality on the truth frames."""
    out: dict = {"kind": src.gt_kind, "truth": str(truth_file) if truth_file else None, "frames": len(seq),
                 "size": [seq.width, seq.height]}
    if src.gt_kind != "golden":
        return out
    from hode.data.video import golden_option

    out["golden_detector"] = golden_option(src.golden_detector, src.run_detector)
    out["golden_imgsz"] = src.golden_imgsz
    if truth_file is not None:
        out["vs_truth"] = golden_vs_truth(src, seq, truth_file)
    return out


def golden_vs_truth(src, seq: TrackSequence, truth_file: Path) -> dict:
    """Recall and false positives per frame of the golden boxes on the truth frames read (IoU 0.5)."""
    from hode.score import load_truth, score

    truth = load_truth(truth_file)
    preds, frames = [], []
    for k, boxes in enumerate(seq.boxes):
        number, sx, sy = src.geometry(k)
        frames.append(number)
        preds += [{"image_id": number, "category_id": 1, "score": 1.0,
                   "bbox": [float(b[0] * sx), float(b[1] * sy), float((b[2] - b[0]) * sx), float((b[3] - b[1]) * sy)]}
                  for b in boxes]
    read = set(frames)
    images = [im for im in truth["images"] if im["id"] in read]
    if not images:
        return {"frames": 0}
    ids = {im["id"] for im in images}
    part = {**truth, "images": images, "annotations": [a for a in truth["annotations"] if a["image_id"] in ids]}
    with tempfile.TemporaryDirectory() as tmp:  # hode.score reads a truth set from a file
        path = Path(tmp) / "instances.json"
        path.write_text(json.dumps(part))
        r = score(preds, path, conf=0.0)
    return {k: r[k] for k in ("frames", "truth_boxes", "recall", "fp_per_frame")}
