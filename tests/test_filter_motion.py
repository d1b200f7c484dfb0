"""The motion guard: per-tile frame differencing that the latest result's boxes do not explain."""
from __future__ import annotations

import numpy as np
import pytest

from hode.errors import ConfigError
from hode.filter.guard import Safeguard
from hode.filter.motion import FrameChange, change_mask, thumbnail, unexplained_area


def frame(h=1024, w=2048, people=()):
    """A flat grey frame with bright rectangles (x0, y0, x1, y1)."""
    img = np.full((h, w, 3), 120, np.uint8)
    for x0, y0, x1, y1 in people:
        img[y0:y1, x0:x1] = (30, 200, 240)
    return img


def test_thumbnail_and_change_mask():
    a, b = frame(), frame(people=[(600, 100, 640, 200)])
    ta, tb = thumbnail(a, 4), thumbnail(b, 4)
    assert ta.shape == (256, 512) and ta.dtype == np.uint8
    m = change_mask(ta, tb, 25)
    ys, xs = np.nonzero(m)
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (150, 159, 25, 49)  # the rectangle, in samples
    assert not change_mask(ta, ta, 25).any()


def test_unexplained_area_per_cell_with_boxes_and_border_taken_out():
    m = np.zeros((256, 512), bool)  # a 1024x2048 frame at stride 4: 2x4 cells of 512
    m[25:50, 150:160] = True  # 250 samples = 4000 px, in cell (0, 1)
    m[200:256, 0:4] = True  # on the left edge of cell (1, 0)
    area = unexplained_area(m, None, 512, 4, (2, 4), explain=0, border=0)
    assert area[0, 1] == 4000 and area[1, 0] == 56 * 4 * 16 and area.sum() == 4000 + 56 * 4 * 16
    area = unexplained_area(m, None, 512, 4, (2, 4), explain=0, border=32)
    assert area[1, 0] == 0 and area[0, 1] == 4000  # the border band is ignored
    boxes = np.array([[600, 100, 640, 200]], np.float32)  # the last result saw someone there
    assert unexplained_area(m, boxes, 512, 4, (2, 4), explain=8, border=32).sum() == 0
    moved = np.array([[680, 100, 720, 200]], np.float32)  # someone else, 40 px away: not explained
    assert unexplained_area(m, moved, 512, 4, (2, 4), explain=8, border=32)[0, 1] == 4000


def test_frame_change_needs_a_previous_frame_of_the_same_size():
    meter = FrameChange(stride=4, delta=25)
    assert meter(frame()) is None
    assert not meter(frame()).any()
    assert meter(frame(people=[(600, 100, 640, 200)])).sum() == 250
    assert meter(frame(h=512)) is None  # another video size: nothing to compare
    with pytest.raises(ConfigError):
        meter(np.zeros((8, 8), np.float32))


@pytest.mark.parametrize("bad", [{"motion": -1}, {"motion": float("nan")}, {"motion": True},
                                 {"motion": 64, "motion_stride": 0}, {"motion": 64, "motion_delta": 300},
                                 {"motion": 64, "motion_border": "wide"}, {"motion": 64, "motion_explain": -3}])
def test_bad_motion_settings_are_one_line_config_errors(bad):
    with pytest.raises(ConfigError, match="filter.guard.motion"):
        Safeguard(**bad)


def test_the_guard_keeps_a_walk_in_and_not_a_pedestrian_it_already_sees():
    g = Safeguard(motion=64)
    assert g.wants_boxes and "motion_border=32" in g.describe()
    nobody = np.zeros((2, 4), bool)
    g.see(frame(), 512)
    assert not g.apply(nobody, np.zeros((0, 2, 4))).any()  # first frame: nothing to compare
    g.see(frame(people=[(600, 100, 640, 200)]), 512)  # someone appears in cell (0, 1)
    keep = g.apply(nobody, np.zeros((1, 2, 4)))
    assert keep[0, 1] and keep.sum() == 1
    g.observe_boxes(np.array([[600, 100, 640, 200]], np.float32))  # ... and is detected there
    g.see(frame(people=[(604, 100, 644, 200)]), 512)  # a step to the right: explained
    assert not g.apply(nobody, np.zeros((1, 2, 4))).any()
    g.see(frame(people=[(604, 100, 644, 200), (1200, 700, 1240, 800)]), 512)  # a second one walks in
    keep = g.apply(nobody, np.zeros((1, 2, 4)))
    assert keep[1, 2] and keep.sum() == 1
    assert not g.apply(nobody, np.zeros((1, 2, 4))).any()  # a change serves its own frame only


@pytest.mark.slow
def test_closed_loop_with_rendered_frames_recovers_the_walk_ins_comp1_misses(tmp_path, monkeypatch):
    """Real synthetic frames (small): Comp-1 alone blinds itself; with the motion guard its recall
    rises, and the change masks are rendered once and then read from the cache."""
    import hode.filter.motion as motion
    from hode.data.synthetic import SyntheticCrowd
    from hode.filter.baselines import CompFilter
    from hode.filter.evaluate import evaluate
    from hode.filter.tracks import from_source
    from hode.tiling import Tiler

    seq = from_source(SyntheticCrowd(width=1536, height=1024, frames=120, seed=1013))
    tiler = Tiler(tile=256, pad=(48, 24))
    real = motion.cached_change_masks
    monkeypatch.setattr("hode.filter.evaluate.cached_change_masks",
                        lambda src, stride, delta: real(src, stride, delta, cache_dir=tmp_path))
    plain = evaluate(CompFilter(lag=1), [seq], tiler, closed=True)
    guarded = evaluate(CompFilter(lag=1, guard={"motion": 64}), [seq], tiler, closed=True)
    assert plain["recall"] < 0.99 and guarded["recall"] > plain["recall"] + 0.02
    cached = list(tmp_path.glob("*.npz"))
    assert len(cached) == 1
    stamp = cached[0].stat().st_mtime_ns
    again = evaluate(CompFilter(lag=1, guard={"motion": 64}), [seq], tiler, closed=True)
    timing = ("latency_ms", "pixel_ms")
    assert {k: v for k, v in again.items() if k not in timing} == {k: v for k, v in guarded.items() if k not in timing}
    assert cached[0].stat().st_mtime_ns == stamp  # read back, not rendered again


def test_a_track_only_sequence_cannot_be_evaluated_with_the_motion_guard():
    from hode.errors import DataError
    from hode.filter.baselines import CompFilter
    from hode.filter.evaluate import evaluate
    from hode.filter.tracks import TrackSequence
    from hode.tiling import Tiler

    seq = TrackSequence("tracks", 1024, 512, [np.zeros((0, 4), np.float32)] * 3)
    with pytest.raises(DataError, match="needs the frames' pixels"):
        evaluate(CompFilter(lag=1, guard={"motion": 64}), [seq], Tiler(tile=256, pad=(48, 24)), closed=True)
