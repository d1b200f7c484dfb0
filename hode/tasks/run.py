"""``task=run`` (the default): run the pipeline over a dataset and measure it."""
from __future__ import annotations

import logging
import time
from typing import Callable, Iterable, NamedTuple

import numpy as np
from omegaconf import DictConfig

from hode.config import build
from hode.metrics import coco_map, median_ms, percentiles_ms
from hode.outputs import SaveSettings, write_annotated, write_detections
from hode.pipeline import FrameRecord, Pipeline, RunTrace
from hode.results import plain_config, run_dir, summary_table, write_results

log = logging.getLogger(__name__)


def summarize(trace: RunTrace, stats: list[dict], accuracy: bool = True) -> dict:
    """The results.json keys every run shares (see docs/results.md); ``accuracy=False`` leaves
    mAP out (``None``)."""
    recs = trace.records
    wall = max(trace.ended - trace.started, 1e-9)
    gts = [r.gt for r in recs if r.gt is not None]
    acc = {"map50": None, "map50_95": None}
    if gts and accuracy:
        acc = coco_map(gts, [r.detections for r in recs if r.gt is not None])
    total = sum(r.tiles_total for r in recs)
    processed = sum(r.items for r in recs)
    for s in stats:
        s["utilization"] = s["busy_s"] / wall
    return {
        "frames": len(recs),
        "fps": len(recs) / wall,
        "duration_s": wall,
        "latency_ms": percentiles_ms([r.latency_s for r in recs]),
        **acc,
        "gt": "dataset" if gts else None,
        "tiles": {"total": total, "processed": processed, "skipped": max(total - processed, 0)},
        "overhead_ms": {k: median_ms(v) for k, v in trace.overhead_s.items()},
        "nodes": stats,
        "interrupted": trace.interrupted,
    }


class PipelineRun(NamedTuple):
    trace: RunTrace
    stats: list[dict]
    backend: object
    wall_started: float  # perf_counter when the backend was up and the first frame went out


def build_pipeline(cfg: DictConfig, flow_filter=None, scheduler=None, topology=None,
                   progress: bool | None = None, backend=None) -> tuple[Pipeline, object]:
    """The run's pipeline and backend from ``cfg`` (filter, scheduler, topology, backend unless
    given: a benchmark passes a started backend to run several passes on it).
    Building validates every stage's config, so do it before anything with side effects."""
    topology = topology if topology is not None else build(cfg.topology)
    tiler = build(cfg.tiling)
    flow_filter = flow_filter if flow_filter is not None else build(cfg.filter)
    scheduler = scheduler if scheduler is not None else build(cfg.scheduler)
    if hasattr(scheduler, "fit"):  # a learned scheduler finds its checkpoint before any worker starts
        scheduler.fit([n.name for n in topology.nodes])
    if backend is None:
        backend = build(cfg.runner.backend, topology=topology, detector=cfg.detector, _recursive_=False)
    pipeline = Pipeline(tiler, flow_filter, scheduler, backend, history=cfg.runner.history,
                        in_flight=cfg.runner.in_flight, progress=cfg.progress if progress is None else progress)
    return pipeline, backend


def run_pipeline(pipeline: Pipeline, backend, frames: Iterable) -> PipelineRun:
    """Start the backend, run the frames, and always close the backend: the loop every task and
    benchmark shares."""
    backend.start()
    started = time.perf_counter()
    try:
        trace = pipeline.run(frames, total=len(frames) if hasattr(frames, "__len__") else None)
    finally:
        stats = backend.stats()
        backend.close()
    return PipelineRun(trace, stats, backend, started)


def frame_size(source) -> tuple[int, int] | None:
    """(W, H) of the frames a source yields, when it knows before reading them."""
    size = getattr(source, "size", None)
    if size is None and isinstance(getattr(source, "width", None), int) and isinstance(getattr(source, "height", None), int):
        size = (source.width, source.height)
    return tuple(size) if size is not None else None


def main(cfg: DictConfig) -> dict:
    out = run_dir()
    save = SaveSettings(**cfg.get("save", {}))
    source = build(cfg.dataset)
    topology = build(cfg.topology)
    pipeline, backend = build_pipeline(cfg, topology=topology)
    pipeline.fit(frame_size(source))  # every stage checked against the frames before any labelling or worker
    if hasattr(source, "prepare"):  # one-time work outside the timed loop (e.g. golden labels)
        source.prepare()
    logger = build(cfg.logger)
    name = f"{cfg.scheduler.get('name', 'sched')}-{cfg.filter.get('name', 'filter')}-{topology.name}"
    logger.start(plain_config(cfg), out, name=name, tags=[cfg.task.name, str(cfg.scheduler.get("name")),
                                                          str(cfg.filter.get("name")), topology.name])

    def on_frame(r: FrameRecord) -> None:
        logger.log({"latency_ms": r.latency_s * 1000, "items": r.items, "detections": len(r.detections)}, step=r.index)

    pipeline.on_frame = on_frame
    trace, stats, _, _ = run_pipeline(pipeline, backend, source)
    try:
        print(f"scoring {len(trace.records)} frames (mAP)", flush=True)
        results = {"task": "run", **summarize(trace, stats)}
    except KeyboardInterrupt:  # Ctrl-C while scoring: the frames' figures are kept, accuracy is left out
        trace.interrupted = True
        results = {"task": "run", **summarize(trace, stats, accuracy=False), "accuracy": "interrupted"}
    if hasattr(backend, "describe"):  # how the times were made (e.g. live: emulated, time_scale)
        results["runner"] = backend.describe()
    if results["gt"]:  # a source whose truth is not human labels says what it is (e.g. "golden")
        results["gt"] = getattr(source, "gt_kind", None) or "dataset"
    if getattr(source, "gt_file", None):
        results["gt_file"] = str(source.gt_file)
    if getattr(pipeline.filter, "transferred", None):
        results["filter_transfer"] = pipeline.filter.transferred
    if hasattr(source, "skipped"):  # unreadable/truncated input the source skipped, one line each
        results["skipped_input"] = [f"{k}: {v}" for k, v in dict(source.skipped).items()]
    results["outputs"] = write_detections(out, trace.records, save, source)
    if save.annotated and not trace.interrupted:
        results["outputs"]["annotated"] = write_annotated(out, source, trace.records, pipeline.tiler, save.annotated)
    results = write_results(cfg, results)
    logger.summary({k: v for k, v in results.items() if isinstance(v, (int, float)) and v is not None})
    logger.finish()
    print(summary_table(results))
    print(f"results: {out / 'results.json'}")
    if trace.interrupted:
        raise KeyboardInterrupt
    return results
