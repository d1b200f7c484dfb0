"""The non-learned filters and the safeguards, on hand-made count sequences."""
from __future__ import annotations

import numpy as np
import pytest

from hode.errors import ConfigError, DataError
from hode.filter.base import FlowFilter, KeepAll
from hode.filter.baselines import CompFilter, OracleFilter
from hode.filter.evaluate import evaluate, ideal_detect, run_loop, tile_scores
from hode.filter.guard import Guarded, Safeguard, dilate
from hode.filter.tracks import TrackSequence, split_blocks, windows
from hode.tiling import Tiler


def seq(*frames):
    """A (T, 2, 3) count history from nested lists."""
    return np.array(frames, np.float32)


A = [[0, 1, 0], [0, 0, 0]]
B = [[0, 0, 0], [2, 0, 0]]
C = [[0, 0, 3], [0, 0, 0]]


def test_comp_i_skips_tiles_empty_at_t_minus_i():
    h = seq(A, B, C)  # oldest first: t-3 = A, t-2 = B, t-1 = C
    assert (CompFilter(1)(h) == (np.array(C) > 0)).all()
    assert (CompFilter(2)(h) == (np.array(B) > 0)).all()
    assert (CompFilter(3)(h) == (np.array(A) > 0)).all()


def test_comp_i_keeps_everything_until_history_reaches_back():
    assert CompFilter(3)(seq(A, B)).all()
    assert CompFilter(1)(np.zeros((0, 2, 3), np.float32)).all()
    assert CompFilter(2).name == "comp2"


def test_comp_lag_must_be_positive():
    with pytest.raises(ConfigError, match="lag"):
        CompFilter(0)


def test_oracle_is_the_truth_and_refuses_without_it():
    truth = np.array(B, np.float32)
    assert (OracleFilter()(seq(A), truth) == (truth > 0)).all()
    with pytest.raises(DataError, match="ground truth"):
        OracleFilter()(seq(A), None)


def test_keep_all_and_protocol():
    assert KeepAll()(seq(A)).all() and KeepAll()(seq(A)).shape == (2, 3)
    for f in (KeepAll(), CompFilter(1), OracleFilter(), Guarded(KeepAll())):
        assert isinstance(f, FlowFilter)


def test_refresh_keeps_every_tile_every_n_frames():
    f = CompFilter(1, guard={"refresh_every": 3})
    h = seq(np.zeros((2, 3)))
    masks = [f(h).all() for _ in range(7)]
    assert masks == [False, False, True, False, False, True, False]
    f.reset()
    assert [f(h).all() for _ in range(3)] == [False, False, True]


def test_keep_alive_and_dilation():
    h = seq(A, np.zeros((2, 3)))
    assert not CompFilter(1)(h).any()
    alive = CompFilter(1, guard={"keep_alive": 2})(h)
    assert (alive == (np.array(A) > 0)).all()
    grown = CompFilter(1, guard={"dilate": 1})(seq(B))
    assert (grown == np.array([[1, 1, 0], [1, 1, 0]], bool)).all()
    point = np.zeros((3, 4), bool)
    point[0, 0] = True
    assert (dilate(point, 1) == np.array([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0]], bool)).all()
    assert dilate(point, 3).all() and not dilate(point, 0)[1, 1]


def test_guard_settings_are_checked():
    with pytest.raises(ConfigError, match="refresh_every"):
        Safeguard(refresh_every=-1)
    with pytest.raises(ConfigError, match="guard"):
        CompFilter(1, guard=[1, 2])


def test_guarded_wraps_any_filter():
    class Nothing:
        name = "nothing"

        def __call__(self, history, truth=None):
            return np.zeros(history.shape[1:], bool)

    f = Guarded(Nothing(), {"refresh_every": 2})
    assert f.name == "nothing"
    assert [f(seq(A)).all() for _ in range(4)] == [False, True, False, True]


def test_ideal_detector_sees_whole_boxes_in_padded_crops_and_owned_centres():
    windows = np.array([[0, 0, 120, 120]], np.float32)
    cores = np.array([[0, 0, 100, 100]], np.float32)
    boxes = np.array([[90, 10, 115, 40],    # centre outside the core, wholly in the padded crop: seen
                      [95, 10, 130, 40],    # cut by the crop border, centre outside the core: dropped
                      [70, 60, 125, 90],    # cut, but its centre is in the core: kept (merge keeps it)
                      [200, 200, 220, 240]], np.float32)
    assert ideal_detect(boxes, windows, cores).tolist() == [True, False, True, False]
    assert ideal_detect(boxes, windows[:0], cores[:0]).tolist() == [False] * 4


def test_tile_scores():
    keep = np.array([[1, 1, 0, 0]], bool)
    truth = np.array([[1, 0, 1, 0]], bool)
    s = tile_scores(keep, truth)
    assert (s["accuracy"], s["precision"], s["recall"], s["skipped"], s["missed"]) == (0.5, 0.5, 0.5, 0.5, 1)


def walker(frames: int = 60) -> TrackSequence:
    """One person entering a 1024x512 frame at the right edge and walking left (two 512 tiles).

    Nobody else is in the scene: Comp-1 skips the right tile from the start, so in the closed loop
    it never sees the walker; a refresh every 10 frames finds them and Comp-1 then follows.
    """
    boxes = []
    for t in range(frames):
        x = 1000 - 8 * t
        boxes.append(np.array([[x, 300, x + 40, 400]], np.float32) if t >= 8 else np.zeros((0, 4), np.float32))
    return TrackSequence("walker", 1024, 512, boxes)


def test_closed_loop_trap_and_refresh():
    tiler = Tiler(tile=512, pad=(64, 32))
    s = walker()
    blind = run_loop(CompFilter(1), s, tiler, closed=True)
    assert not (blind.keep & blind.truth)[8:].any(), "Comp-1 should never see the walker in the closed loop"
    # open loop it only misses the frame the walker appears
    assert evaluate(CompFilter(1), [s], tiler, closed=False)["missed"] == 1
    guarded = run_loop(CompFilter(1, guard={"refresh_every": 10}), s, tiler, closed=True)
    seen = np.nonzero((guarded.keep & guarded.truth).any((1, 2)))[0]
    assert seen[0] == 9  # the first refresh frame
    assert (guarded.keep & guarded.truth)[9:].sum() == guarded.truth[9:].sum()  # followed from then on
    assert evaluate(OracleFilter(), [s], tiler, closed=True)["recall"] == 1.0


def test_split_blocks_are_disjoint_and_in_ratio():
    s = TrackSequence("x", 64, 64, [np.zeros((0, 4), np.float32)] * 50)
    parts = split_blocks(s)
    assert [len(p) for p in parts] == [30, 10, 10]
    x, y = windows(np.arange(7 * 2, dtype=np.float32).reshape(7, 1, 2), 5)
    assert x.shape == (2, 5, 1, 2) and y.shape == (2, 1, 2)
    assert (x[1, -1] == [[10, 11]]).all() and (y[1] == [[1, 1]]).all()
