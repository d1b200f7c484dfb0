"""Hostile clients against a real edge worker on loopback: a caller that gives up while in line
must not wedge the worker, and a flood of large requests must be refused, not absorbed."""
from __future__ import annotations

import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

from hode.edge import worker_pb2 as pb
from hode.edge.process import WorkerProcess
from hode.edge.server import WorkerSpec

from support.edge import FAST_PROFILE, running, wait_for, wait_serving, yolov5n_config
from support.run import run_py

SLOW = 20.0  # FAST_PROFILE x 20: about 100 ms for a 32x32 tile


@pytest.fixture(scope="module")
def own_worker():
    """A worker of its own with the default limits (these tests strain it on purpose)."""
    spec = WorkerSpec(node="hostile", detector=yolov5n_config(), device_kind="fast", emulate=True, profile=FAST_PROFILE,
                      torch_threads=1)
    proc = WorkerProcess(spec, Path(tempfile.mkdtemp(prefix="hode-test-limits-")), torch_threads=1)
    proc.spawn()
    client = wait_serving(proc)
    yield proc, client
    client.close()
    proc.stop()


def _raw(item_id: int, h: int = 32, w: int = 32, fill: int = 0) -> pb.Tile:
    return pb.Tile(item_id=item_id, encoding=pb.RAW, data=bytes([fill]) * (h * w * 3), height=h, width=w,
                   channels=3, dtype="uint8")


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


def _fresh_request_is_answered_promptly(client) -> None:
    """A new one-tile request comes back within its own service time plus a generous second."""
    t0 = time.perf_counter()
    reply = client.stub.Detect(pb.DetectRequest(frame_id=9, tiles=[_raw(77)], time_scale=SLOW), timeout=30)
    wall = time.perf_counter() - t0
    assert [r.item_id for r in reply.results] == [77]
    assert wall < reply.results[0].service_s + 1.0, (wall, reply.results[0].service_s)


@pytest.mark.slow
def test_a_caller_that_gives_up_behind_an_identical_request_does_not_wedge_the_worker(own_worker):
    """Issue 19: A (30 tiles) runs; B and an identical C (1 s deadline) wait behind it. C's deadline
    passes while it waits; its turn must leave the line (it used to stay, comparing numpy images,
    and every later request hung while health said SERVING)."""
    proc, client = own_worker
    a = client.stub.Detect.future(pb.DetectRequest(frame_id=1, tiles=[_raw(k) for k in range(30)], time_scale=SLOW))
    wait_for(lambda: client.status().queue >= 30, what="the worker's queue", poll=0.02)
    b = client.stub.Detect.future(pb.DetectRequest(frame_id=2, tiles=[_raw(0)], time_scale=SLOW))
    wait_for(lambda: client.status().queue >= 31, what="the worker's queue", poll=0.02)
    c = client.stub.Detect.future(pb.DetectRequest(frame_id=2, tiles=[_raw(0)], time_scale=SLOW), timeout=1.0)
    with pytest.raises(grpc.RpcError) as err:
        c.result(timeout=30)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert len(a.result(timeout=60).results) == 30 and len(b.result(timeout=60).results) == 1
    _fresh_request_is_answered_promptly(client)
    wait_for(lambda: client.status().queue == 0, what="the worker's queue", poll=0.02)
    assert "Traceback" not in proc.log_path.read_text()


@pytest.mark.slow
def test_a_flood_of_large_requests_is_refused_and_memory_comes_back(own_worker):
    """Issue 19: 40 concurrent 57 MB requests (4 raw 2304x2048 tiles each) used to take a worker to
    6 GB for good. Beyond its queue budget the worker refuses with RESOURCE_EXHAUSTED and a line
    naming the limit; afterwards its memory is back near idle, it answers at once, and its log has
    no traceback."""
    proc, client = own_worker
    idle = _rss_mb(proc.pid)
    tiles = [_raw(k, 2048, 2304, fill=k) for k in range(4)]
    payload = pb.DetectRequest(frame_id=5, tiles=tiles, time_scale=1.0).SerializeToString()
    channel = grpc.insecure_channel(f"127.0.0.1:{proc.port()}", options=[("grpc.max_send_message_length", 80 * 2**20),
                                                                        ("grpc.enable_http_proxy", 0)])
    detect = channel.unary_unary("/hode.edge.EdgeWorker/Detect")
    answers: list[tuple[str, str]] = []

    def call(_: int) -> None:
        try:
            detect(payload, timeout=60)
            answers.append(("OK", ""))
        except grpc.RpcError as e:
            answers.append((e.code().name, e.details() or ""))

    with ThreadPoolExecutor(max_workers=40) as ex:
        list(ex.map(call, range(40)))
    channel.close()
    codes = [c for c, _ in answers]
    refused = [d for c, d in answers if c == "RESOURCE_EXHAUSTED"]
    assert len(refused) >= 20, codes  # the default budget (256 MB) holds two of them at once
    assert all("max_queued_mb=256" in d for d in refused), refused[:3]
    assert set(codes) <= {"OK", "RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED"}, codes
    wait_for(lambda: client.status().queue == 0, what="the worker's queue", poll=0.02)
    _fresh_request_is_answered_promptly(client)
    after = _rss_mb(proc.pid)
    print(f"worker RSS: idle {idle:.0f} MB, after the flood {after:.0f} MB")
    assert after < idle + 512, (idle, after)
    assert running(proc.pid) and "Traceback" not in proc.log_path.read_text()


def test_queue_limits_are_checked():
    from hode.edge.limits import Admission

    adm = Admission("n", max_queued_mb=1, max_queued_tiles=3)
    assert adm.admit(512 * 1024, 2) is None
    assert "is full: 2 tiles queued" in adm.admit(1, 2)
    assert "more than max_queued_mb=1" in adm.admit(2 * 1024 * 1024, 1)
    assert "0.5 MB of requests queued" in adm.precheck(600 * 1024)
    adm.release(512 * 1024, 2)
    assert adm.admit(1024 * 1024, 3) is None and adm.tiles == 3
    from hode.errors import ConfigError

    with pytest.raises(ConfigError, match="max_queued_mb must be a positive integer"):
        WorkerSpec(node="x", detector={}, max_queued_mb=0)



@pytest.mark.slow
def test_a_worker_refuses_to_listen_beyond_loopback_without_a_token(tmp_path):
    """Issue 19: workers bound 0.0.0.0 with no token and only logged it. Now that is refused unless a
    token is configured or ``insecure: true`` says an open worker is wanted."""
    from hode.cluster.live import LiveBackend
    from hode.cluster.topology import Topology
    from hode.errors import ConfigError

    with pytest.raises(ConfigError, match=r"worker 'x': refusing to listen on 0.0.0.0 without a token .*insecure: true"):
        WorkerSpec(node="x", detector={}, host="0.0.0.0")
    for ok in (dict(host="0.0.0.0", insecure=True), dict(host="0.0.0.0", token_env="SOME_VAR"),
               dict(host="::1"), dict(host="localhost"), dict(host="127.0.0.2")):
        WorkerSpec(node="x", detector={}, **ok)
    with pytest.raises(ConfigError, match="refusing to listen on 192.168.1.5"):
        LiveBackend(Topology([{"name": "a", "model": "yolov5n", "device": "gtx1050"}]), workers={"bind": "192.168.1.5"})
    r, _ = run_py(tmp_path, "task=serve", "task.host=0.0.0.0", "task.port=0", "logger=none", expect_rc=None, timeout=120)
    assert r.returncode == 2, r.stderr[-2000:]
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("error: worker ") and "refusing to listen on 0.0.0.0" in lines[-1], r.stderr[-2000:]
    assert "Traceback" not in r.stderr
