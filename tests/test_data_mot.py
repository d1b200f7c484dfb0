"""dataset=mot: the real TUD tracks shipped in motmetrics, MOT16 columns, images, bad files."""
from __future__ import annotations

import numpy as np
import pytest

from hode.config import build
from hode.data.export import write_mot
from hode.data.mot import MotSource, motmetrics_data
from hode.data.synthetic import SyntheticCrowd
from hode.errors import ConfigError, DataError


def test_reads_real_tud_tracks():
    campus = MotSource("motmetrics:TUD-Campus")
    assert (len(campus), campus.size, campus.blank, campus.layout) == (71, (640, 480), True, "mot15")
    gts = list(campus.gt_frames())
    assert sum(len(g) for g in gts) == 359  # every row of TUD-Campus/gt.txt (none wholly outside)
    assert len(np.unique(np.concatenate([g.ids for g in gts]))) == 8
    first = gts[0]
    np.testing.assert_allclose(first.boxes[0], [399, 182, 520, 411])  # row "1,1,399,182,121,229,..."
    assert first.boxes[:, 2].max() <= 640 and first.boxes[:, 0].min() >= 0 and not first.ignore.any()
    city = MotSource("motmetrics:TUD-Stadtmitte", frames=20)
    frames = list(city)  # blank frames of the sequence size, with real tracks
    assert len(frames) == 20 and frames[0].image.shape == (480, 640, 3) and not frames[0].image.any()
    # MOT15's world coordinates in columns 8-10 are not mistaken for a class: everyone is a pedestrian
    assert all(len(f.gt) > 0 and not f.gt.ignore.any() for f in frames)
    # real motion: the same track moves a few pixels between consecutive frames
    a, b = frames[0].gt, frames[1].gt
    tid = int(a.ids[0])
    step = np.abs(a.boxes[a.ids == tid] - b.boxes[b.ids == tid]).max()
    assert 0 < step < 20


def test_mot16_classes_visibility_and_resize(tmp_path):
    (tmp_path / "gt").mkdir()
    (tmp_path / "gt" / "gt.txt").write_text(
        "1,1,10,20,30,60,1,1,1.0\n"     # pedestrian
        "1,2,50,20,30,60,0,1,1.0\n"     # pedestrian marked conf 0: ignore
        "1,3,90,20,30,60,1,7,1.0\n"     # static person: ignore
        "1,4,130,20,30,60,1,3,1.0\n"    # car: dropped
        "1,5,170,20,30,60,1,1,0.1\n"    # barely visible pedestrian
        "1,6,-50,20,40,60,1,1,1.0\n"    # wholly outside the frame: gone
        "3,1,12,20,30,60,1,1,1.0\n")
    (tmp_path / "seqinfo.ini").write_text("[Sequence]\nname=t\nimDir=img1\nframeRate=25\nseqLength=4\n"
                                          "imWidth=320\nimHeight=240\nimExt=.jpg\n")
    src = MotSource(str(tmp_path), min_visibility=0.2, width=640, height=480)
    assert (len(src), src.layout, src.size_from, src.fps) == (4, "mot16", "seqinfo.ini", 25.0)
    g = src.ground_truth(1)
    assert g.ids.tolist() == [1, 2, 3, 5] and g.ignore.tolist() == [False, True, True, True]
    np.testing.assert_allclose(g.boxes[0], [20, 40, 80, 160])  # 2x resize
    assert len(src.ground_truth(2)) == 0 and len(src.ground_truth(4)) == 0  # frames without tracks


def test_images_with_sequence_and_skips(tmp_path):
    frames = list(SyntheticCrowd(width=160, height=128, frames=3, seed=1, far_height=8, near_height=40))
    write_mot(frames, tmp_path, fps=10)
    (tmp_path / "img1" / "000002.jpg").write_bytes(b"broken")
    src = MotSource(str(tmp_path))
    got = list(src)
    assert not src.blank and [f.index for f in got] == [0, 2] and set(src.skipped) == {"000002.jpg"}
    assert got[0].image.shape == (128, 160, 3) and abs(int(got[0].image.mean()) - int(frames[0].image.mean())) < 3
    ref = frames[2].gt
    np.testing.assert_allclose(got[1].gt.boxes, ref.boxes, atol=0.01)
    np.testing.assert_array_equal(got[1].gt.ids, ref.ids)
    np.testing.assert_array_equal(got[1].gt.ignore, ref.ignore)


def test_size_inferred_from_boxes_without_seqinfo(tmp_path):
    gt = tmp_path / "gt.txt"
    gt.write_text("1,1,10,20,30,60,1,-1,-1,-1\n2,1,300,200,40,90,1,-1,-1,-1\n")
    src = MotSource(str(gt))
    assert src.size == (352, 320) and src.size_from == "inferred from box extents"
    assert MotSource(str(gt), im_size=[640, 480]).size == (640, 480)


@pytest.mark.parametrize("text, message", [
    ("1,1,10,20,30\n", "expected at least 6 columns"),
    ("1,1,10,abc,30,60,1,1,1\n", r"gt.txt:1: not a comma-separated list of numbers"),
    ("0,1,10,20,30,60,1,1,1\n", "frame number must be an integer >= 1"),
    ("", "cannot infer the frame size without boxes"),
])
def test_bad_gt_files(tmp_path, text, message):
    (tmp_path / "gt.txt").write_text(text)
    with pytest.raises(DataError, match=message):
        MotSource(str(tmp_path / "gt.txt"))


def test_bad_paths(tmp_path):
    with pytest.raises(DataError, match="motmetrics has no sequence 'MOT17-02'.*TUD-Campus"):
        MotSource("motmetrics:MOT17-02")
    with pytest.raises(DataError, match="holds neither gt/gt.txt nor gt.txt"):
        MotSource(str(tmp_path))
    with pytest.raises(DataError, match="no such file or folder"):
        MotSource(str(tmp_path / "x"))
    with pytest.raises(ConfigError, match="dataset.path is required"):
        MotSource(None)
    assert (motmetrics_data() / "TUD-Campus" / "gt.txt").is_file()


def test_config_option_instantiates(cfg_factory):
    cfg = cfg_factory(["logger=none", "filter=none", "dataset=mot", "dataset.frames=5"], small=False)
    src = build(cfg.dataset)
    assert isinstance(src, MotSource) and src.name == "TUD-Stadtmitte" and len(src) == 5
