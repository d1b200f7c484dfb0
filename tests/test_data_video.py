"""dataset=video: video files and frame folders, golden labels, and every kind of bad input.

The only real pedestrian imagery available offline is the photo ``bus.jpg`` shipped inside the
ultralytics package (four people on a street); the test video pans across it. It is a still photo
with camera motion, not real surveillance footage.
"""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from hode.config import build
from hode.data.video import VideoSource, golden_option, natural_key
from hode.errors import ConfigError, DataError

from support.media import bus_pan, write_video
from support.run import run_py


@pytest.fixture(scope="module")
def bus_mp4(tmp_path_factory) -> Path:
    return write_video(tmp_path_factory.mktemp("video") / "bus.mp4", bus_pan(6))


def test_natural_sort_and_resize(tmp_path):
    for i in (10, 2, 1):
        cv2.imwrite(str(tmp_path / f"frame{i}.png"), np.full((48, 64, 3), i, np.uint8))
    (tmp_path / "notes.txt").write_text("not a frame")
    assert sorted(["frame10", "frame2"], key=natural_key) == ["frame2", "frame10"]
    src = VideoSource(str(tmp_path), golden=False)
    frames = list(src)
    assert [int(f.image[0, 0, 0]) for f in frames] == [1, 2, 10] and len(src) == 3
    assert all(f.gt is None for f in frames) and src.gt_kind is None
    assert next(iter(VideoSource(str(tmp_path), width=128, height=64, golden=False))).image.shape == (64, 128, 3)
    assert next(iter(VideoSource(str(tmp_path), width=32, golden=False))).image.shape == (24, 32, 3)
    sel = VideoSource(str(tmp_path), start=1, every=1, frames=1, golden=False)
    assert [int(f.image[0, 0, 0]) for f in sel] == [2]


def test_video_file_frames(bus_mp4):
    src = VideoSource(str(bus_mp4), golden=False, width=320, height=240, every=2)
    frames = list(src)
    assert len(src) == len(frames) == 3 and frames[0].image.shape == (240, 320, 3)
    assert src.skipped == {}


@pytest.mark.slow
def test_golden_labels_are_the_golden_configuration_and_cached(tmp_path, bus_mp4):
    cache = tmp_path / "cache"
    kw = dict(golden_detector="yolo11n", golden_imgsz=320, golden_cache=str(cache), frames=2)
    src = VideoSource(str(bus_mp4), **kw)
    assert src.gt_kind == "golden"
    src.prepare()
    frames = list(src)
    from hode.config import load_option

    from hode.detect.factory import local_weights

    from omegaconf import OmegaConf

    det = build(OmegaConf.merge(local_weights(load_option("detector", "yolo11n")), {"imgsz": 320}))
    for f in frames:
        ref = det.predict([f.image])[0]
        np.testing.assert_allclose(f.gt.boxes, ref.boxes, atol=1e-3)
    assert sum(len(f.gt) for f in frames) >= 2  # real people found in the real photo
    files = list(cache.glob("*.npz"))
    assert len(files) == 1
    # A second source with the same settings reads the cache instead of running the detector.
    np.savez(files[0], **{f"k{k}": np.array([[1, 2, 3, 4]], np.float32) for k in range(2)})
    again = VideoSource(str(bus_mp4), **kw)
    again.prepare()
    assert [f.gt.boxes.tolist() for f in again] == [[[1, 2, 3, 4]]] * 2
    # Other settings (another size) are another cache entry.
    other = VideoSource(str(bus_mp4), **{**kw, "frames": 1})
    other.prepare()
    assert len(list(cache.glob("*.npz"))) == 2


@pytest.mark.slow
def test_lazy_golden_without_prepare(bus_mp4):
    src = VideoSource(str(bus_mp4), golden_detector="yolo11n", golden_imgsz=320, frames=1, golden_cache=None)
    f = next(iter(src))
    assert f.gt is not None and f.gt.ignore is not None and len(f.gt) == len(f.gt.ignore)


def test_golden_option_is_the_largest_of_the_family():
    assert golden_option("auto", "yolov5n") == "yolov5m"
    assert golden_option("yolov5s", "yolov5n") == "yolov5s"


def test_missing_empty_and_unopenable(tmp_path):
    with pytest.raises(DataError, match=f"no such file or folder: {tmp_path / 'nope.mp4'}"):
        VideoSource(str(tmp_path / "nope.mp4"))
    with pytest.raises(ConfigError, match="dataset.path is required"):
        VideoSource(None)
    with pytest.raises(DataError, match="holds no image files"):
        VideoSource(str(tmp_path))
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(os.urandom(4096))
    with pytest.raises(DataError, match="OpenCV cannot open .*bad.mp4"):
        VideoSource(str(bad))


def test_truncated_video_is_reported(tmp_path):
    frames = bus_pan(12, (320, 240))
    full = write_video(tmp_path / "full.avi", frames, "MJPG")
    cut = tmp_path / "cut.avi"
    data = full.read_bytes()
    cut.write_bytes(data[: len(data) // 2])  # cut mid-way: the index at the end is gone too
    src = VideoSource(str(cut), golden=False)
    assert len(src) == 12  # the header still announces all of them
    got = list(src)
    assert 0 < len(got) < 12
    assert src.skipped == {"cut.avi": f"stream ended after {len(got)} of 12 frames its header announces "
                                      "(truncated or damaged file)"}
    mp4 = write_video(tmp_path / "full.mp4", frames)
    half = tmp_path / "half.mp4"
    half.write_bytes(mp4.read_bytes()[: mp4.stat().st_size // 2])
    with pytest.raises(DataError, match="half.mp4"):  # mp4 keeps its index at the end: unopenable
        list(VideoSource(str(half), golden=False))


def test_mixed_sizes_corrupt_and_truncated_images(tmp_path):
    cv2.imwrite(str(tmp_path / "f1.png"), np.zeros((48, 64, 3), np.uint8))
    cv2.imwrite(str(tmp_path / "f2.png"), np.zeros((60, 80, 3), np.uint8))
    with pytest.raises(DataError, match=r"mixed frame sizes .*f1.png is 64x48 but f2.png is 80x60"):
        VideoSource(str(tmp_path), golden=False)
    assert [f.image.shape for f in VideoSource(str(tmp_path), width=64, height=48, golden=False)] == [(48, 64, 3)] * 2
    (tmp_path / "f2.png").unlink()
    (tmp_path / "f3.png").write_bytes(b"\x89PNG garbage")
    ok, jpg = cv2.imencode(".jpg", np.full((48, 64, 3), 128, np.uint8))
    (tmp_path / "f4.jpg").write_bytes(jpg.tobytes()[: len(jpg) // 2])  # header fine, data cut
    src = VideoSource(str(tmp_path), golden=False)
    frames = list(src)
    assert [f.index for f in frames] == [0]
    assert set(src.skipped) == {"f3.png", "f4.jpg"} and "truncated" in src.skipped["f4.jpg"]
    (tmp_path / "f1.png").unlink()
    (tmp_path / "f4.jpg").unlink()
    with pytest.raises(DataError, match="none of the 1 image files"):
        VideoSource(str(tmp_path), golden=False)


def test_config_option_instantiates(cfg_factory, bus_mp4):
    cfg = cfg_factory(["logger=none", "filter=none", "dataset=video", f"dataset.path={bus_mp4}", "detector=yolo11n"], small=False)
    src = build(cfg.dataset)
    assert isinstance(src, VideoSource) and src.run_detector == "yolo11n" and len(src) == 6


@pytest.mark.slow
def test_run_py_on_real_pedestrian_video_with_coco_detector(tmp_path, bus_mp4):
    """The acceptance command: a video, the COCO backend, accuracy against the golden output."""
    p, r = run_py(tmp_path / "run", "dataset=video", "filter=none", f"dataset.path={bus_mp4}", "dataset.frames=2",
                  "dataset.width=480", "dataset.height=360",
                  "detector=yolo11n", "topology=single", "runner=inline", "dataset.golden_cache=null", "logger=none",
                  "progress=false", env={"WANDB_MODE": "disabled"}, timeout=240)
    assert r["gt"] == "golden" and r["frames"] == 2 and r["fps"] > 0
    assert r["map50"] is not None and 0.0 <= r["map50"] <= 1.0
    assert r["nodes"][0]["model"] == "yolo11n" and r["nodes"][0]["items"] == 2  # 1 tile x 2 frames
