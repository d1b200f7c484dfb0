"""hode.data.export: any frame source to COCO JSON, MOT, PANDA and video, and its CLI."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from hode.config import ROOT
from hode.data.export import export, write_coco
from hode.data.video import VideoSource
from hode.errors import DataError


def test_coco_round_trip_through_pycocotools(tmp_path, small_frames):
    from pycocotools.coco import COCO

    path = write_coco(small_frames[:2], tmp_path)
    coco = COCO(str(path))
    assert len(coco.getImgIds()) == 2 and (tmp_path / coco.imgs[1]["file_name"]).is_file()
    anns = coco.loadAnns(coco.getAnnIds(imgIds=[1]))
    g = small_frames[0].gt
    assert len(anns) == len(g) and sum(a["iscrowd"] for a in anns) == int(g.ignore.sum())
    x, y, w, h = anns[0]["bbox"]
    np.testing.assert_allclose([x, y, x + w, y + h], g.boxes[0], atol=1e-3)
    assert anns[0]["track_id"] == int(g.ids[0])


def test_video_export_reads_back(tmp_path, small_frames):
    path = export(small_frames[:3], "video", tmp_path / "crowd.avi")
    frames = list(VideoSource(str(path), golden=False))
    assert len(frames) == 3 and frames[0].image.shape == small_frames[0].image.shape
    assert np.abs(frames[0].image.astype(int) - small_frames[0].image).mean() < 6  # MJPEG is lossy
    with pytest.raises(DataError, match="export format must be one of"):
        export(small_frames, "yaml", tmp_path)


@pytest.mark.slow
def test_cli_writes_panda_fixture(tmp_path):
    out = tmp_path / "panda"
    p = subprocess.run([sys.executable, "-m", "hode.data.export", "format=panda-image", f"out={out}",
                        "dataset.frames=2", "dataset.width=256", "dataset.height=192"],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-1500:]
    data = json.loads((out / "image_annos/person_bbox_train.json").read_text())
    assert len(data) == 2 and all(v["image size"] == {"width": 256, "height": 192} for v in data.values())
    bad = subprocess.run([sys.executable, "-m", "hode.data.export", "format=panda-image"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "usage:" in bad.stderr
