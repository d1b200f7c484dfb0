"""Training on the user's own data, for real on CPU: fine-tuning the official COCO YOLO11n checkpoint
(``asset:yolo11n.pt``) on a COCO-format folder, a YOLO-format data.yaml and frames of a video, and the
flow filter on a video's golden labels with a held-out later stretch.

The only real pedestrian photos available offline are ultralytics' bundled ``bus.jpg`` (four people)
and ``zidane.jpg`` (two); their person boxes are set by hand here. Runs are tiny (one epoch, a handful
of crops at a small input size): they check the plumbing and the outputs, not the accuracy.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from hode.errors import DataError, HodeError

from support.config import compose_config
from support.run import run_py

BOXES = {  # hand-set person boxes, xyxy pixels (the fourth person of bus.jpg is cut by the frame edge)
    "bus.jpg": [(222, 406, 344, 856), (47, 396, 239, 903), (668, 390, 810, 877), (0, 554, 70, 873)],
    "zidane.jpg": [(721, 55, 1158, 710), (172, 203, 784, 716)],
}
TINY = ["task.epochs=1", "task.imgsz=160", "task.batch=4", "task.from=asset:yolo11n.pt", "progress=false"]


def photo(name: str) -> np.ndarray:
    import ultralytics

    path = Path(ultralytics.__file__).parent / "assets" / name
    if not path.is_file():
        pytest.skip(f"ultralytics ships no assets/{name} in this version")
    return cv2.imread(str(path))


def write_coco(folder: Path) -> Path:
    """A COCO-format dataset: images/ and instances.json (a car category too, which is dropped)."""
    (folder / "images").mkdir(parents=True)
    doc = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}]}
    for i, name in enumerate(("zidane.jpg", "bus.jpg"), 1):  # bus.jpg, the last, validates
        boxes = BOXES[name]
        img = photo(name)
        cv2.imwrite(str(folder / "images" / name), img)
        doc["images"].append({"id": i, "file_name": f"images/{name}", "width": img.shape[1], "height": img.shape[0]})
        for x0, y0, x1, y1 in boxes:
            doc["annotations"].append({"id": len(doc["annotations"]) + 1, "image_id": i, "category_id": 1,
                                       "bbox": [x0, y0, x1 - x0, y1 - y0], "iscrowd": 0})
    doc["annotations"].append({"id": 99, "image_id": 1, "category_id": 3, "bbox": [0, 0, 10, 10], "iscrowd": 0})
    path = folder / "instances.json"
    path.write_text(json.dumps(doc))
    return path


def write_yolo(folder: Path) -> Path:
    """A YOLO-format dataset: person is class 1 (class 0, car, must be dropped)."""
    for split, name in (("train", "bus.jpg"), ("val", "zidane.jpg")):
        img = photo(name)
        (folder / "images" / split).mkdir(parents=True)
        (folder / "labels" / split).mkdir(parents=True)
        cv2.imwrite(str(folder / "images" / split / name), img)
        H, W = img.shape[:2]
        rows = [f"1 {(x0 + x1) / 2 / W:.6f} {(y0 + y1) / 2 / H:.6f} {(x1 - x0) / W:.6f} {(y1 - y0) / H:.6f}"
                for x0, y0, x1, y1 in BOXES[name]]
        (folder / "labels" / split / (Path(name).stem + ".txt")).write_text("\n".join(rows + ["0 0.5 0.5 0.1 0.1"]))
    path = folder / "data.yaml"
    path.write_text("path: .\ntrain: images/train\nval: images/val\nnames:\n  0: car\n  1: person\n")
    return path


def check_trained(run: Path, r: dict) -> None:
    """A loadable checkpoint with a person class, and results.json with the before/after figures."""
    from hode.detect.yolo import YoloDetector

    saved = json.loads((run / "results.json").read_text())
    for k in ("map50_before", "map50_after", "map50_95_before", "map50_95_after"):
        assert isinstance(saved[k], float) and 0.0 <= saved[k] <= 1.0, (k, saved[k])
    assert saved["from"] == "weights" and saved["start"] == "asset:yolo11n.pt" and saved["classes"] == 80
    assert saved["weights"] == str(run / "detector.pt") == r["weights"]
    det = YoloDetector(saved["weights"], device="cpu", imgsz=320)
    [out] = det.predict([photo("bus.jpg")])
    assert det.model.names[det._person] == "person" and out.boxes.shape[1] == 4


def train_detector_in(run: Path, monkeypatch, overrides: list[str]) -> dict:
    """``task=train_detector`` with ``overrides``, run from ``run`` (a new folder: its run dir); its results."""
    from hode.tasks.train_detector import main

    run.mkdir()
    monkeypatch.chdir(run)
    return main(compose_config(["task=train_detector", *overrides]))


@pytest.mark.slow
def test_fine_tune_coco_weights_on_a_coco_format_folder(tmp_path, monkeypatch):
    coco = write_coco(tmp_path / "coco")
    run = tmp_path / "run"
    r = train_detector_in(run, monkeypatch, ["task.data=coco", f"task.coco={coco}", *TINY])
    check_trained(run, r)
    # each frame is cut into 512 px tiles (one per grid cell), people labelled as the checkpoint's class 0
    assert r["frames"] == {"train": 1, "val": 1} and r["labels"] == "coco" and r["crop"] == 512
    assert r["crops"] == {"train": 2 * 3, "val": 2 * 3}
    rows = np.concatenate([np.loadtxt(p, ndmin=2) for p in (run / "data" / "labels").rglob("*.txt") if p.stat().st_size])
    assert len(rows) >= 4 and (rows[:, 0] == 0).all()


@pytest.mark.slow
def test_fine_tune_on_a_yolo_data_yaml_keeps_people_only(tmp_path, monkeypatch):
    data = write_yolo(tmp_path / "yolo")
    run = tmp_path / "run"
    r = train_detector_in(run, monkeypatch, ["task.data=yolo", f"task.yolo_data={data}", *TINY, "task.crops_per_frame=2"])
    check_trained(run, r)
    assert r["frames"] == {"train": 1, "val": 1} and r["crops"] == {"train": 2, "val": 2}
    rows = np.concatenate([np.loadtxt(p, ndmin=2) for p in (run / "data" / "labels").rglob("*.txt") if p.stat().st_size])
    assert len(rows) >= 2 and (rows[:, 0] == 0).all()  # person only, as the COCO checkpoint's class 0


def test_video_frames_with_instances_json_become_tiles(tmp_path):
    """task.data=dataset on dataset=video: frames of a video with a COCO instances.json beside it,
    split in time (the last 20% validate), a frame smaller than the tile padded to it."""
    from hode.tasks.train_detector import prepare_data
    from support.media import write_video

    img = photo("bus.jpg")[300:780]  # 810 x 480: under one tile high
    video = write_video(tmp_path / "street.mp4", [img] * 5)
    people = [(b[0], b[1] - 300, b[2], min(b[3], 780) - 300) for b in BOXES["bus.jpg"]]
    doc = {"images": [{"id": k, "file_name": f"{k}.jpg"} for k in range(5)], "categories": [{"id": 1, "name": "person"}],
           "annotations": [{"id": 10 * k + j, "image_id": k, "category_id": 1, "bbox": [x0, y0, x1 - x0, y1 - y0]}
                           for k in range(5) for j, (x0, y0, x1, y1) in enumerate(people)]}
    (tmp_path / "street.instances.json").write_text(json.dumps(doc))
    cfg = compose_config(["task=train_detector", "dataset=video", f"dataset.path={video}", "dataset.frames=null"],
                         small=False)
    d = prepare_data(cfg, "dataset", tmp_path / "data", 512, 0, {0: "person"})
    assert d["labels"] == "dataset" and d["frames"] == {"train": 4, "val": 1} and d["crops"] == {"train": 8, "val": 2}
    tile = cv2.imread(str(next((tmp_path / "data" / "images" / "val").glob("*.png"))))
    assert tile.shape == (512, 512, 3) and (tile[-1] == 114).all()  # padded below the 480 px frame


@pytest.mark.slow
def test_bad_input_is_one_error_line(tmp_path):
    """run.py: one error line, exit 2; the other mistakes raise the same kind of error in-process."""
    p, _ = run_py(tmp_path / "run", "task=train_detector", "logger=none", "task.data=coco",
                  f"task.coco={tmp_path / 'nope.json'}", "task.from=asset:yolo11n.pt", expect_rc=None,
                  env={"WANDB_MODE": "disabled"}, timeout=120)
    assert p.returncode == 2 and p.stderr.strip().splitlines()[-1].startswith("error: task.coco: no such file"), p.stderr[-800:]
    assert "Traceback" not in p.stderr
    from hode.tasks.train_detector import main

    bad = tmp_path / "data.yaml"
    bad.write_text("train: images\nnames: [car, bus]\n")
    for overrides, message in (
            (["task.data=yolo", f"task.yolo_data={bad}"], "no 'person' class"),
            (["task.data=yolo", f"task.yolo_data={tmp_path}/none.yaml"], "task.yolo_data: no such file"),
            (["task.data=coco"], "task.data=coco needs task.coco"),
            (["task.data=pictures"], "task.data must be one of"),
            (["detector=yolo11n", "task.from=arch"], "has no architecture yaml")):
        with pytest.raises(HodeError, match=re.escape(message)):
            start = [] if any(o.startswith("task.from=") for o in overrides) else ["task.from=asset:yolo11n.pt"]
            main(compose_config(["task=train_detector", *start, *overrides]))
    with pytest.raises(DataError, match="need at least 2"):
        from hode.detect.train_data import split_tail

        split_tail([1], 0.2, "one image")


@pytest.mark.slow
def test_synthetic_default_still_trains_from_the_architecture(tmp_path, monkeypatch):
    """The default path for the synthetic detectors: yolov5n.yaml from scratch on synthetic crops."""
    monkeypatch.chdir(tmp_path)
    cfg = compose_config(["task=train_detector", "task.epochs=1", "task.imgsz=128", "task.batch=4", "task.crop=128",
                          "task.train_seeds=[101]", "task.val_seeds=[201]", "task.frames_per_seed=1",
                          "task.crops_per_frame=4", "task.width=640", "task.height=480"])
    from hode.tasks.train_detector import main

    r = main(cfg)
    assert r["data"] == "synthetic" and r["from"] == "arch" and r["start"] == "yolov5n.yaml"
    assert r["crops"] == {"train": 4, "val": 4} and r["map50_before"] is None and r["classes"] == 1
    assert (tmp_path / "detector.pt").is_file() and r["weights"] == str(tmp_path / "detector.pt")


def street(n: int) -> list[np.ndarray]:
    """``n`` frames of a static camera on the street photo, one of its people pasted walking across."""
    img = photo("bus.jpg")
    bg = cv2.resize(img[300:1020], (540, 480), interpolation=cv2.INTER_AREA)
    walker = cv2.resize(img[396:903, 668:810], (95, 338), interpolation=cv2.INTER_AREA)
    frames = []
    for k in range(n):
        f = bg.copy()
        x = 6 * k
        f[130:468, x:x + 95] = walker[:, :min(95, 540 - x)]
        frames.append(f)
    return frames


@pytest.mark.slow
def test_train_filter_on_own_video_with_cached_golden_labels(tmp_path, monkeypatch):
    """task.source=video: golden labels computed once and cached, 60/20/20 split in time, a shared-fusion
    checkpoint, and closed-loop figures on the held-out last 20% of the video."""
    from support.media import write_video

    from hode.filter.st import STFilter, load_checkpoint

    video = write_video(tmp_path / "street.mp4", street(60))
    cache = tmp_path / "golden"
    run = tmp_path / "run"
    run.mkdir()
    monkeypatch.chdir(run)
    cfg = compose_config(["task=train_filter", "task.source=video", "dataset=video", f"dataset.path={video}",
                          "dataset.golden_detector=yolo11n", "dataset.golden_imgsz=320", f"dataset.golden_cache={cache}",
                          "tiling.tile=160", "task.epochs=2", "task.batch=64", "task.model.channels=4",
                          "task.dagger_every=1", "task.dagger_rounds=1", "logger=none", "progress=false"], small=False)
    from hode.tasks.train_filter import main

    r = main(cfg)
    assert len(list(cache.glob("*.npz"))) == 1  # labelled once, kept for the next run
    saved = json.loads((run / "results.json").read_text())
    assert saved["source"] == "video" and saved["split"] == "time" and saved["labels"] == "golden"
    assert saved["fusion"] == "shared" and saved["grid"] == [3, 4]
    c = saved["test"]["closed_loop"]
    assert c["frames"] == 12 - 5 and all(0.0 <= c[k] <= 1.0 for k in ("recall", "accuracy", "skipped"))
    net, policy, meta = load_checkpoint(r["ckpt"])
    assert meta["train"] == ["street[0:36]"] and meta["val"] == ["street[36:48]"] and meta["test_scenes"] == ["street[48:60]"]
    assert net.grid is None  # shared fusion: runs on any grid
    flt = STFilter(net=net)
    flt.set_policy(**policy)
    assert flt(np.zeros((5, 5, 8), np.float32)).shape == (5, 8)  # e.g. a 4K frame's grid
