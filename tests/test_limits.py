"""Bounds on one input (hode/data/limits.py) and inputs that are not files: each is one ``error:``
line and exit 2, read from headers before anything is decoded or allocated; never a hang."""
from __future__ import annotations

import json
import os

import pytest

from hode.data import limits
from hode.data.export import write_panda_images
from hode.data.mot import MotSource
from hode.data.panda import PandaSource
from hode.data.synthetic import SyntheticCrowd
from hode.errors import DataError

from support.media import png_header
from support.run import error_lines, run_py


@pytest.fixture(autouse=True)
def default_limits():
    limits.configure(None)
    yield
    limits.configure(None)


def run_cli(argv: list[str], tmp_path, timeout: float = 120) -> tuple[int, list[str]]:
    base = ["logger=none", "runner=inline", "filter=none", "progress=false"]
    out, _ = run_py(tmp_path / "run", *argv, *base, expect_rc=None, timeout=timeout)
    return out.returncode, error_lines(out)


def assert_one_error(rc: int, lines: list[str], *parts: str) -> None:
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("error: "), (rc, lines[-5:])
    for part in parts:
        assert part in lines[0], lines[0]


@pytest.mark.slow
@pytest.mark.parametrize("where", ["file", "folder"])
def test_huge_png_is_refused_from_its_header_alike_as_file_or_folder(tmp_path, where):
    """A PNG claiming 20000x12000 (240 MP): as dataset.path itself or inside a folder, one line."""
    folder = tmp_path / "frames"
    folder.mkdir()
    png = folder / "big.png"
    png.write_bytes(png_header(20000, 12000))
    path = png if where == "file" else folder
    rc, lines = run_cli(["dataset=video", f"dataset.path={path}", "dataset.golden=false"], tmp_path)
    assert_one_error(rc, lines, "big.png is 20000x12000 = 240.0 MP, above the limit of 100.0 MP per frame")


def test_huge_resize_target_is_refused(tmp_path):
    rc, lines = run_cli(["dataset.width=60000", "dataset.height=60000"], tmp_path)
    assert_one_error(rc, lines, "60000x60000 = 3600.0 MP, above the limit", "limits.max_pixels")


def test_the_limit_is_configurable(tmp_path):
    with pytest.raises(Exception, match="above the limit of 0.5 MP"):
        limits.configure({"max_pixels": 500_000})
        SyntheticCrowd(width=1024, height=768, frames=1)


@pytest.mark.slow
def test_named_pipe_as_dataset_path_is_refused_not_read(tmp_path):
    fifo = tmp_path / "pipe.mp4"
    os.mkfifo(fifo)
    rc, lines = run_cli(["dataset=video", f"dataset.path={fifo}"], tmp_path, timeout=120)
    assert_one_error(rc, lines, f"{fifo} is not a regular file or folder")


@pytest.mark.slow
@pytest.mark.parametrize("url", ["http://example.com/cam/clip.mp4", "rtsp://10.0.0.5:554/stream1"])
def test_url_as_dataset_path_is_shown_intact(tmp_path, url):
    rc, lines = run_cli(["dataset=video", f"dataset.path={url}"], tmp_path)
    assert_one_error(rc, lines, f"URLs are not read ({url})")


def test_mot_row_with_a_huge_frame_number_is_refused(tmp_path):
    (tmp_path / "gt.txt").write_text("1,1,10,20,30,60,1,1,1\n999999999,1,10,20,30,60,1,1,1\n")
    with pytest.raises(DataError, match="the largest frame number is 999999999, beyond the limit of 1000000"):
        MotSource(str(tmp_path / "gt.txt"), im_size=[640, 480])


def test_mot_frame_with_too_many_boxes_is_refused(tmp_path):
    limits.configure({"max_boxes": 50})
    (tmp_path / "gt.txt").write_text("".join(f"3,{i},10,20,30,60,1,1,1\n" for i in range(51)))
    with pytest.raises(DataError, match="frame 3: 51 boxes in one frame, above the limit of 50"):
        MotSource(str(tmp_path / "gt.txt"), im_size=[640, 480])


def test_panda_frame_with_too_many_boxes_is_refused(tmp_path):
    """The default limit is 10,000 boxes per frame; a 200,000-box frame kept the mAP step busy 12+ minutes."""
    frames = list(SyntheticCrowd(width=480, height=270, frames=1, seed=5, far_height=10, near_height=60))
    path = write_panda_images(frames, tmp_path)
    data = json.loads(path.read_text())
    entry = data[sorted(data)[0]]
    person = next(o for o in entry["objects list"] if o["category"] == "person")
    entry["objects list"] = [person] * (limits.get("max_boxes") + 1)
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match="10001 boxes in one frame, above the limit of 10000"):
        PandaSource(str(tmp_path), width=480, height=270)
