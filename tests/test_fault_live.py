"""runner=live under real faults: a worker SIGKILLed mid-frame, a worker frozen (unreachable), a
worker slowed 10x, a worker whose device is held while its health says SERVING. Real worker
processes on loopback, the real pipeline over them.

One backend with two local workers (both yolov5n, so a tile's detections do not depend on the
node) serves every test here; the fault injection is by frame index (``chaos``, ``load_trace``),
so each test uses its own range of frame indices.
"""
from __future__ import annotations

import dataclasses
import os
import signal
import time

import numpy as np
import pytest

from hode.cluster.live import LiveBackend
from hode.cluster.topology import Topology
from hode.errors import ConfigError
from hode.filter.base import KeepAll
from hode.pipeline import Pipeline
from hode.schedule.base import RoundRobin
from hode.tiling import Tiler

from support.edge import running, wait_for, workers_of, write_fast_profile

SLOW = (100, 200)  # frames on which node b is 10x slower
STOP = 301  # node b is frozen (SIGSTOP) when this frame goes out
KILL = 401  # node b is SIGKILLed when this frame goes out
HELD = (600, 700)  # node b's device is held by another client's request (health still SERVING)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    d = tmp_path_factory.mktemp("fault-live")
    write_fast_profile(d)
    topo = Topology([{"name": "a", "model": "yolov5n", "device": "fast"},
                     {"name": "b", "model": "yolov5n", "device": "fast"}])
    backend = LiveBackend(topo, emulation={"time_scale": 20.0}, profiles_dir=str(d), workers={"log_dir": str(d / "workers")},
                          load_trace=[{"node": "b", "start": SLOW[0], "end": SLOW[1], "factor": 10.0}],
                          chaos=[{"node": "b", "frame": STOP, "action": "stop"},
                                 {"node": "b", "frame": KILL, "action": "kill"}],
                          health={"probe_s": 0.5, "probe_timeout_s": 1.0, "fail_after": 2, "watchdog_slack_s": 1.0},
                          failover={"deadline_slack_s": 0.3})
    backend.start()
    yield backend, d
    backend.close()
    assert workers_of(str(d)) == [], "a worker survived the backend"


def frames_at(small_frames, start: int, n: int):
    return [dataclasses.replace(f, index=start + k) for k, f in enumerate(small_frames[:n])]


def run(backend, frames):
    got = []
    poll = backend.poll

    def spy(timeout=None):
        out = poll(timeout)
        got.extend(out)
        return out

    backend.poll = spy
    try:
        trace = Pipeline(Tiler(), KeepAll(), RoundRobin(), backend, in_flight=2, progress=False).run(frames)
    finally:
        del backend.poll
    return trace, got


@pytest.mark.slow
def test_fault_straggler_is_hedged_first_result_wins(cluster, small_frames):
    backend, _ = cluster
    before = backend.faults.summary()
    trace, got = run(backend, frames_at(small_frames, SLOW[0], 3))
    assert [r.index for r in trace.records] == [100, 101, 102] and all(r.items == 4 for r in trace.records)
    after = backend.faults.summary()
    assert after["hedged"] > before["hedged"], after
    keys = [(c.frame_id, c.item_id) for c in got]
    assert len(keys) == len(set(keys)) == 12  # each item delivered once: later copies dropped or cancelled
    assert sum(c.node == 0 for c in got) > 6  # a took over items round-robin gave to b
    assert all(s.up for s in backend.states())  # slow is not down


@pytest.mark.slow
def test_fault_unreachable_node_is_marked_down_and_readmitted(cluster, small_frames):
    backend, _ = cluster
    b = backend._links[1]
    trace, _ = run(backend, frames_at(small_frames, STOP - 1, 3))  # b freezes when frame 301 goes out
    assert [r.items for r in trace.records] == [4, 4, 4]
    wait_for(lambda: not backend.states()[1].up, 20, "b to be marked down")
    wait_for(lambda: backend.states()[1].queue == 0, 5, "b's calls to be cancelled")  # its items went elsewhere
    os.kill(b.proc.pid, signal.SIGCONT)  # the network heals
    wait_for(lambda: backend.states()[1].up, 20, "b to be re-admitted")
    events = [e["event"] for e in backend.faults.summary()["events"] if e["node"] == "b"]
    assert events[-3:] == ["chaos-stop", "down", "up"], events


@pytest.mark.slow
def test_fault_killed_worker_mid_frame_loses_no_tile_and_rejoins(cluster, small_frames):
    backend, d = cluster
    b = backend._links[1]
    old_pid = b.proc.pid
    reference, _ = run(backend, frames_at(small_frames, 10, 3))  # undisturbed, same images
    trace, got = run(backend, frames_at(small_frames, KILL - 1, 3))  # b is SIGKILLed as frame 401 goes out
    assert not running(old_pid)
    assert [r.index for r in trace.records] == [400, 401, 402] and [r.items for r in trace.records] == [4, 4, 4]
    for ref, rec in zip(reference.records, trace.records):  # every tile's detections made it into the frame
        assert len(rec.detections) == len(ref.detections) > 0
        np.testing.assert_allclose(rec.detections.boxes, ref.detections.boxes, atol=0.5)
    info = backend.describe()["failover"]
    assert info["redispatched"] >= 1 and info["restarts"] == 1
    assert backend.stats()[1]["down_events"] == 2  # the freeze before, the kill now
    wait_for(lambda: backend.states()[1].up, 90, "the restarted worker to rejoin")
    assert b.proc.pid != old_pid and running(b.proc.pid)
    items = backend.stats()[1]["items"]
    run(backend, frames_at(small_frames, 500, 2))
    assert backend.stats()[1]["items"] > items, "the restarted node gets work again"
    assert (d / "workers" / "b.log").read_text().count("ready:") >= 2  # one log, both lives


@pytest.mark.slow
@pytest.mark.parametrize("batch", [0, 1])
def test_fault_node_that_stops_answering_while_serving_is_marked_down_by_the_watchdog(cluster, small_frames, batch):
    """Another client holds b's device with one tile paced 10,000x its profile (about 50 s): b's
    health check keeps saying SERVING, but it answers no Detect. The watchdog marks it down (a
    call's deadline with batch 0; with batch 1 hedging cancels b's one-item calls, and the liveness
    probe finds it), no tile is lost, and b is re-admitted only once it answers a Detect again."""
    import grpc

    from hode.edge import worker_pb2 as pb

    backend, _ = cluster
    b = backend._links[1]
    wait_for(lambda: b.up, 90, "b to be up")
    start = HELD[batch]
    tile = pb.Tile(item_id=0, encoding=pb.RAW, data=bytes(32 * 32 * 3), height=32, width=32, channels=3, dtype="uint8")
    hog = b.client.stub.Detect.future(pb.DetectRequest(frame_id=0, tiles=[tile], time_scale=10_000.0))
    wait_for(lambda: b.client.status().queue == 1, 10, "b's device to be held")
    backend.batch = batch
    try:
        trace, got = run(backend, frames_at(small_frames, start, 3))
        assert [r.items for r in trace.records] == [4, 4, 4]
        keys = [(c.frame_id, c.item_id) for c in got]
        assert len(keys) == len(set(keys)) == 12  # every tile once, none lost
        wait_for(lambda: not b.up, 40, "the watchdog to mark b down")
        assert b.client.serving(), "b's health check should still say SERVING"
        down = [e for e in backend.faults.summary()["events"] if e["node"] == "b" and e["event"] == "down"][-1]
        assert "watchdog" in down["detail"], down
        time.sleep(2 * backend.probe_s)
        assert not b.up, "re-admitted on its health check alone while its device is still held"
    finally:
        backend.batch = 0
        hog.cancel()  # the worker stops pacing a cancelled tile
    wait_for(lambda: b.up, 60, "b to be re-admitted once it answers again")
    assert backend.faults.summary()["watchdog"] >= 1 + batch
    with pytest.raises(grpc.FutureCancelledError):
        hog.result()


def test_fault_chaos_and_failover_settings_are_checked():
    topo = Topology([{"name": "a", "model": "yolov5n", "device": "gtx1050"}])
    for chaos, msg in (([{"node": "zz", "frame": 1, "action": "kill"}], "names node 'zz'"),
                       ([{"node": "a", "frame": -1, "action": "kill"}], r"frame must be an integer >= 0"),
                       ([{"node": "a", "frame": 1, "action": "explode"}], "action must be one of"),
                       ([{"node": "a", "frame": 1}], "needs exactly node, frame, action")):
        with pytest.raises(ConfigError, match=msg):
            LiveBackend(topo, chaos=chaos)
    with pytest.raises(ConfigError, match="fail_after must be an integer >= 1"):
        LiveBackend(topo, health={"fail_after": 0})
    with pytest.raises(ConfigError, match="max_attempts"):
        LiveBackend(topo, failover={"max_attempts": 0})
    with pytest.raises(ConfigError, match="watchdog_k must be a number >= 1"):
        LiveBackend(topo, health={"watchdog_k": 0.5})
