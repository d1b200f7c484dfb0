"""runner=sim under failures and stragglers: a failure trace takes nodes down, their unfinished
items are re-dispatched, schedulers skip down nodes, hedged copies beat slow nodes.

Backend-level checks use hand-made items with cached detections (no detector, exact times, as in
test_sim.py); the scheduler comparison runs the real pipeline on synthetic frames (real cached
detections) through ``hode.tasks.run.main``.
"""
from __future__ import annotations

import json

import pytest

from hode.cluster.failover import FailoverPolicy, FailureTrace, Tracker, pick_node
from hode.cluster.sim import SimBackend
from hode.replay import replay
from hode.cluster.topology import Topology
from hode.errors import ConfigError, HodeError
from hode.schedule.base import RoundRobin
from hode.types import NodeState, WorkItem

from support.sim import drain, submit, write_profiles


def pair_sim(tmp_path, **kw) -> SimBackend:
    topo = Topology([{"name": "a", "model": "yolov5n", "device": "fast"},
                     {"name": "b", "model": "yolov5n", "device": "fast"}], name="pair")
    sim = SimBackend(topo, dataset="handmade", cache_dir=str(tmp_path / "cache"),
                     profiles_dir=write_profiles(tmp_path / "profiles"), **kw)
    sim.start()
    return sim


def completions(sim) -> dict[tuple[int, int], tuple]:
    """Every completion drained from ``sim``, by (frame, item): (node, finished)."""
    out: dict[tuple[int, int], tuple] = {}
    for batch in drain(sim):
        for node, frame, item, _, finished, _ in batch:
            assert (frame, item) not in out, f"item {(frame, item)} completed twice"
            out[(frame, item)] = (node, finished)
    return out


def test_fault_trace_node_dies_items_move_and_it_comes_back(tmp_path):
    """b dies when frame 1 is prepared: its unfinished frame-0 items finish on a, it is reported
    down (no work) for frames 1-2, and it is back, empty, for frame 3."""
    sim = pair_sim(tmp_path, failure_trace=[{"node": "b", "start": 1, "end": 3}])
    submit(sim, 0, [0, 1, 0, 1])  # 0.1 s per tile on each node
    first = sim.poll()
    assert [(c.node, c.item_id) for c in first] == [(0, 0), (1, 1)] and sim.now() == pytest.approx(0.1)
    states = sim.states()  # the camera prepares frame 1: b is dead now (t = 0.1), item 3 was on it
    assert [s.up for s in states] == [True, False] and states[1].queue == 0
    with pytest.raises(HodeError, match="no edge node is up"):
        from hode.schedule.base import up_nodes

        up_nodes([NodeState("x", "yolov5n", 0, up=False)])
    submit(sim, 1, [0, 0])
    done = completions(sim)
    assert set(done) == {(0, 2), (0, 3), (1, 0), (1, 1)}  # every item exactly once
    assert done[(0, 3)][0] == 0 and all(node == 0 for node, _ in done.values())  # moved to a
    # a: item 2 (0.1-0.2), then the re-dispatched item 3 (queued at 0.1), then frame 1
    assert done[(0, 3)][1] == pytest.approx(0.3) and done[(1, 1)][1] == pytest.approx(0.5)
    info = sim.describe()["failover"]
    assert info["redispatched"] == 1 and info["nodes_down"] == 1 and info["readmitted"] == 0
    sim._next_frame = 3
    assert [s.up for s in sim.states()] == [True, True]
    submit(sim, 3, [1])
    assert [(c.node, c.started) for c in sim.poll()] == [(1, pytest.approx(0.5))]  # empty queue, starts now
    assert sim.describe()["failover"]["readmitted"] == 1


def test_fault_assignment_to_a_down_node_is_redirected(tmp_path):
    sim = pair_sim(tmp_path, failure_trace=[{"node": "a", "start": 0, "end": 5}])
    assert [s.up for s in sim.states()] == [False, True]
    submit(sim, 0, [0, 1])  # a scheduler that ignores `up`: both items end on b
    assert sorted((n, f) for n, f in completions(sim).values()) == [(1, pytest.approx(0.1)), (1, pytest.approx(0.2))]
    assert sim.describe()["failover"]["redispatched"] == 1


def test_fault_every_node_down_is_one_clear_error(tmp_path):
    sim = pair_sim(tmp_path, failure_trace=[{"node": "a", "start": 1, "end": 2}, {"node": "b", "start": 1, "end": 2}])
    submit(sim, 0, [0, 1, 0, 1])
    with pytest.raises(HodeError, match="no edge node is up to take the items of 'b' at frame 1"):
        sim.states()


def test_fault_failover_disabled_fails_instead_of_hanging(tmp_path):
    sim = pair_sim(tmp_path, failure_trace=[{"node": "b", "start": 1, "end": 2}], failover={"enabled": False})
    submit(sim, 0, [0, 1])
    with pytest.raises(HodeError, match="'b' fails at frame 1 and runner.failover.enabled is false"):
        sim.states()


def test_fault_hedging_beats_a_straggler_and_cancels_its_queued_copy(tmp_path):
    """b is 10x slower on frame 1: without hedging the frame waits for b; with it, copies on a
    win, the copy still queued on b is taken out, the one already running on b is dropped."""
    trace = [{"node": "b", "start": 1, "end": 2, "factor": 10.0}]
    finish = {}
    for hedge in (False, True):
        sim = pair_sim(tmp_path, load_trace=trace, failover={"hedge": hedge, "deadline_slack_s": 0.01})
        submit(sim, 0, [0, 1, 0, 1])
        completions(sim)  # speeds measured: 10 items/s each
        submit(sim, 1, [0, 1, 0, 1])
        done = completions(sim)
        assert sorted(done) == [(1, 0), (1, 1), (1, 2), (1, 3)]
        finish[hedge] = max(f for _, f in done.values())
        info = sim.describe()["failover"]
        if hedge:
            assert {done[(1, 1)][0], done[(1, 3)][0]} == {0} and info["hedged"] == 2
            assert info["duplicates"] == 1  # b's first slow tile had started: it ran, then was dropped
            assert sim.core.outstanding[1] == 0 and not sim.core.queues[1]  # the unstarted copy left b's queue
    assert finish[False] == pytest.approx(2.2) and finish[True] < finish[False] / 2


def test_fault_trace_and_policy_are_validated(tmp_path):
    for bad, msg in (([{"node": "b", "start": 3, "end": 3}], "0 <= start < end"),
                     ([{"node": "b", "start": 0}], "needs exactly node, start, end"),
                     ([{"node": "zz", "start": 0, "end": 2}], "names node 'zz', not in the topology"),
                     ([{"node": "b", "start": 0, "end": 4}, {"node": "b", "start": 2, "end": 6}], "overlapping")):
        with pytest.raises(ConfigError, match=msg):
            pair_sim(tmp_path, failure_trace=bad)
    for bad, msg in (({"deadline_k": 0.5}, "deadline_k must be a number >= 1"), ({"max_copies": 0}, "max_copies"),
                     ({"hedge": "yes"}, "must be true or false"), ({"nope": 1}, r"unknown key\(s\) \['nope'\]")):
        with pytest.raises(ConfigError, match=msg):
            FailoverPolicy.from_config(bad)
    with pytest.raises(ConfigError, match="replay path does not model failures"):
        sim = pair_sim(tmp_path, failure_trace=[{"node": "b", "start": 0, "end": 2}])
        replay(sim, RoundRobin(), [0], [(0, 0, 608, 704)])


def test_fault_tracker_first_result_wins_and_pick_node():
    t = Tracker(FailoverPolicy(max_copies=2, max_attempts=3))
    it = WorkItem(4, 7, (0, 0, 8, 8), None)
    t.add(4, it, node=0, submitted=0.0, deadline=1.0)
    assert t.overdue(0.5) == [] and [f.key for f in t.overdue(1.0)] == [(4, 7)]
    t.copy_sent((4, 7), 1, deadline=3.0)
    assert t.overdue(2.0) == []  # two copies in flight: max_copies
    assert t.resolve((4, 7), 1, ok=True) == "first"
    assert t.resolve((4, 7), 0, ok=True) == "duplicate" and t.get((4, 7)) is None
    t.add(5, it, node=0, submitted=0.0, deadline=1.0)
    assert t.resolve((5, 7), 0, ok=False) == "lost"
    states = [NodeState("a", "m", 0, queue=4, speed=10.0), NodeState("b", "m", 0, queue=0, speed=1.0),
              NodeState("c", "m", 0, queue=0, speed=100.0, up=False)]
    assert pick_node(states) == 0 and pick_node(states, {0}) == 1 and pick_node(states, {0, 1}) is None
    assert FailureTrace([{"node": "a", "start": 2, "end": 4}]).down("a", 3)


@pytest.fixture(scope="module")
def sim_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("fault-sim-cache")


@pytest.mark.slow
@pytest.mark.parametrize("scheduler", ["roundrobin", "greedy", "salbs", "oracle", "fourk"])
def test_fault_schedulers_compared_under_a_failure_trace(cfg_factory, tmp_path, monkeypatch, sim_cache, scheduler):
    """The same failure trace under each scheduler: no frame lost, every frame has all its items,
    the dead node gets nothing while down and works again after."""
    nodes = "[{name: a, model: yolov5n, device: jetson_nx},{name: b, model: yolov5n, device: jetson_tx2}]"
    cfg = cfg_factory(["runner=sim", f"scheduler={scheduler}", "dataset.frames=5", f"topology.nodes={nodes}",
                       f"runner.backend.cache_dir={sim_cache}", "runner.failure_trace=[{node: b, start: 1, end: 3}]"])
    monkeypatch.chdir(tmp_path)
    from hode import pipeline
    from hode.tasks.run import main

    assigned: dict[int, list[int]] = {}
    submit = pipeline.Pipeline._submit

    def spy(self, frame, trace):
        p = submit(self, frame, trace)
        assigned[frame.index] = list(p.assignment)
        return p

    monkeypatch.setattr(pipeline.Pipeline, "_submit", spy)
    r = main(cfg)
    assert r["frames"] == 5 and not r["interrupted"]
    assert r["tiles"]["processed"] == sum(len(a) for a in assigned.values())
    assert all(1 not in assigned[f] for f in (1, 2)), assigned  # b was down for frames 1 and 2
    info = r["runner"]["failover"]
    assert info["nodes_down"] == 1 and info["readmitted"] == 1
    assert r["runner"]["failure_trace"] == [{"node": "b", "start": 1, "end": 3}]
    assert json.loads((tmp_path / "results.json").read_text())["runner"]["failover"]["nodes_down"] == 1
