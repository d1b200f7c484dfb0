"""The hand-checked truth set on real footage (hode/data/truth/vtest) and the scorer (hode.score)."""
from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from hode import assets
from hode.errors import DataError
from hode.score import load_truth, score, truth_path

ROOT = Path(__file__).resolve().parents[1]
TRUTH = load_truth("vtest")
PEOPLE = [a for a in TRUTH["annotations"] if not a["iscrowd"]]
IGNORES = [a for a in TRUTH["annotations"] if a["iscrowd"]]
N = len(PEOPLE)
FRAMES = len(TRUTH["images"])


def perfect(score_: float = 1.0) -> list[dict]:
    return [dict(image_id=a["image_id"], category_id=1, bbox=list(a["bbox"]), score=score_) for a in PEOPLE]


# ----- the truth file ------------------------------------------------------------------------------

def test_truth_is_valid_coco():
    from pycocotools.coco import COCO

    c = COCO(str(truth_path("vtest")))
    assert c.getCatIds() == [1] and c.loadCats(1)[0]["name"] == "person"
    assert FRAMES >= 12 and N >= 60 and IGNORES
    ids = [im["id"] for im in TRUTH["images"]]
    assert len(set(ids)) == len(ids) and len({a["id"] for a in TRUTH["annotations"]}) == len(TRUTH["annotations"])
    for im in TRUTH["images"]:
        assert im["file_name"] == f"frame_{im['id']:06d}" and (im["width"], im["height"]) == (768, 576)
    for a in TRUTH["annotations"]:
        x, y, w, h = a["bbox"]
        assert a["category_id"] == 1 and a["iscrowd"] in (0, 1)
        assert 0 <= x and 0 <= y and x + w <= 768 and y + h <= 576 and w > 0 and h > 0
        assert a["area"] == pytest.approx(w * h, abs=0.2)
    assert max(ids) - min(ids) >= 700  # spread over the clip, not one moment


def test_truth_frames_match_the_footage():
    try:
        path = assets.fetch("vtest.avi")
    except assets.AssetError as e:
        if "cannot fetch" in str(e):  # only a missing network is a reason to skip
            pytest.skip(f"footage not fetchable here: {e}")
        raise
    cap = cv2.VideoCapture(str(path))
    wanted = {im["id"]: im for im in TRUTH["images"]}
    seen, n = {}, 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        if n in wanted:
            seen[n] = frame.shape[:2]
        n += 1
    assert n == 795
    assert set(seen) == set(wanted)
    for i, im in wanted.items():
        assert seen[i] == (im["height"], im["width"])


# ----- the scorer ----------------------------------------------------------------------------------

def test_truth_itself_scores_perfectly():
    r = score(perfect(), "vtest")
    assert (r["ap50"], r["recall"], r["max_recall"], r["fp"], r["fp_per_frame"]) == (1.0, 1.0, 1.0, 0, 0.0)
    assert (r["frames"], r["truth_boxes"], r["ignore_regions"]) == (FRAMES, N, len(IGNORES))


def test_dropped_box_is_a_miss():
    r = score(perfect()[1:], "vtest")
    assert r["recall"] == pytest.approx((N - 1) / N) and r["fp"] == 0
    # 101 recall points; the ones above (N-1)/N are unreachable and count 0
    reachable = sum(1 for k in range(101) if k / 100 <= (N - 1) / N + 1e-12)
    assert r["ap50"] == pytest.approx(reachable / 101)


def test_shifted_box_is_a_miss_and_a_false_positive():
    p = perfect()
    x, y, w, h = p[0]["bbox"]
    p[0] = dict(p[0], bbox=[x + w / 2, y, w, h], score=0.5)  # IoU 1/3
    r = score(p, "vtest")
    assert r["recall"] == pytest.approx((N - 1) / N) and r["fp"] == 1
    assert r["fp_per_frame"] == pytest.approx(1 / FRAMES)
    p[0] = dict(p[0], bbox=[x + w / 10, y, w, h])  # IoU 0.82: still a hit
    assert score(p, "vtest")["recall"] == 1.0


def test_extra_box_counts_only_above_conf():
    p = perfect() + [dict(image_id=PEOPLE[0]["image_id"], category_id=1, bbox=[700.0, 500.0, 30.0, 60.0], score=0.9)]
    r = score(p, "vtest")
    assert (r["recall"], r["fp"], r["ap50"]) == (1.0, 1, 1.0)  # ranked below every hit: AP unchanged
    p[-1]["score"] = 0.1
    assert score(p, "vtest")["fp"] == 0
    assert score(p, "vtest", conf=0.05)["fp"] == 1


def test_box_in_ignore_region_is_neither_hit_nor_false_positive():
    extra = [dict(image_id=a["image_id"], category_id=1, bbox=list(a["bbox"]), score=0.99) for a in IGNORES]
    r = score(perfect() + extra, "vtest")
    assert (r["ap50"], r["recall"], r["fp"]) == (1.0, 1.0, 0)


def test_other_frames_and_categories_are_left_out():
    p = perfect() + [dict(image_id=1, category_id=1, bbox=[0.0, 0.0, 50.0, 100.0], score=1.0),
                     dict(image_id=0, category_id=3, bbox=[600.0, 10.0, 50.0, 40.0], score=1.0)]
    r = score(p, "vtest")
    assert (r["predictions"], r["fp"], r["ap50"]) == (N, 0, 1.0)


def test_only_the_frames_a_run_covered_are_scored(tmp_path):
    first = [r for r in perfect() if r["image_id"] <= 180]
    n = sum(1 for r in first)
    r = score(first, "vtest", frames=range(0, 181))
    assert (r["frames"], r["truth_boxes"], r["recall"], r["ap50"]) == (4, n, 1.0, 1.0)
    (tmp_path / "predictions.json").write_text(json.dumps(first))
    (tmp_path / "results.json").write_text(json.dumps({"frames": 181, "config": {"dataset": {"start": 0, "every": 1}}}))
    assert score(tmp_path, "vtest")["recall"] == 1.0  # the run dir says it saw frames 0..180
    assert score(first, "vtest")["recall"] == pytest.approx(n / N)  # a list alone: every truth frame
    with pytest.raises(DataError, match="none of the truth frames"):
        score(first, "vtest", frames=[1, 2])


def test_no_predictions_scores_zero():
    r = score([], "vtest")
    assert (r["ap50"], r["recall"], r["fp"]) == (0.0, 0.0, 0)


def test_run_dir_and_its_conf(tmp_path):
    p = perfect(0.4)
    (tmp_path / "predictions.json").write_text(json.dumps(p))
    assert score(tmp_path, "vtest")["recall"] == 1.0  # default 0.25
    (tmp_path / "results.json").write_text(json.dumps({"config": {"detector": {"conf": 0.5}}}))
    r = score(tmp_path, "vtest")
    assert r["conf"] == 0.5 and r["recall"] == 0.0 and r["max_recall"] == 1.0
    assert score(tmp_path, str(truth_path("vtest")))["conf"] == 0.5  # truth by file works too


@pytest.mark.parametrize("bad, needle", [
    ([{"image_id": 0, "bbox": [1, 2, 3], "score": 1}], "not a COCO result"),
    ([{"image_id": "0", "bbox": [1, 2, 3, 4], "score": 1}], "not a COCO result"),
    ([{"image_id": 0, "bbox": [1, 2, 3, 4], "score": float("nan")}], "not a COCO result"),
    ([{"image_id": 0, "bbox": [1, 2, -3, 4], "score": 1}], "not a COCO result"),
    (["x"], "not a COCO result"),
])
def test_bad_predictions(bad, needle):
    with pytest.raises(DataError, match=needle):
        score(bad, "vtest")


def test_bad_truth_and_files(tmp_path):
    with pytest.raises(DataError, match="unknown truth set 'nope'"):
        score([], "nope")
    with pytest.raises(DataError, match="predictions file not found"):
        score(tmp_path / "none.json", "vtest")
    (tmp_path / "p.json").write_text("{not json")
    with pytest.raises(DataError, match="not readable JSON"):
        score(tmp_path / "p.json", "vtest")
    bad = copy.deepcopy(TRUTH)
    bad["annotations"][0]["image_id"] = 1
    (tmp_path / "t.json").write_text(json.dumps(bad))
    with pytest.raises(DataError, match="bad annotation"):
        score([], tmp_path / "t.json")
    with pytest.raises(DataError, match="iou"):
        score([], "vtest", iou=1.5)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hode.score", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


def test_cli(tmp_path):
    f = tmp_path / "predictions.json"
    f.write_text(json.dumps(perfect()[1:]))
    r = _cli(str(tmp_path), "--truth", "vtest")
    assert r.returncode == 0, r.stderr
    assert re.search(r"^AP50\s+0\.980$", r.stdout, re.M) and re.search(r"^FP/frame@conf0.25\s+0\.00$", r.stdout, re.M)
    j = json.loads(_cli(str(f), "--truth", "vtest", "--json").stdout)
    assert j["recall"] == pytest.approx((N - 1) / N) and j["frames"] == FRAMES
    for args in ((str(f), "--truth", "nope"), (str(tmp_path / "no.json"), "--truth", "vtest"), (str(f),),
                 (str(f), "--truth", "vtest", "--iou", "x")):
        r = _cli(*args)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), (args, r.stderr)
