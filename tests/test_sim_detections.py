"""runner=sim replays the same detections as runner=inline for the same assignment (real YOLO),
and the lightweight replay path gives the same frame times as the pipeline on the simulator."""
from __future__ import annotations

import numpy as np
import pytest

from hode.cluster.sim import SimBackend
from hode.replay import replay
from hode.config import build
from hode.pipeline import Pipeline
from hode.schedule.base import RoundRobin

from support.config import compose_config

pytestmark = pytest.mark.slow  # real YOLO inference

# Two nodes with two models (local2: yolov5s and yolov5n), two frames of two tiles each: every item
# runs the real detector once per runner. conf 0.01: many boxes per tile even from weakly trained
# weights, so the comparison means something.
COMMON = ["topology=local2", "detector.conf=0.01", "dataset.frames=2", "dataset.width=768", "dataset.height=512",
          "scheduler=roundrobin", "filter=none", "runner.in_flight=1"]
ITEMS = 4


def run(overrides: list[str], frames):
    cfg = compose_config(COMMON + overrides)
    backend = build(cfg.runner.backend, topology=build(cfg.topology), detector=cfg.detector, _recursive_=False)
    seen = []
    poll = backend.poll
    backend.poll = lambda timeout=None: seen.extend(got := poll(timeout)) or got  # record per-item results
    pipe = Pipeline(build(cfg.tiling), build(cfg.filter), build(cfg.scheduler), backend,
                    history=cfg.runner.history, in_flight=cfg.runner.in_flight, progress=False)
    backend.start()
    try:
        trace = pipe.run(frames)
    finally:
        backend.close()
    return cfg, backend, trace, {(c.frame_id, c.item_id): c for c in seen}


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    cache = tmp_path_factory.mktemp("detections")
    frames = list(build(compose_config(COMMON).dataset))
    inline = run(["runner=inline", "runner.backend.batch=1"], frames)
    sim = run(["runner=sim", f"runner.backend.cache_dir={cache}"], frames)
    return frames, inline, sim, cache


def test_sim_detections_equal_inline_per_item_and_per_frame(clip):
    frames, (_, _, tr_i, items_i), (_, sim, tr_s, items_s), _ = clip
    assert set(items_i) == set(items_s) and len(items_i) == ITEMS
    assert {c.node for c in items_i.values()} == {0, 1}  # both models took part
    assert sum(len(c.detections) for c in items_i.values()) > 0
    for key, ci in items_i.items():
        cs = items_s[key]
        assert ci.node == cs.node  # same assignment
        assert np.allclose(ci.detections.boxes, cs.detections.boxes, atol=1e-3)
        assert np.allclose(ci.detections.scores, cs.detections.scores, atol=1e-5)
    for ri, rs in zip(tr_i.records, tr_s.records):
        assert ri.index == rs.index and len(ri.detections) == len(rs.detections)
        assert np.allclose(ri.detections.boxes, rs.detections.boxes, atol=1e-3)
    assert sum(s["cache_misses"] for s in sim.stats()) == ITEMS


def test_second_run_is_all_cache_hits_with_same_result(clip):
    frames, _, (_, _, tr_s, _), cache = clip
    _, sim2, tr2, _ = run(["runner=sim", f"runner.backend.cache_dir={cache}"], frames)
    assert sum(s["cache_misses"] for s in sim2.stats()) == 0 and sim2.cache.hits == ITEMS
    assert [r.finished for r in tr2.records] == [r.finished for r in tr_s.records]  # deterministic clock
    for a, b in zip(tr2.records, tr_s.records):
        assert np.array_equal(a.detections.boxes, b.detections.boxes)


@pytest.mark.parametrize("in_flight", [1, 2])
def test_replay_path_gives_the_pipelines_frame_times(clip, in_flight):
    frames, _, (cfg, _, _, _), cache = clip
    over = ["runner=sim", f"runner.backend.cache_dir={cache}", f"runner.in_flight={in_flight}"]
    _, _, trace, _ = run(over, frames)
    cfg = compose_config(COMMON + over)
    sim = build(cfg.runner.backend, topology=build(cfg.topology), detector=cfg.detector, _recursive_=False)
    sim.start()
    tiler = build(cfg.tiling)
    windows = [t.window for t in tiler.tiles(*frames[0].shape)]
    out = replay(sim, RoundRobin(), [f.index for f in frames], windows, in_flight=in_flight)
    assert list(out.submitted) == [r.submitted for r in trace.records]
    assert list(out.finished) == [r.finished for r in trace.records]
    assert (out.detections > 0).all() and isinstance(sim, SimBackend)


def test_sim_detections_equal_live_for_the_same_assignment(clip):
    """Real gRPC workers with lossless tiles (png, one tile per request, no hedging) return the
    detections the simulator replays: the sim stands in for the live cluster, boxes and all."""
    frames, _, (_, _, tr_s, items_s), _ = clip
    _, live, tr_l, items_l = run(["runner=live", "runner.backend.transport.encoding=png", "runner.backend.transport.batch=1",
                                  "runner.failover.hedge=false", "runner.backend.emulation.time_scale=1", "logger=none"], frames)
    assert set(items_l) == set(items_s)
    for key, cl in items_l.items():
        cs = items_s[key]
        assert cl.node == cs.node  # same assignment
        assert len(cl.detections) == len(cs.detections)
        assert np.allclose(cl.detections.boxes, cs.detections.boxes, atol=1e-2)
    for rl, rs in zip(tr_l.records, tr_s.records):
        assert rl.index == rs.index and np.allclose(rl.detections.boxes, rs.detections.boxes, atol=1e-2)
