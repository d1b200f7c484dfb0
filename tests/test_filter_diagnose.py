"""The closed-loop error breakdown and the appearance bound on a hand-made 1x3-tile sequence."""
import numpy as np

from hode.filter.diagnose import appearance_bound, error_breakdown
from hode.filter.tracks import TrackSequence


def _box(cx: float) -> list[float]:
    return [cx - 20, 200, cx + 20, 300]


def _walk_and_appear() -> TrackSequence:
    """Person 1 stands in tile 0 for frames 0-4, then in tile 1; person 2 appears in tile 2 at frame 7."""
    boxes, ids = [], []
    for t in range(10):
        b, i = [_box(250 if t < 5 else 700)], [1]
        if t >= 7:
            b.append(_box(1300))
            i.append(2)
        boxes.append(np.array(b, np.float32))
        ids.append(np.array(i, np.int64))
    return TrackSequence("hand", 1536, 512, boxes, ids)


def test_false_skips_are_split_into_blind_crossed_and_appeared():
    seq = _walk_and_appear()
    skip_all = np.zeros((10, 1, 3), bool)
    d = error_breakdown([skip_all], [seq], tile=512, warmup=1)
    assert d["false_skip_causes"] == {"appeared": 1, "crossed": 1, "blind": 10, "mixed": 0}
    assert d["false_skips"] == 12 and d["false_keeps"] == 0
    assert d["false_skips_by_col"] == [4, 5, 3]


def test_false_keeps_are_split_by_cause():
    seq = _walk_and_appear()
    keep_all = np.ones((10, 1, 3), bool)
    d = error_breakdown([keep_all], [seq], tile=512, warmup=1)
    assert d["false_skips"] == 0
    # tile 0 empty at 5-9: departed at 5, then next to tile 1; tile 1 empty at 1-4 next to tile 0;
    # tile 2 empty at 1-6: isolated at 1-5, next to tile 1 at 6
    assert d["false_keep_causes"] == {"departed": 1, "next_to_occupied": 9, "isolated": 5}
    assert d["false_keeps_by_col"] == [5, 4, 6]


def test_without_track_ids_only_counts_are_given():
    seq = _walk_and_appear()
    seq.ids = None
    d = error_breakdown([np.zeros((10, 1, 3), bool)], [seq], tile=512, warmup=1)
    assert "false_skip_causes" not in d and d["false_skips"] == 12
    assert "error" in appearance_bound([seq], tile=512)


def test_appearance_bound_counts_only_births_no_history_announces():
    b = appearance_bound([_walk_and_appear()], tile=512, target_recall=0.5, warmup=1)
    assert b["births"] == 2 and b["appearance_births"] == 1
    assert b["appearance_births_by_cell"] == [[0, 0, 1]]
    best = b["oracle_probing_best_accuracy"]
    assert 0.0 < best["accuracy"] < 1.0 and best["false_skips"] >= 1  # the crossing is missed once
    assert "accuracy" in b["oracle_probing_at_target_recall"]
