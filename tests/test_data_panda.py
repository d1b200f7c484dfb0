"""dataset=panda on PANDA-format fixtures written from synthetic frames (PANDA is not downloadable)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hode.config import build
from hode.data.export import write_panda_images, write_panda_video
from hode.data.panda import PandaSource
from hode.data.synthetic import SyntheticCrowd
from hode.errors import ConfigError, DataError

from support.run import run_py

W, H = 480, 270  # fixture size; the source resizes to 3840x2160 (8x)


@pytest.fixture(scope="module")
def synth():
    return list(SyntheticCrowd(width=W, height=H, frames=3, seed=5, far_height=10, near_height=60))


def _awkward(root: Path) -> Path:
    """Make the image annotations awkward the way real PANDA files are."""
    path = root / "image_annos/person_bbox_train.json"
    data = json.loads(path.read_text())
    first, second = sorted(data)[:2]
    objs = data[first]["objects list"]
    person = next(o for o in objs if o["category"] == "person")
    person["rects"]["full body"]["tl"]["x"] = -0.004  # slightly outside [0, 1]: clipped
    person["rects"]["full body"]["br"]["y"] = 1.003
    objs.append({"category": "fake person", "rect": {"tl": {"x": 0.1, "y": 0.1}, "br": {"x": 0.2, "y": 0.3}}})
    objs.append({"category": "crowd", "rect": {"tl": {"x": 0.5, "y": 0.5}, "br": {"x": 0.7, "y": 0.6}}})
    data[second]["objects list"] = []  # a frame without annotations
    path.write_text(json.dumps(data))
    return path


@pytest.fixture(scope="module")
def panda_root(tmp_path_factory, synth):
    root = tmp_path_factory.mktemp("panda")
    write_panda_images(synth, root, scene="01_Synthetic Square")  # scene folder name with a space
    write_panda_video(synth, root, seq="02_Synthetic Street")
    _awkward(root)
    return root


def test_image_annotations_give_pixel_boxes_at_4k(panda_root, synth):
    src = PandaSource(str(panda_root))
    frames = list(src)
    assert len(src) == len(frames) == 3
    f0, f1 = frames[0], frames[1]
    assert f0.image.shape == (2160, 3840, 3)
    g = synth[0].gt
    persons = f0.gt.select(~f0.gt.ignore)
    # every synthetic person (ignore ones included, written as "ignore" regions) plus 2 extra regions
    assert len(persons) == int((~g.ignore).sum())
    assert int(f0.gt.ignore.sum()) == int(g.ignore.sum()) + 2
    expect = g.boxes[~g.ignore] * (3840 / W)
    expect[0, 0], expect[0, 3] = 0.0, 2160.0  # the out-of-range corners, clipped to the frame
    np.testing.assert_allclose(persons.boxes, expect, atol=0.05)
    crowd = f0.gt.boxes[f0.gt.ignore][-1]
    np.testing.assert_allclose(crowd, [0.5 * 3840, 0.5 * 2160, 0.7 * 3840, 0.6 * 2160], atol=0.01)
    assert len(f1.gt) == 0 and f1.gt.ids is not None  # the frame without annotations
    assert len(frames[2].gt.select(~frames[2].gt.ignore)) == int((~synth[2].gt.ignore).sum())


def test_rect_choice_and_native_size(panda_root, synth):
    head = next(iter(PandaSource(str(panda_root), rect="head", width=None, height=None)))
    full = next(iter(PandaSource(str(panda_root), width=None, height=None)))
    assert head.image.shape == (H, W, 3)
    hp, fp = head.gt.boxes[~head.gt.ignore], full.gt.boxes[~full.gt.ignore]
    assert len(hp) == len(fp) and np.all(hp[:, 3] - hp[:, 1] < 0.2 * (fp[:, 3] - fp[:, 1]) + 0.01)


def test_video_annotations(panda_root, synth):
    src = PandaSource(str(panda_root), kind="video", width=960, height=540, frames=2)
    frames = list(src)
    assert len(frames) == 2 and frames[0].image.shape == (540, 960, 3)
    for f, s in zip(frames, synth):
        order = np.argsort(f.gt.ids)
        ref = np.argsort(s.gt.ids)
        np.testing.assert_array_equal(f.gt.ids[order], s.gt.ids[ref])
        np.testing.assert_allclose(f.gt.boxes[order], s.gt.boxes[ref] * 2, atol=0.05)
        np.testing.assert_array_equal(f.gt.ignore[order], s.gt.ignore[ref])  # serious_hide -> ignore


def test_video_occlusion_and_frame_ids(tmp_path, synth):
    write_panda_video(synth[:2], tmp_path, seq="s")
    tracks_path = tmp_path / "video_annos/s/tracks.json"
    tracks = json.loads(tracks_path.read_text())
    tracks[0]["frames"][0]["occlusion"] = "disappear"  # not there at all
    tracks_path.write_text(json.dumps(tracks))
    src = PandaSource(str(tmp_path), kind="video", width=None, height=None)
    first = next(iter(src))
    assert len(first.gt) == len(synth[0].gt) - 1 and tracks[0]["track id"] not in first.gt.ids
    tracks[0]["frames"][0]["frame id"] = 3
    tracks_path.write_text(json.dumps(tracks))
    with pytest.raises(DataError, match=r"'frame id' 3 outside 1..2"):
        PandaSource(str(tmp_path), kind="video")


def test_scenes_filter(panda_root):
    assert len(PandaSource(str(panda_root), scenes=["01_Synthetic Square"], frames=1)) == 1
    with pytest.raises(DataError, match="not in person_bbox_train.json"):
        PandaSource(str(panda_root), scenes=["nope"])
    assert len(PandaSource(str(panda_root), kind="video", scenes=["02_Synthetic Street"])) == 3


def _person(d, k):
    return next(o for o in d[k]["objects list"] if o["category"] == "person")


@pytest.mark.parametrize("mutate, message", [
    (lambda d, k: d[k].pop("objects list"), "missing key 'objects list'"),
    (lambda d, k: d[k].__setitem__("image size", {"width": "480", "height": 270}), "'width' must be int"),
    (lambda d, k: _person(d, k)["rects"].pop("full body"), "missing key 'full body'"),
    (lambda d, k: _person(d, k)["rects"]["full body"]["tl"].__setitem__("x", "0.1"), r"'x' must be int/float"),
    (lambda d, k: _person(d, k)["rects"]["full body"].pop("br"), "missing key 'br'"),
    (lambda d, k: d[k]["objects list"].__setitem__(0, {"rect": {}}), "missing key 'category'"),
    (lambda d, k: d[k].__setitem__("objects list", {"a": 1}), "'objects list' must be list"),
])
def test_bad_image_annotations(tmp_path, synth, mutate, message):
    path = write_panda_images(synth[:1], tmp_path)
    data = json.loads(path.read_text())
    mutate(data, next(iter(data)))
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match=message) as e:
        PandaSource(str(tmp_path))
    assert "\n" not in str(e.value) and "person_bbox_train.json" in str(e.value)


def test_bad_files_and_skips(tmp_path, synth):
    with pytest.raises(DataError, match=f"PANDA folder not found: {tmp_path / 'missing'}"):
        PandaSource(str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="dataset.root is required"):
        PandaSource(None)
    with pytest.raises(ConfigError, match="dataset.rect"):
        PandaSource(str(tmp_path), rect="torso")
    with pytest.raises(DataError, match="annotation file not found"):
        PandaSource(str(tmp_path))
    path = write_panda_images(synth[:2], tmp_path)
    text = path.read_text()
    path.write_text(text[: len(text) // 2])
    with pytest.raises(DataError, match="not valid JSON"):
        PandaSource(str(tmp_path))
    data = json.loads(text)
    key0, key1 = sorted(data)
    data[key0]["objects list"].append({"category": "person", "rects": {"full body": {
        "tl": {"x": 1.2, "y": 0.5}, "br": {"x": 1.4, "y": 0.6}}}})  # wholly outside: degenerate after clipping
    path.write_text(json.dumps(data))
    (tmp_path / "image_train" / key1).write_bytes(b"not a jpeg")
    src = PandaSource(str(tmp_path), width=None, height=None)
    frames = list(src)
    assert [f.index for f in frames] == [0]  # the corrupt image is skipped, not yielded
    assert len(frames[0].gt) == len(synth[0].gt)
    assert set(src.skipped) == {"annotations", key1}
    assert "1 degenerate boxes" in src.skipped["annotations"]


def test_config_option_instantiates(panda_root, cfg_factory):
    cfg = cfg_factory(["logger=none", "filter=none", "dataset=panda", f"dataset.root={panda_root}", "dataset.frames=1"], small=False)
    src = build(cfg.dataset)
    assert isinstance(src, PandaSource) and len(src) == 1 and (src.width, src.height) == (3840, 2160)


@pytest.mark.slow
def test_run_py_on_panda_fixture(panda_root, tmp_path):
    """The acceptance command, small: a 4K PANDA-format frame through the whole pipeline."""
    p, r = run_py(tmp_path / "run", "dataset=panda", "filter=none", f"dataset.root={panda_root}", "dataset.frames=1",
                  "topology=single", "detector=yolov5n", "detector.imgsz=320", "tiling.tile=1024", "logger=none",
                  "progress=false", env={"WANDB_MODE": "disabled"}, timeout=240)
    assert r["frames"] == 1 and r["gt"] == "dataset" and r["map50"] is not None
    assert r["tiles"]["total"] == 12  # 3 x 4 tiles of 1024 on 3840x2160: the frame really is 4K
    assert r["skipped_input"] == []
