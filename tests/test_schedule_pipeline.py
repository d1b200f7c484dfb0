"""Schedulers inside the real camera loop: runner=sim on topology=local2, real detectors on small
synthetic frames (the detection cache is filled by the real YOLO on a miss)."""
from __future__ import annotations

import numpy as np
import pytest

from hode.config import build
from hode.pipeline import Pipeline

from support.config import compose_config

pytestmark = pytest.mark.slow  # real YOLO inference


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("detections")  # shared: later schedulers replay what earlier ones computed


def run(scheduler: str, cache_dir, frames: int = 3):
    cfg = compose_config([f"scheduler={scheduler}", "runner=sim", "topology=local2", f"dataset.frames={frames}",
                          "runner.in_flight=2", f"runner.backend.cache_dir={cache_dir}"])  # 1024x768: 2x2 tiles
    topology = build(cfg.topology)
    backend = build(cfg.runner.backend, topology=topology, detector=cfg.detector, _recursive_=False)
    sched = build(cfg.scheduler)
    sent = []
    submit = backend.submit

    def spy(frame_id, items, assignment):
        sent.append(([it.kind for it in items], list(assignment)))
        submit(frame_id, items, assignment)

    backend.submit = spy
    backend.start()
    try:
        trace = Pipeline(build(cfg.tiling), build(cfg.filter), sched, backend, in_flight=2, progress=False).run(build(cfg.dataset))
    finally:
        backend.close()
    return trace, sent


def test_dqn_with_its_shipped_checkpoint_balances_tiles_over_both_nodes(cache_dir):
    trace, sent = run("dqn", cache_dir)
    assert len(trace.records) == 3 and all(kinds == ["tile"] * 4 for kinds, _ in sent)
    per_node = np.bincount(sum((a for _, a in sent), []), minlength=2)
    assert per_node.sum() == 12 and per_node.min() > 0
    assert all(len(r.detections) > 0 for r in trace.records)


def test_fourk_sends_one_whole_frame_each_time(cache_dir):
    trace, sent = run("fourk", cache_dir)
    assert len(trace.records) == 3 and [kinds for kinds, _ in sent] == [["frame"]] * 3
    assert trace.records[0].keep.all()  # the filter is bypassed


def test_elf_crops_around_the_last_boxes(cache_dir):
    trace, sent = run("elf", cache_dir)
    assert len(trace.records) == 3
    assert sent[0][0] == ["tile"] * 4  # nothing seen yet: every tile
    assert any(set(kinds) == {"crop"} for kinds, _ in sent[1:])  # then crops of the expanded last boxes


class _MaskSpy:
    """A stateful filter that records what it decided and what it was told came back."""

    name = "spy"

    def __init__(self) -> None:
        self.given, self.seen = [], []

    def __call__(self, history, truth=None):
        keep = np.ones(history.shape[1:], bool)
        keep.flat[len(self.given) % keep.size] = False  # a different mask for every frame
        self.given.append(keep)
        return keep

    def observe(self, counts, keep):
        self.seen.append((np.array(counts), np.array(keep)))


def test_with_two_frames_in_flight_a_filter_learns_each_frames_own_mask(cache_dir):
    """The history's latest row is then frame t-2's while the filter's latest mask is t-1's: a
    stateful filter must be told which mask produced which counts (hode.filter.base.observe)."""
    cfg = compose_config(["scheduler=salbs", "runner=sim", "topology=local2", "dataset.frames=4",
                          f"runner.backend.cache_dir={cache_dir}"])
    topology = build(cfg.topology)
    backend = build(cfg.runner.backend, topology=topology, detector=cfg.detector, _recursive_=False)
    spy, tiler = _MaskSpy(), build(cfg.tiling)
    backend.start()
    try:
        trace = Pipeline(tiler, spy, build(cfg.scheduler), backend, in_flight=2, progress=False).run(build(cfg.dataset))
    finally:
        backend.close()
    assert len(spy.seen) == len(trace.records) == 4
    for (counts, keep), rec in zip(spy.seen, trace.records):  # both in the order frames came back
        np.testing.assert_array_equal(keep, spy.given[rec.index])
        np.testing.assert_array_equal(counts, tiler.counts(rec.detections, 768, 1024))


class _PixelSpy(_MaskSpy):
    """A filter that also looks at pixels and boxes (as the motion guard does)."""

    wants_boxes = True

    def __init__(self) -> None:
        super().__init__()
        self.images, self.boxes = [], []

    def see(self, image, tile):
        assert len(self.images) == len(self.given)  # handed the frame before it is asked
        self.images.append((image, tile))

    def observe(self, counts, keep, boxes=None):
        super().observe(counts, keep)
        self.boxes.append(boxes)


def test_the_pipeline_hands_a_filter_each_frame_and_each_results_boxes(cache_dir):
    cfg = compose_config(["scheduler=salbs", "runner=sim", "topology=local2", "dataset.frames=4",
                          f"runner.backend.cache_dir={cache_dir}"])
    topology = build(cfg.topology)
    backend = build(cfg.runner.backend, topology=topology, detector=cfg.detector, _recursive_=False)
    spy, tiler = _PixelSpy(), build(cfg.tiling)
    frames = list(build(cfg.dataset))
    backend.start()
    try:
        trace = Pipeline(tiler, spy, build(cfg.scheduler), backend, in_flight=2, progress=False).run(frames)
    finally:
        backend.close()
    assert [t for _, t in spy.images] == [tiler.tile] * 4
    for (image, _), f in zip(spy.images, frames):
        assert image is f.image
    newest = -1
    for boxes, rec in zip(spy.boxes, trace.records):  # boxes of each result, unless an older frame came back late
        if rec.index > newest:
            newest = rec.index
            np.testing.assert_array_equal(boxes, rec.detections.boxes)
        else:
            assert boxes is None
