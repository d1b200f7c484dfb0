"""The bad-input corpus: images, videos, annotations, configs, weights and gRPC payloads that are
broken in the ways real inputs break. Each one gives a clear one-line error (a HodeError subclass,
or a gRPC status naming the problem), or is a documented skip recorded in ``source.skipped`` and
results.json's ``skipped_input``, or a documented conversion; frames before it are kept, nothing
crashes or hangs.

These add to the cases the loaders' own tests cover (tests/test_data_*.py: truncated JPEG and AVI,
corrupt PNG, mixed sizes, missing keys and wrong types in PANDA and MOT files; tests/test_edge.py:
malformed tiles; tests/test_run.py and test_yolo.py: bad config values and non-checkpoint weights).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import grpc
import numpy as np
import pytest
import torch

from hode.config import ROOT, build
from hode.data.export import write_panda_images
from hode.data.mot import MotSource
from hode.data.panda import PandaSource
from hode.data.synthetic import SyntheticCrowd
from hode.data.video import VideoSource
from hode.detect.yolo import YoloDetector
from hode.edge import worker_pb2 as pb
from hode.edge.codec import encode_tile
from hode.errors import DataError, HodeError, WeightsError

from support.config import compose_config
from support.edge import shared_worker, wait_serving
from support.media import png_header


def one_line(e: BaseException) -> str:
    text = str(e)
    assert text and "\n" not in text and "Traceback" not in text, repr(text)
    return text


# ----- images: a bad file between two good frames ------------------------------------------------

def _jpeg_head() -> bytes:
    ok, buf = cv2.imencode(".jpg", np.full((48, 64, 3), 90, np.uint8))
    return buf.tobytes()[:200]


def _write(path: Path, content) -> None:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        assert cv2.imwrite(str(path), content)


# name -> (file name, content, expected: "skip: <reason part>" or "frame")
IMAGES = {
    "zero bytes": ("f1.jpg", b"", "skip: empty file (0 bytes)"),
    "jpeg header only": ("f1.jpg", _jpeg_head(), "skip: truncated"),
    "text named .jpg": ("f1.jpg", b"not an image at all " * 20 + b"\xff\xd9", "skip: not a readable image"),
    "huge (bomb header)": ("f1.png", png_header(100_000, 100_000), "error: above the limit of 100.0 MP per frame"),
    "grayscale": ("f1.png", np.full((48, 64), 70, np.uint8), "frame"),
    "16-bit colour": ("f1.png", np.full((48, 64, 3), 50_000, np.uint16), "frame"),
    "16-bit grayscale": ("f1.png", np.full((48, 64), 50_000, np.uint16), "frame"),
    "4-channel (alpha)": ("f1.png", np.full((48, 64, 4), 70, np.uint8), "frame"),
}


@pytest.mark.parametrize("case", sorted(IMAGES))
def test_bad_input_image(tmp_path, case):
    name, content, expect = IMAGES[case]
    _write(tmp_path / "f0.png", np.full((48, 64, 3), 100, np.uint8))
    _write(tmp_path / name, content)
    _write(tmp_path / "f2.png", np.full((48, 64, 3), 120, np.uint8))
    if expect.startswith("error: "):  # refused from its header, before anything is decoded
        with pytest.raises(DataError) as e:
            VideoSource(str(tmp_path), golden=False)
        assert expect[7:] in one_line(e.value) and name in str(e.value)
        return
    src = VideoSource(str(tmp_path), golden=False)
    frames = list(src)
    assert frames[0].index == 0 and frames[-1].index == 2  # the frames around it are kept
    assert all(f.image.shape == (48, 64, 3) and f.image.dtype == np.uint8 for f in frames)  # converted: BGR uint8
    if expect == "frame":
        assert [f.index for f in frames] == [0, 1, 2] and src.skipped == {}
    else:
        assert [f.index for f in frames] == [0, 2] and expect[6:] in src.skipped[name]


def test_bad_input_image_tiny_among_large(tmp_path):
    _write(tmp_path / "f0.png", np.full((48, 64, 3), 100, np.uint8))
    _write(tmp_path / "f1.png", np.full((4, 4, 3), 100, np.uint8))
    with pytest.raises(DataError) as e:
        VideoSource(str(tmp_path), golden=False)
    assert "mixed frame sizes" in one_line(e.value) and "f1.png is 4x4" in str(e.value)
    assert [f.image.shape for f in VideoSource(str(tmp_path), width=64, height=48, golden=False)] == [(48, 64, 3)] * 2


@pytest.mark.slow
def test_bad_input_image_tiny_frames_run_through_the_pipeline(cfg_factory, tmp_path, monkeypatch):
    """4x4 frames (smaller than a tile, than the detector's stride): they run, with no detections;
    an unreadable frame among them is skipped and counted in results.json."""
    frames = tmp_path / "frames"
    frames.mkdir()
    for k in range(3):
        _write(frames / f"f{k}.png", np.full((4, 4, 3), 60 * k, np.uint8))
    _write(frames / "f1b.png", b"\x89PNG garbage")
    cfg = cfg_factory(["filter=none", "dataset=video", f"dataset.path={frames}", "dataset.golden=false", "dataset.width=null",
                       "dataset.height=null", "dataset.frames=null", "topology=single", "logger=none",
                       "progress=false"], small=False)
    monkeypatch.chdir(tmp_path)
    from hode.tasks.run import main

    r = main(cfg)
    assert r["frames"] == 3 and r["tiles"]["processed"] == 3
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["skipped_input"] == ["f1b.png: truncated image file (no end marker)"]


# ----- videos --------------------------------------------------------------------------------------

def test_bad_input_video_unknown_codec(tmp_path):
    w = cv2.VideoWriter(str(tmp_path / "ok.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for k in range(4):
        w.write(np.full((48, 64, 3), 50 * k, np.uint8))
    w.release()
    data = (tmp_path / "ok.avi").read_bytes()
    assert len(list(VideoSource(str(tmp_path / "ok.avi"), golden=False))) == 4
    (tmp_path / "odd.avi").write_bytes(data.replace(b"MJPG", b"QQQQ"))  # a codec no decoder knows
    with pytest.raises(DataError) as e:
        list(VideoSource(str(tmp_path / "odd.avi"), golden=False))
    assert "odd.avi" in one_line(e.value)


def test_bad_input_video_zero_bytes(tmp_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(DataError, match="cannot open .*empty.mp4 as a video") as e:
        VideoSource(str(tmp_path / "empty.mp4"))
    one_line(e.value)


# ----- annotations ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def synth():
    return list(SyntheticCrowd(width=480, height=270, frames=2, seed=5, far_height=10, near_height=60))


def _person_rect(data: dict) -> dict:
    entry = data[sorted(data)[0]]
    return next(o for o in entry["objects list"] if o["category"] == "person")["rects"]["full body"]


def _set_x(value):
    def mutate(data):
        _person_rect(data)["tl"]["x"] = value
        return data
    return mutate


PANDA = {  # mutation of a valid person_bbox_train.json -> expected DataError text (None: loads)
    "NaN coordinate": (_set_x(math.nan), "coordinates must be finite numbers"),
    "infinite coordinate": (_set_x(math.inf), "coordinates must be finite numbers"),
    "boolean coordinate": (_set_x(True), "'x' must be int/float, got bool"),
    "top level is a list": (lambda d: list(d.values()), "expected an object keyed by image path, got list"),
    "empty file object": (lambda d: {}, "no annotated frames"),
    "missing image size": (lambda d: (d[sorted(d)[0]].pop("image size"), d)[1], "missing key 'image size'"),
    "zero image size": (lambda d: (d[sorted(d)[0]]["image size"].update(width=0), d)[1], "image size must be positive"),
    "coordinates out of range (clipped)": (_set_x(-3.0), None),
    "empty objects list": (lambda d: (d[sorted(d)[0]].__setitem__("objects list", []), d)[1], None),
}


@pytest.mark.parametrize("case", sorted(PANDA))
def test_bad_input_panda_annotations(tmp_path, synth, case):
    mutate, message = PANDA[case]
    path = write_panda_images(synth, tmp_path)
    path.write_text(json.dumps(mutate(json.loads(path.read_text()))))  # json writes NaN/Infinity literals
    if message is None:
        frames = list(PandaSource(str(tmp_path), width=480, height=270))
        assert len(frames) == 2 and all(np.isfinite(f.gt.boxes).all() for f in frames)
        assert (frames[0].gt.boxes[:, [0, 2]] >= 0).all() and (frames[0].gt.boxes[:, [2]] <= 480).all()
        return
    with pytest.raises(DataError) as e:
        PandaSource(str(tmp_path), width=480, height=270)
    assert message in one_line(e.value) and "person_bbox_train.json" in str(e.value)


MOT = {  # gt.txt content -> expected DataError text (None: loads; the bad row is dropped)
    "NaN coordinate": ("1,1,nan,20,30,60,1,1,1\n", "not a finite number"),
    "infinite width": ("1,1,10,20,inf,60,1,1,1\n", "not a finite number"),
    "box far out of range": ("1,1,10,20,1e12,60,1,1,1\n", "beyond 16384 px a side"),
    "negative width (dropped)": ("1,1,10,20,-30,60,1,1,1\n1,2,10,20,30,60,1,1,1\n", None),
}


@pytest.mark.parametrize("case", sorted(MOT))
def test_bad_input_mot_annotations(tmp_path, case):
    text, message = MOT[case]
    (tmp_path / "gt.txt").write_text(text)
    if message is None:
        gt = next(MotSource(str(tmp_path / "gt.txt")).gt_frames())
        assert len(gt) == 1 and gt.ids.tolist() == [2]
        return
    with pytest.raises(DataError) as e:
        MotSource(str(tmp_path / "gt.txt"))
    assert message in one_line(e.value) and "gt.txt" in str(e.value)


# ----- configs ----------------------------------------------------------------------------------

CONFIGS = {  # overrides -> (what to build, message)
    "in_flight zero": (["runner.in_flight=0"], "pipeline", "runner.in_flight must be an integer >= 1"),
    "negative time_scale": (["runner=live", "runner.backend.emulation.time_scale=-3"], "runner", "time_scale must be 'auto'"),
    "failure trace not a list": (["runner=sim", "runner.failure_trace=oops"], "runner", "must be a list of events"),
    "failover k not a number": (["runner=sim", "runner.failover.deadline_k=abc"], "runner", "deadline_k must be a number"),
    "negative camera overhead": (["runner=sim", "runner.backend.camera_overhead=-1"], "runner", "camera_overhead"),
    "jpeg quality 500": (["runner=live", "runner.backend.transport.jpeg_quality=500"], "runner", "jpeg_quality must be an integer"),
    "tile size a word": (["tiling.tile=abc"], "tiling", "tiling.tile must be a positive integer"),
    "confidence 2": (["detector.conf=2"], "detector", "detector.conf must be in [0, 1]"),
    "frames a word": (["dataset.frames=abc"], "dataset", "dataset.frames must be a positive integer"),
    "duplicate node names": (["topology.nodes=[{name: a, model: yolov5n},{name: a, model: yolov5s}]"], "topology",
                             "names must be unique"),
    "chaos on an unknown node": (["runner=live", "runner.backend.chaos=[{node: zz, frame: 1, action: kill}]"], "runner",
                                 "names node 'zz'"),
    "token value in the config": (["runner=live_secure", "+runner.backend.security.token=s3cr3t-value"], "runner",
                                  "secrets are not accepted in configs"),
}


@pytest.mark.parametrize("case", sorted(CONFIGS))
def test_bad_input_config(case):
    overrides, what, message = CONFIGS[case]
    cfg = compose_config(overrides)
    with pytest.raises(HodeError) as e:
        if what == "runner":
            build(cfg.runner.backend, topology=build(cfg.topology), detector=cfg.detector, _recursive_=False)
        elif what == "pipeline":
            from hode.pipeline import Pipeline

            Pipeline(build(cfg.tiling), build(cfg.filter), build(cfg.scheduler), None, in_flight=cfg.runner.in_flight)
        else:
            build(cfg[what])
    assert message in one_line(e.value) and "s3cr3t-value" not in str(e.value)


# ----- weights ----------------------------------------------------------------------------------

def _classifier(path: Path) -> None:
    from ultralytics.nn.tasks import ClassificationModel

    model = ClassificationModel("yolov8n-cls.yaml", nc=2, verbose=False)
    model.names = {0: "person", 1: "bicycle"}  # even with a "person" class it is not a detector
    torch.save({"model": model, "train_args": {}}, path)


WEIGHTS = {
    "zero bytes": (lambda p: p.write_bytes(b""), "is not a YOLO checkpoint"),
    "truncated checkpoint": (lambda p: p.write_bytes((ROOT / "weights/yolov5n-synth.pt").read_bytes()[:300_000]),
                             "is not a YOLO checkpoint"),
    "a bare state_dict": (lambda p: torch.save({"weight": torch.zeros(3)}, p), "is not a YOLO checkpoint"),
    "a classification network": (_classifier, "holds a ClassificationModel, not a YOLO detection model"),
}


@pytest.mark.parametrize("case", sorted(WEIGHTS))
def test_bad_input_weights(tmp_path, case):
    make, message = WEIGHTS[case]
    path = tmp_path / "w.pt"
    make(path)
    with pytest.raises(WeightsError) as e:
        YoloDetector(str(path)).predict([np.zeros((64, 64, 3), np.uint8)])
    assert message in one_line(e.value) and str(path) in str(e.value)


# ----- gRPC payloads to a real worker -------------------------------------------------------------

@pytest.fixture(scope="module")
def raw_worker():
    proc = shared_worker()
    client = wait_serving(proc)
    channel = grpc.insecure_channel(f"127.0.0.1:{proc.port()}", options=[("grpc.max_send_message_length", 80 * 2**20)])
    yield channel, client
    channel.close()
    client.close()


def _req(tiles, scale=0.0) -> bytes:
    return pb.DetectRequest(frame_id=1, tiles=tiles, time_scale=scale).SerializeToString()


def _raw_tile(item_id=1, h=8, w=8, c=3, **kw) -> pb.Tile:
    fields = dict(item_id=item_id, encoding=pb.RAW, data=bytes(h * w * c), height=h, width=w, channels=c, dtype="uint8")
    fields.update(kw)
    return pb.Tile(**fields)


def _gray_png() -> pb.Tile:
    ok, buf = cv2.imencode(".png", np.full((16, 24), 80, np.uint8))  # one channel on the wire
    return pb.Tile(item_id=1, encoding=pb.PNG, data=buf.tobytes(), height=16, width=24, channels=3)


PAYLOADS = {  # method, payload -> expected code, text in the details
    "garbage bytes": ("Detect", b"\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x12\x05garbage",
                      grpc.StatusCode.INVALID_ARGUMENT, "do not parse as protobuf"),
    "garbage to Status": ("Status", b"\x0a\x99\x01zz", grpc.StatusCode.INVALID_ARGUMENT, "not a valid StatusRequest"),
    "oversize message": ("Detect", _req([_raw_tile(data=bytes(65 * 2**20))]), grpc.StatusCode.RESOURCE_EXHAUSTED, ""),
    "too many tiles": ("Detect", _req([_raw_tile(item_id=k) for k in range(513)]), grpc.StatusCode.INVALID_ARGUMENT,
                       "513 tiles in one request, the limit is 512"),
    "NaN time_scale": ("Detect", _req([_raw_tile()], math.nan), grpc.StatusCode.INVALID_ARGUMENT, "time_scale"),
    "huge time_scale": ("Detect", _req([_raw_tile()], 1e9), grpc.StatusCode.INVALID_ARGUMENT, "time_scale must be in"),
    "unknown encoding": ("Detect", _req([_raw_tile(encoding=7)]), grpc.StatusCode.INVALID_ARGUMENT, "unknown encoding 7"),
    "4-channel raw": ("Detect", _req([_raw_tile(c=4)]), grpc.StatusCode.INVALID_ARGUMENT, "expected 3 channels"),
    "empty jpeg": ("Detect", _req([pb.Tile(item_id=1, encoding=pb.JPEG, data=b"", height=8, width=8, channels=3)]),
                   grpc.StatusCode.INVALID_ARGUMENT, "empty payload"),
    "raw 16-bit": ("Detect", _req([_raw_tile(dtype="uint16", data=bytes(8 * 8 * 3 * 2))]),
                   grpc.StatusCode.INVALID_ARGUMENT, "raw dtype must be 'uint8'"),
    "grayscale png (converted)": ("Detect", _req([_gray_png()]), grpc.StatusCode.OK, ""),
    "no tiles at all": ("Detect", _req([]), grpc.StatusCode.OK, ""),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(PAYLOADS))
def test_bad_input_grpc_payload(raw_worker, case):
    channel, client = raw_worker
    method, payload, code, text = PAYLOADS[case]
    call = channel.unary_unary(f"/hode.edge.EdgeWorker/{method}")
    try:
        call(payload, timeout=60)
        got, details = grpc.StatusCode.OK, ""
    except grpc.RpcError as e:
        got, details = e.code(), e.details() or ""
    assert got == code and text in details, (got, details)
    assert "\n" not in details
    good = client.stub.Detect(pb.DetectRequest(frame_id=0, tiles=[encode_tile(np.full((32, 32, 3), 90, np.uint8), 9, "raw")]),
                              timeout=60)
    assert [r.item_id for r in good.results] == [9]  # and the worker keeps serving
