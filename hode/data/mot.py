"""``dataset=mot``: MOTChallenge ground-truth tracks (``gt.txt``), with or without the images.

Real pedestrian motion for training and evaluating the flow filter: the ``motmetrics`` package
ships the real TUD-Campus and TUD-Stadtmitte tracks (``path=motmetrics:TUD-Campus``), but no
images. Without images this source yields *blank* (black) frames of the sequence size with the
ground truth: useful for the filter (whose input is counts per tile) and for the oracle, useless
for a detector. ``blank`` says which case holds.

Columns (``layout=auto`` picks by count): MOT15 ``frame,id,x,y,w,h,conf,wx,wy,wz`` (everyone is a
pedestrian); MOT16/17/20 ``frame,id,x,y,w,h,conf,class,vis``. Class 1 is a pedestrian; classes 2
(person on vehicle), 7 (static person), 8 (distractor) and 12 (reflection) are ignore regions, as
in MOT scoring; other classes (vehicles, occluders) are dropped. A pedestrian with ``conf`` 0 or
visibility below ``min_visibility`` is an ignore region too. Boxes are clipped to the frame.

Sequence size, first found: ``im_size``; ``seqinfo.ini``; the first image; the known size of a
motmetrics TUD sequence (640x480, from MOT15's seqinfo); else the box extents rounded up to a
multiple of 32 (documented guess: boxes may leave the frame, so it can be too large).
"""
from __future__ import annotations

import configparser
import importlib.util
import logging
import math
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from hode.data import limits
from hode.data.video import check_size, read_image, resize, target_size
from hode.errors import DataError, check
from hode.types import Detections, Frame

log = logging.getLogger(__name__)

MOTMETRICS = "motmetrics:"
KNOWN_SIZES = {"TUD-Campus": (640, 480), "TUD-Stadtmitte": (640, 480)}  # MOT15 seqinfo.ini
PEDESTRIAN = 1
DISTRACTORS = (2, 7, 8, 12)


MAX_INFERRED_SIDE = 16384  # px: a frame size inferred from boxes beyond this is a broken file


def motmetrics_data() -> Path:
    """The ``data/`` folder of the installed motmetrics package (found without importing it)."""
    spec = importlib.util.find_spec("motmetrics")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("dataset.path motmetrics:...: the motmetrics package is not installed")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def resolve(path: str) -> tuple[Path, Path]:
    """``(gt.txt, sequence folder)`` for a gt file, a sequence folder, or ``motmetrics:<name>``."""
    if path.startswith(MOTMETRICS):
        name = path[len(MOTMETRICS):]
        p = motmetrics_data() / name
        if not name or not (p / "gt.txt").is_file():
            known = sorted(d.name for d in motmetrics_data().iterdir() if (d / "gt.txt").is_file())
            raise DataError(f"dataset.path: motmetrics has no sequence '{name}' (available: {known})")
        return p / "gt.txt", p
    p = Path(path).expanduser()
    if p.is_file():
        return p, p.parent.parent if p.parent.name == "gt" else p.parent
    for gt in (p / "gt" / "gt.txt", p / "gt.txt"):
        if gt.is_file():
            return gt, p
    if p.is_dir():
        raise DataError(f"dataset.path: {p} holds neither gt/gt.txt nor gt.txt")
    raise DataError(f"dataset.path: no such file or folder: {p}")


def parse_gt(path: Path, layout: str = "auto") -> tuple[np.ndarray, str]:
    """Rows of ``frame, id, x, y, w, h, conf, class, vis`` (float64) and the layout found."""
    rows, ncols = [], None
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        try:
            vals = [float(v) for v in line.replace(" ", "").split(",")]
        except ValueError:
            raise DataError(f"{path}:{lineno}: not a comma-separated list of numbers: {line[:60]!r}") from None
        if len(vals) < 6:
            raise DataError(f"{path}:{lineno}: expected at least 6 columns (frame,id,x,y,w,h), got {len(vals)}")
        if not all(math.isfinite(v) for v in vals):
            raise DataError(f"{path}:{lineno}: not a finite number (nan or inf): {line[:60]!r}")
        ncols = ncols or len(vals)
        if layout == "mot15" or (layout == "auto" and ncols >= 10):
            vals = vals[:7] + [PEDESTRIAN, 1.0] if len(vals) >= 7 else vals[:6] + [1.0, PEDESTRIAN, 1.0]
        else:
            vals = (vals + [1.0, PEDESTRIAN, 1.0][len(vals) - 6:])[:9]
        if vals[0] < 1 or vals[0] != int(vals[0]):
            raise DataError(f"{path}:{lineno}: frame number must be an integer >= 1, got {vals[0]:g}")
        rows.append(vals)
    found = layout if layout != "auto" else ("mot15" if (ncols or 0) >= 10 else "mot16")
    return np.asarray(rows, np.float64).reshape(-1, 9), found


class MotSource:
    """``dataset=mot``: frames (or blank frames) of a MOT sequence with its ground-truth tracks."""

    gt_kind = "dataset"

    def __init__(self, path: str | None, layout: str = "auto", im_size: Sequence[int] | None = None,
                 images: str | None = None, width: int | None = None, height: int | None = None,
                 frames: int | None = None, min_visibility: float = 0.0) -> None:
        check(path not in (None, ""), "dataset.path is required: a MOT gt.txt, a sequence folder or motmetrics:<name>")
        check(layout in ("auto", "mot15", "mot16"), f"dataset.layout must be auto, mot15 or mot16, got {layout!r}")
        check(im_size is None or (len(im_size) == 2 and all(isinstance(v, int) and v > 0 for v in im_size)),
              f"dataset.im_size must be null or [width, height], got {im_size!r}")
        check(frames is None or (isinstance(frames, int) and frames > 0), f"dataset.frames must be null or a positive integer, got {frames!r}")
        check(0.0 <= min_visibility <= 1.0, f"dataset.min_visibility must be in [0, 1], got {min_visibility!r}")
        check_size(width, height)
        self.gt_path, self.folder = resolve(str(path))
        self.name = self.folder.name
        self.rows, self.layout = parse_gt(self.gt_path, layout)
        self.min_visibility = min_visibility
        self.skipped: dict[str, str] = {}
        info = self._seqinfo()
        im_dir = Path(images).expanduser() if images else self.folder / info.get("imdir", "img1")
        self.im_ext = info.get("imext", ".jpg")
        self.images = im_dir if im_dir.is_dir() else None
        if images and self.images is None:
            raise DataError(f"dataset.images: no such folder: {im_dir}")
        self.blank = self.images is None
        self.native, self.size_from = self._native_size(im_size, info)
        self.size = target_size(self.native, width, height)
        limits.check_pixels(self.size, f"{self.name}: the frames yielded")
        last = int(self.rows[:, 0].max()) if len(self.rows) else 0
        # one broken row (frame 999999999) would otherwise make a billion-frame run
        limits.check_frames(last, f"{self.gt_path}: the largest frame number")
        if len(self.rows):
            per_frame = np.bincount(self.rows[:, 0].astype(np.int64))
            limits.check_boxes(int(per_frame.max()), f"{self.gt_path}: frame {int(per_frame.argmax())}")
        self.length = int(info["seqlength"]) if "seqlength" in info else last
        limits.check_frames(self.length, f"{self.folder / 'seqinfo.ini'}: seqLength")
        if self.length <= 0:
            raise DataError(f"{self.gt_path}: no ground-truth rows and no seqLength in seqinfo.ini")
        self.fps = float(info.get("framerate", 30))
        self.frames = min(frames, self.length) if frames else self.length
        if self.blank:
            log.warning("%s: no images, yielding blank %dx%d frames with ground truth (size %s): "
                        "for the flow filter, not for detector accuracy",
                     self.name, *self.size, self.size_from)

    def __len__(self) -> int:
        return self.frames

    def _seqinfo(self) -> dict[str, str]:
        ini = self.folder / "seqinfo.ini"
        if not ini.is_file():
            return {}
        cp = configparser.ConfigParser()
        try:
            cp.read(ini)
            return {k.lower(): v for k, v in cp["Sequence"].items()}
        except (configparser.Error, KeyError) as e:
            raise DataError(f"{ini}: not a MOT seqinfo.ini with a [Sequence] section ({type(e).__name__})") from None

    def _native_size(self, im_size, info: dict[str, str]) -> tuple[tuple[int, int], str]:
        if im_size:
            return (int(im_size[0]), int(im_size[1])), "dataset.im_size"
        if "imwidth" in info and "imheight" in info:
            return (int(info["imwidth"]), int(info["imheight"])), "seqinfo.ini"
        if self.images is not None:
            first = self._image_path(1)
            size = limits.check_image_file(first, f"{first}") if first.is_file() else None
            if size is not None:  # from the header, nothing decoded
                return size, "first image"
            image, why = read_image(first)
            if image is None:
                raise DataError(f"{first}: {why} (needed for the sequence size; or set dataset.im_size)")
            return (image.shape[1], image.shape[0]), "first image"
        if self.name in KNOWN_SIZES and self.gt_path.parent.parent == motmetrics_data():
            return KNOWN_SIZES[self.name], "known size of the MOT15 sequence"
        if not len(self.rows):
            raise DataError(f"{self.gt_path}: cannot infer the frame size without boxes; set dataset.im_size")
        x2 = (self.rows[:, 2] + self.rows[:, 4]).max()
        y2 = (self.rows[:, 3] + self.rows[:, 5]).max()
        if max(x2, y2) > MAX_INFERRED_SIDE:  # one wrong box must not make a gigantic blank frame
            raise DataError(f"{self.gt_path}: box extents reach {x2:g}x{y2:g} px, beyond {MAX_INFERRED_SIDE} px a "
                            "side: a box is wrong, or set dataset.im_size")
        return (int(math.ceil(x2 / 32) * 32), int(math.ceil(y2 / 32) * 32)), "inferred from box extents"

    def _image_path(self, frame_no: int) -> Path:
        return self.images / f"{frame_no:06d}{self.im_ext}"  # type: ignore[operator]

    def ground_truth(self, frame_no: int) -> Detections:
        """Ground truth of MOT frame ``frame_no`` (1-based) in pixels of the yielded frame size."""
        r = self.rows[self.rows[:, 0] == frame_no]
        cls, conf, vis = r[:, 7].astype(int), r[:, 6], r[:, 8]
        ped = cls == PEDESTRIAN
        keep = ped | np.isin(cls, DISTRACTORS)
        ignore = ~ped | (conf == 0) | (vis < self.min_visibility)
        r, ignore = r[keep], ignore[keep]
        W, H = self.native
        boxes = np.stack([r[:, 2], r[:, 3], r[:, 2] + r[:, 4], r[:, 3] + r[:, 5]], 1)
        boxes = np.clip(boxes, 0, [W, H, W, H])
        ok = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])  # wholly outside the frame: gone
        sx, sy = self.size[0] / W, self.size[1] / H
        boxes = (boxes[ok] * [sx, sy, sx, sy]).astype(np.float32)
        return Detections(boxes, np.ones(len(boxes), np.float32), ids=r[ok, 1].astype(np.int64), ignore=ignore[ok])

    def gt_frames(self) -> Iterator[Detections]:
        """Ground truth of every selected frame, without images (cheap, for filter training)."""
        for k in range(self.frames):
            yield self.ground_truth(k + 1)

    def __iter__(self) -> Iterator[Frame]:
        for k in range(self.frames):
            if self.blank:
                image = np.zeros((self.size[1], self.size[0], 3), np.uint8)
            else:
                p = self._image_path(k + 1)
                image, why = read_image(p)
                if image is None:
                    if p.name not in self.skipped:
                        log.warning("skipped %s: %s", p.name, why)
                    self.skipped[p.name] = why
                    continue
                image = resize(image, self.size)
            yield Frame(k, image, self.ground_truth(k + 1))
