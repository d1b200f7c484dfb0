"""Write any frame source out as COCO JSON, MOT ``gt.txt``, PANDA image/video annotations, or a video.

Used to hand the harness's data to other tools, and by the tests to write PANDA- and MOT-format
fixtures from synthetic frames (PANDA itself cannot be downloaded here)::

    python -m hode.data.export format=panda-image out=/tmp/panda dataset.frames=4 dataset.width=960 dataset.height=540
    python -m hode.data.export format=coco|mot|panda-video|video out=DIR [dataset=... dataset.key=value ...]

Everything after ``format`` and ``out`` is a Hydra override of the run config (``conf/config.yaml``);
only ``dataset`` is used. Ground truth marked ``ignore`` is written as each format's ignore region.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Iterable, Sequence

import cv2
import numpy as np

from hode.errors import DataError, HodeError
from hode.types import Frame

FORMATS = ("coco", "mot", "panda-image", "panda-video", "video")


def _gt(frame: Frame):
    g = frame.gt
    if g is None:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.int64), np.zeros(0, bool)
    ids = g.ids if g.ids is not None else np.arange(len(g), dtype=np.int64)
    ignore = g.ignore if g.ignore is not None else np.zeros(len(g), bool)
    return g.boxes, ids, ignore


def _write_image(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), image):
        raise DataError(f"cannot write image {path}")


def write_coco(frames: Iterable[Frame], out: str | Path, ext: str = ".jpg") -> Path:
    """``out/images/<index>.jpg`` and ``out/annotations.json`` (person = category 1, ignore = iscrowd)."""
    out = Path(out)
    images, anns = [], []
    for f in frames:
        name = f"images/{f.index:06d}{ext}"
        _write_image(out / name, f.image)
        images.append({"id": f.index + 1, "file_name": name, "width": f.shape[1], "height": f.shape[0]})
        for b, tid, ig in zip(*_gt(f)):
            w, h = float(b[2] - b[0]), float(b[3] - b[1])
            anns.append({"id": len(anns) + 1, "image_id": f.index + 1, "category_id": 1,
                         "bbox": [float(b[0]), float(b[1]), w, h], "area": w * h, "iscrowd": int(ig),
                         "track_id": int(tid)})
    path = out / "annotations.json"
    path.write_text(json.dumps({"images": images, "annotations": anns,
                                "categories": [{"id": 1, "name": "person"}]}))
    return path


def write_mot(frames: Iterable[Frame], out: str | Path, images: bool = True, fps: float = 30.0,
              name: str = "seq") -> Path:
    """A MOTChallenge sequence: ``out/gt/gt.txt`` (MOT16 columns), ``seqinfo.ini``, ``img1/``.

    Persons are class 1; ignore regions are class 8 (distractor), which MOT scoring ignores.
    """
    out = Path(out)
    rows, size, n = [], None, 0
    for f in frames:
        n, size = n + 1, f.shape
        if images:
            _write_image(out / "img1" / f"{f.index + 1:06d}.jpg", f.image)
        for b, tid, ig in zip(*_gt(f)):
            rows.append(f"{f.index + 1},{int(tid)},{b[0]:.2f},{b[1]:.2f},{b[2] - b[0]:.2f},{b[3] - b[1]:.2f},"
                        f"1,{8 if ig else 1},{0.0 if ig else 1.0}")
    (out / "gt").mkdir(parents=True, exist_ok=True)
    (out / "gt" / "gt.txt").write_text("\n".join(rows) + ("\n" if rows else ""))
    if size is not None:
        (out / "seqinfo.ini").write_text(
            f"[Sequence]\nname={name}\nimDir=img1\nframeRate={fps:g}\nseqLength={n}\n"
            f"imWidth={size[1]}\nimHeight={size[0]}\nimExt=.jpg\n")
    return out / "gt" / "gt.txt"


def _rect(b: np.ndarray, W: int, H: int) -> dict:
    return {"tl": {"x": float(b[0]) / W, "y": float(b[1]) / H}, "br": {"x": float(b[2]) / W, "y": float(b[3]) / H}}


def _head(b: np.ndarray) -> np.ndarray:
    """An approximate head box: top 17% of the body, 40% of its width (sources hold no head boxes)."""
    w, h, cx = b[2] - b[0], b[3] - b[1], (b[0] + b[2]) / 2
    return np.array([cx - 0.2 * w, b[1], cx + 0.2 * w, b[1] + 0.17 * h])


def write_panda_images(frames: Iterable[Frame], root: str | Path, scene: str = "01_synthetic",
                       annos: str = "image_annos/person_bbox_train.json", images: str = "image_train") -> Path:
    """PANDA image annotations: ``root/<images>/<scene>/IMG_..jpg`` and one JSON keyed by path.

    ``visible body`` is written equal to ``full body`` (sources know no occlusion extent) and
    ``head`` is approximate; ignore regions become ``{"category": "ignore", "rect": R}``.
    """
    root = Path(root)
    data = {}
    for f in frames:
        H, W = f.shape
        key = f"{scene}/IMG_{scene}_{f.index + 1:02d}.jpg"
        _write_image(root / images / key, f.image)
        objects = []
        for b, tid, ig in zip(*_gt(f)):
            if ig:
                objects.append({"category": "ignore", "rect": _rect(b, W, H)})
            else:
                objects.append({"category": "person", "pose": "walking", "riding type": "null",
                                "rects": {"visible body": _rect(b, W, H), "full body": _rect(b, W, H),
                                          "head": _rect(_head(b), W, H)}})
        data[key] = {"image id": f.index + 1, "image size": {"width": W, "height": H}, "objects list": objects}
    path = root / annos
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1))
    return path


def write_panda_video(frames: Iterable[Frame], root: str | Path, seq: str = "01_synthetic", fps: float = 2.0,
                      annos: str = "video_annos", images: str = "video_train") -> Path:
    """PANDA video annotations: ``root/<annos>/<seq>/{seqinfo,tracks}.json`` and frame images.

    Ignore regions are written as track frames with ``occlusion: "serious_hide"``.
    """
    root = Path(root)
    urls, tracks, size = [], {}, None
    for k, f in enumerate(frames):
        H, W = size = f.shape
        url = f"SEQ_{seq}_{k + 1:03d}.jpg"
        _write_image(root / images / seq / url, f.image)
        urls.append(url)
        for b, tid, ig in zip(*_gt(f)):
            tracks.setdefault(int(tid), []).append({"frame id": k + 1, "rect": _rect(b, W, H),
                                                    "occlusion": "serious_hide" if ig else "normal"})
    if size is None:
        raise DataError("export: the source yielded no frame")
    folder = root / annos / seq
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "seqinfo.json").write_text(json.dumps(
        {"name": seq, "frameRate": fps, "imWidth": size[1], "imHeight": size[0], "imExt": ".jpg",
         "imUrls": urls, "seqLength": len(urls)}, indent=1))
    (folder / "tracks.json").write_text(json.dumps(
        [{"track id": tid, "frames": fr} for tid, fr in sorted(tracks.items())], indent=1))
    return folder


def write_video(frames: Iterable[Frame], path: str | Path, fps: float = 30.0) -> Path:
    """A video file: ``.avi`` as Motion-JPEG, anything else (``.mp4``) as MPEG-4 part 2."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fourcc = cv2.VideoWriter_fourcc(*("MJPG" if path.suffix.lower() == ".avi" else "mp4v"))
    writer = None
    try:
        for f in frames:
            if writer is None:
                writer = cv2.VideoWriter(str(path), fourcc, fps, (f.shape[1], f.shape[0]))
                if not writer.isOpened():
                    raise DataError(f"OpenCV cannot write a video to {path}")
            writer.write(f.image)
    finally:
        if writer is not None:
            writer.release()
    if writer is None:
        raise DataError("export: the source yielded no frame")
    return path


def export(frames: Iterable[Frame], fmt: str, out: str | Path) -> Path:
    if fmt not in FORMATS:
        raise DataError(f"export format must be one of {list(FORMATS)}, got {fmt!r}")
    return {"coco": write_coco, "mot": write_mot, "panda-image": write_panda_images,
            "panda-video": write_panda_video, "video": write_video}[fmt](frames, out)


def main(argv: Sequence[str]) -> int:
    """``python -m hode.data.export format=F out=DIR [hydra overrides]``."""
    from hydra import compose, initialize_config_dir

    from hode.config import CONF_DIR, build

    args = dict(a.split("=", 1) for a in argv if a.startswith(("format=", "out=")))
    overrides = [a for a in argv if not a.startswith(("format=", "out="))]
    if "format" not in args or "out" not in args:
        print(f"usage: python -m hode.data.export format={{{','.join(FORMATS)}}} out=DIR [dataset=... ...]",
              file=sys.stderr)
        return 2
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose("config", overrides=["logger=none", *overrides])
    except Exception as e:  # Hydra's override grammar and missing-option errors
        print(f"error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    try:
        path = export(build(cfg.dataset), args["format"], args["out"])
    except HodeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
