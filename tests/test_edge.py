"""The gRPC edge worker, for real: a worker process on loopback running the shipped yolov5n."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import grpc
import numpy as np
import pytest
from omegaconf import OmegaConf

from hode.profiles import TILE_PIXELS, LoadTrace, profile_from_dict
from hode.edge import worker_pb2 as pb
from hode.edge.client import outcomes
from hode.edge.codec import PayloadError, decode_tile, encode_tile
from hode.edge.pacing import Pacer
from hode.errors import ConfigError

from support.edge import FAST_PROFILE, running, wait_for, yolov5n_config


@pytest.fixture(scope="module")
def scene():
    from hode.data.synthetic import SyntheticCrowd

    return next(iter(SyntheticCrowd(width=1024, height=768, frames=1, seed=3))).image


@pytest.mark.slow
def test_health_and_status(worker):
    proc, client = worker
    assert client.serving()
    s = client.status()
    assert s.ready and s.model == "yolov5n" and s.node == "ext" and s.pid == proc.pid
    assert s.compute_tile_ms > 0 and s.speed > 0 and s.queue == 0
    assert s.emulated and s.device_kind == "fast" and s.profile_tile_ms == pytest.approx(10.0)


@pytest.mark.slow
def test_detections_come_back_in_crop_coordinates(worker, scene):
    import torch

    _, client = worker
    windows = [(600, 400, 856, 592), (100, 300, 292, 556)]  # small tiles far from the frame origin
    crops = [scene[y0:y1, x0:x1] for x0, y0, x1, y1 in windows]
    reply, sent, received = client.detect(client.request(7, list(enumerate(crops))), timeout=60)
    got = {o.item_id: o for o in outcomes(reply, received)}
    assert sorted(got) == [0, 1]

    from hode.config import build

    local = build(OmegaConf.create(yolov5n_config()))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the worker's setting: same kernels, same numbers
    try:
        expect = local.predict(crops)
    finally:
        torch.set_num_threads(threads)
    for k, crop in enumerate(crops):
        d = got[k].detections
        assert len(d) > 0 and len(d) == len(expect[k])
        np.testing.assert_allclose(d.boxes, expect[k].boxes, atol=0.5)
        np.testing.assert_allclose(d.scores, expect[k].scores, atol=1e-3)
        h, w = crop.shape[:2]  # crop coordinates: inside the crop, not shifted to the frame
        assert d.boxes.min() >= -1 and (d.boxes[:, [0, 2]] <= w + 1).all() and (d.boxes[:, [1, 3]] <= h + 1).all()
        assert got[k].service_s >= got[k].compute_s > 0 and sent <= got[k].started <= got[k].finished <= received


def _raw(item_id=1, h=8, w=8, **kw):
    fields = dict(item_id=item_id, encoding=pb.RAW, data=bytes(h * w * 3), height=h, width=w, channels=3, dtype="uint8")
    fields.update(kw)
    return pb.Tile(**fields)


def _jpeg(h, w, declared=None):
    t = encode_tile(np.full((h, w, 3), 127, np.uint8), 1)
    if declared:
        t.height, t.width = declared
    return t


def _jpeg_cut(item_id=1):
    """A JPEG whose header is fine but whose image data is gone: only decoding finds out."""
    t = encode_tile(np.full((32, 48, 3), 127, np.uint8), item_id)
    t.data = t.data[:t.data.index(b"\xff\xda") + 20]
    return t


MALFORMED = {
    "bad jpeg bytes": [pb.Tile(item_id=1, encoding=pb.JPEG, data=b"\xff\xd8garbage", height=8, width=8, channels=3)],
    "raw size mismatch": [_raw(data=bytes(100))],
    "raw wrong dtype": [_raw(dtype="float32")],
    "wrong channels": [_raw(channels=1, data=bytes(64))],
    "oversize": [_raw(h=5000, w=5000, data=b"x")],
    "jpeg dims lie": [_jpeg(32, 48, declared=(48, 32))],
    "empty dims": [_raw(h=0, w=8, data=b"")],
    "repeated ids": [_raw(), _raw()],
    "jpeg cut after its header": [_jpeg_cut()],
    # found on the decoder thread while the first tile runs: the request still fails whole
    "second tile cut after its header": [_jpeg(32, 48), _jpeg_cut(item_id=2)],
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_request_is_invalid_argument_and_worker_keeps_serving(worker, case):
    _, client = worker
    with pytest.raises(grpc.RpcError) as err:
        client.stub.Detect(pb.DetectRequest(frame_id=0, tiles=MALFORMED[case]), timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
    reply = client.stub.Detect(pb.DetectRequest(frame_id=0, tiles=[_raw(item_id=5)]), timeout=60)
    assert [r.item_id for r in reply.results] == [5]


@pytest.mark.slow
def test_negative_time_scale_is_invalid_argument(worker):
    _, client = worker
    with pytest.raises(grpc.RpcError) as err:
        client.stub.Detect(pb.DetectRequest(frame_id=0, tiles=[_raw()], time_scale=-1), timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_codec_round_trips():
    img = np.random.default_rng(0).integers(0, 255, (37, 53, 3), dtype=np.uint8)
    view = np.zeros((100, 100, 3), np.uint8)[10:47, 20:73]  # a non-contiguous crop view
    view[:] = img
    for enc in ("raw", "png"):
        np.testing.assert_array_equal(decode_tile(encode_tile(view, 1, enc)), img)
    smooth = np.full((37, 53, 3), 90, np.uint8)
    assert np.abs(decode_tile(encode_tile(smooth, 1, "jpeg", 95)).astype(int) - 90).max() <= 2
    with pytest.raises(PayloadError, match="exceeds the limit"):
        decode_tile(_raw(h=100, w=100, data=bytes(30000)), max_side=64)


def test_pacer_follows_profile_scale_and_load_trace():
    profile = profile_from_dict({"name": "p", "models": {"yolov5n": {"tile_ms": 10.0, "frame4k_ms": 100.0, "noise": 0.0}}}, "p")
    trace = LoadTrace([{"node": "a", "start": 5, "end": 8, "factor": 3.0}])
    p = Pacer("a", "yolov5n", profile, trace, time_scale=4.0)
    assert p.target_s(TILE_PIXELS, 0, 0.001) == pytest.approx(0.040)
    assert p.target_s(TILE_PIXELS, 6, 0.001) == pytest.approx(0.120)  # slowed down 3x on frames 5..7
    assert p.target_s(TILE_PIXELS, 8, 0.001, time_scale=2.0) == pytest.approx(0.020)  # the request's scale wins
    real = Pacer("a", "yolov5n", None, trace)  # not emulated: real time, times the load factor
    assert real.target_s(TILE_PIXELS, 6, 0.05) == pytest.approx(0.15)
    with pytest.raises(ConfigError, match="no timing for model 'yolov5m'"):
        Pacer("a", "yolov5m", profile)


def test_pacer_batches_a_requests_tiles_after_the_first_when_asked():
    profile = profile_from_dict({"name": "p", "models": {"yolov5n": {"tile_ms": 10.0, "frame4k_ms": 100.0,
                                                                      "fixed_ms": 6.0, "noise": 0.0}}}, "p")
    batched = Pacer("a", "yolov5n", profile, batched=True)
    assert batched.target_s(TILE_PIXELS, 0, 0.001) == pytest.approx(0.010)  # a request's first tile
    assert batched.target_s(TILE_PIXELS, 0, 0.001, in_batch=True) == pytest.approx(0.004)  # the rest: no fixed cost
    plain = Pacer("a", "yolov5n", profile)
    assert plain.target_s(TILE_PIXELS, 0, 0.001, in_batch=True) == pytest.approx(0.010)


@pytest.mark.slow
def test_worker_exits_when_its_parent_dies(tmp_path):
    """SIGKILL the process that started a worker: the worker must go too (no orphans)."""
    script = (
        "import sys, time; from pathlib import Path\n"
        "from hode.edge.process import WorkerProcess\nfrom hode.edge.server import WorkerSpec\n"
        f"w = WorkerProcess(WorkerSpec(node='orphan', detector={yolov5n_config()!r}), Path({str(tmp_path)!r}))\n"
        "w.spawn(); print(w.pid, flush=True); time.sleep(120)\n")
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    assert running(child)
    time.sleep(1.0)  # let it get past its start (its watchdog is armed first thing)
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait(10)
    deadline = time.monotonic() + 20
    while running(child) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not running(child), "worker survived its parent"


@pytest.mark.slow
def test_requests_run_in_arrival_order_and_a_caller_that_leaves_does_not_stall_the_line(worker):
    """Each RPC thread runs its own tiles when its turn comes: FIFO across requests, the queue
    length counts waiting and running tiles, and a request whose caller gave up (deadline) while
    waiting leaves the line without holding up the ones behind it."""
    _, client = worker
    slow = 20.0  # FAST_PROFILE x 20: about 100 ms for a 32x32 tile, long enough to queue behind
    paced = profile_from_dict(FAST_PROFILE, "fast").base_s("yolov5n", 32 * 32) * slow
    req = lambda frame, ids: pb.DetectRequest(frame_id=frame, tiles=[_raw(i, 32, 32) for i in ids], time_scale=slow)  # noqa: E731
    first = client.stub.Detect.future(req(1, [1, 2]))
    wait_queue = lambda n: wait_for(lambda: client.status().queue >= n, what="the worker's queue", poll=0.02)  # noqa: E731
    wait_queue(2)
    second = client.stub.Detect.future(req(2, [3]))
    wait_queue(3)
    gives_up = client.stub.Detect.future(req(3, [4, 5]), timeout=0.25)  # expires while in line
    wait_queue(5)
    third = client.stub.Detect.future(req(4, [6]))
    with pytest.raises(grpc.RpcError) as err:
        gives_up.result(timeout=30)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    replies = [f.result(timeout=30) for f in (first, second, third)]
    tiles = [r for reply in replies for r in reply.results]
    assert [t.item_id for t in tiles] == [1, 2, 3, 6]
    starts = [t.started for t in tiles]
    assert starts == sorted(starts) and all(b.started >= a.finished for a, b in zip(tiles, tiles[1:]))
    assert all(t.service_s >= paced * 0.99 for t in tiles)  # paced in full, not cut short
    wait_for(lambda: client.status().queue == 0, what="the worker's queue", poll=0.02)


@pytest.mark.slow
def test_reply_reports_the_workers_decode_time_apart_from_service(worker, scene):
    _, client = worker
    tile = encode_tile(np.ascontiguousarray(scene[:256, :320]), 9, "jpeg", 90)
    reply = client.stub.Detect(pb.DetectRequest(frame_id=0, tiles=[tile]), timeout=60)
    r = reply.results[0]
    assert r.decode_s > 0 and r.service_s >= r.compute_s > 0
    assert reply.received + r.decode_s <= r.started + 1e-6  # decoded before its service began



@pytest.mark.slow
def test_device_loop_paces_a_requests_tiles_as_one_batch():
    """Real yolov5n on small tiles: with batched inference the tiles after a request's first are
    flagged and paced without the profile's fixed cost."""
    from hode.config import build
    from hode.edge.device import DeviceLoop, TileJob

    profile = profile_from_dict({"name": "p", "models": {"yolov5n": {"tile_ms": 400.0, "frame4k_ms": 4000.0,
                                                                      "fixed_ms": 300.0, "noise": 0.0}}}, "p")
    loop = DeviceLoop(build(OmegaConf.create(yolov5n_config())), Pacer("a", "yolov5n", profile, batched=True))
    tile = np.full((608, 704, 3), 120, np.uint8)
    jobs = [TileJob(0, k, tile) for k in range(3)]
    assert loop.run(jobs)
    assert [j.in_batch for j in jobs] == [False, True, True] and all(j.error is None for j in jobs)
    assert jobs[0].service_s >= 0.4  # the first waits out the whole tile time (the others are due 100 ms)
    loop.stop()


def test_tile_headers_are_read_without_decoding():
    from hode.edge.codec import check_tile, jpeg_size, png_size

    for shape in [(8, 8), (608, 704), (1, 3000)]:
        image = np.zeros((*shape, 3), np.uint8)
        assert jpeg_size(encode_tile(image, 1, "jpeg").data) == shape
        assert png_size(encode_tile(image, 1, "png").data) == shape
    ok, progressive = cv2_encode_progressive(np.zeros((33, 65, 3), np.uint8))
    assert ok and jpeg_size(progressive) == (33, 65)
    assert jpeg_size(b"\xff\xd8garbage") is None and jpeg_size(b"") is None and png_size(b"\x89PNG") is None
    check_tile(_jpeg_cut())  # a header that is fine passes; the decode is what refuses it
    with pytest.raises(PayloadError, match="header says 48x32, declared 32x48"):
        check_tile(_jpeg(32, 48, declared=(48, 32)))


def cv2_encode_progressive(image):
    import cv2

    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
    return ok, buf.tobytes()


@pytest.mark.slow
def test_a_requests_later_tiles_decode_while_the_first_runs(worker, scene):
    """Four JPEG tiles in one call: the first starts after its own decode, not after all four (the
    rest decode on the worker's decoder thread meanwhile), and each is decoded before it starts."""
    _, client = worker
    crop = np.ascontiguousarray(scene[:608, :704])
    reply, sent, received = client.detect(client.request(3, [(k, crop) for k in range(4)]), timeout=60)
    rs = sorted(reply.results, key=lambda r: r.item_id)
    assert [r.item_id for r in rs] == [0, 1, 2, 3] and all(r.decode_s > 0 for r in rs)
    assert all(a.finished <= b.started + 1e-6 for a, b in zip(rs, rs[1:]))  # in order, one at a time
    waited = rs[0].started - reply.received  # decoding all four first would take their sum
    assert waited < sum(r.decode_s for r in rs), (waited, [r.decode_s for r in rs])
