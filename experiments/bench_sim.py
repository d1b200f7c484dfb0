#!/usr/bin/env python
"""Simulator speed: simulated 4K frames per second for the paper's five nodes, detections cached.

Two paths over the same cached frames, side by side:
  pipeline  hode.pipeline.Pipeline + runner=sim (the camera loop: work items, scheduler, queues,
            per-item completions, NMS merge of the replayed boxes, filter history)
  replay    hode.replay.replay on the same SimBackend core (queues, noise, load trace,
            measured node states, scheduler, cached detection counts; no items/merge)
First the cache is filled by one pipeline pass that runs the real detector on every tile (slow on
a CPU, once); then both paths are timed, and the pipeline's time is broken down. Each figure is
given per wall second and per CPU second of this process: on a machine shared with other jobs the
wall figure measures the machine's load as much as the simulator, the CPU figure does not.

    python experiments/bench_sim.py                 # 4 cached 4K frames, replayed many times
    python experiments/bench_sim.py --frames 2 --pipeline-frames 500 --replay-frames 20000
"""
from __future__ import annotations

import argparse
import json
import os
import time
from collections import defaultdict
from pathlib import Path

from hode.config import ROOT, build, compose_config
from hode.errors import HodeError
from hode.replay import replay
from hode.schedule.base import RoundRobin
from hode.tasks.run import build_pipeline
from hode.types import Frame


def config(frames: int, cache_dir: str | None, extra: list[str]):
    over = ["runner=sim", "topology=paper5", "scheduler=roundrobin", "filter=none", "logger=none", "progress=false",
            f"dataset.frames={frames}", "dataset.width=3840", "dataset.height=2160", "runner.in_flight=2", *extra]
    if cache_dir:
        over.append(f"runner.backend.cache_dir={cache_dir}")
    return compose_config(over)


def make_sim(cfg):
    sim = build(cfg.runner.backend, topology=build(cfg.topology), detector=cfg.detector, _recursive_=False)
    sim.start()
    return sim


class Timed:
    """Wall time spent in each backend method (the rest of the pipeline is the camera loop)."""

    def __init__(self, backend, totals: dict) -> None:
        self._b, self._t = backend, totals

    def __getattr__(self, name):
        fn = getattr(self._b, name)
        if not callable(fn):
            return fn

        def timed(*a, **k):
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                self._t[name] += time.perf_counter() - t0
        return timed


def run_pipeline(cfg, frames: list[Frame], n: int, totals: dict | None = None):
    sim = make_sim(cfg)
    backend = Timed(sim, totals) if totals is not None else sim
    pipe, _ = build_pipeline(cfg, scheduler=RoundRobin(), backend=backend, progress=False)
    stream = (Frame(frames[i % len(frames)].index, frames[i % len(frames)].image, None) for i in range(n))
    t0, c0 = time.perf_counter(), time.process_time()
    trace = pipe.run(stream)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    sim.close()
    return sim, trace, wall, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=4, help="distinct 4K frames rendered and cached")
    ap.add_argument("--pipeline-frames", type=int, default=2000, help="frames through the pipeline path")
    ap.add_argument("--replay-frames", type=int, default=50000, help="frames through the replay path")
    ap.add_argument("--cache-dir", default=None, help="detection cache (default: the runner's, .cache/detections)")
    ap.add_argument("--out", default=str(ROOT / "outputs" / "bench_sim" / "results.json"))
    ap.add_argument("overrides", nargs="*", help="extra Hydra overrides, e.g. runner=sim_dynamic")
    args = ap.parse_args()

    try:
        cfg = config(args.frames, args.cache_dir, args.overrides)
    except HodeError as e:
        raise SystemExit(f"error: {e}") from None
    frames = list(build(cfg.dataset))
    t0 = time.perf_counter()
    sim, *_ = run_pipeline(cfg, frames, len(frames))  # fills the cache (real detector on each miss)
    fill_s = time.perf_counter() - t0
    misses = sum(s["cache_misses"] for s in sim.stats())
    print(f"cache: {len(frames)} frames x {len(build(cfg.tiling).tiles(2160, 3840))} tiles, {misses} misses "
          f"computed in {fill_s:.1f} s ({sim.cache.root})")

    totals: dict = defaultdict(float)
    load = os.getloadavg()[0]
    sim, trace, wall_p, cpu_p = run_pipeline(cfg, frames, args.pipeline_frames, totals)
    assert sum(s["cache_misses"] for s in sim.stats()) == 0, "the timed pipeline pass must be all cache hits"
    fps_p, cfps_p = len(trace.records) / wall_p, len(trace.records) / cpu_p
    per = lambda s: 1e6 * s / len(trace.records)  # noqa: E731  microseconds per frame
    phases = {f"pipeline.{k}": per(sum(v)) for k, v in trace.overhead_s.items()}  # filter, tile (work items), schedule, merge
    phases.update({f"backend.{k}": per(v) for k, v in totals.items()})
    phases["other (loop, history, counts, feedback)"] = per(wall_p) - sum(phases.values())

    sim = make_sim(cfg)
    windows = [t.window for t in build(cfg.tiling).tiles(2160, 3840)]
    ids = [frames[i % len(frames)].index for i in range(args.replay_frames)]
    t0, c0 = time.perf_counter(), time.process_time()
    out = replay(sim, RoundRobin(), ids, windows, in_flight=cfg.runner.in_flight)
    wall_r, cpu_r = time.perf_counter() - t0, time.process_time() - c0
    fps_r, cfps_r = len(ids) / wall_r, len(ids) / cpu_r
    load = max(load, os.getloadavg()[0])

    print(f"\nsimulated 4K frames per second, five nodes (paper5), {len(windows)} tiles/frame, cached detections"
          f" (load average {load:.1f} on {os.cpu_count()} cores)")
    print(f"  {'':<16}{'per wall s':>12}{'per CPU s':>12}")
    print(f"  {'pipeline + sim':<16}{fps_p:>12,.0f}{cfps_p:>12,.0f}   ({len(trace.records)} frames)")
    print(f"  {'replay path':<16}{fps_r:>12,.0f}{cfps_r:>12,.0f}   ({len(ids)} frames)")
    print(f"  replay / pipeline = {fps_r / fps_p:.1f}x (wall), {cfps_r / cfps_p:.1f}x (CPU)")
    print(f"  acceptance >= 10,000 frames/s, replay path: {'met' if fps_r >= 10_000 else 'NOT met'} per wall s, "
          f"{'met' if cfps_r >= 10_000 else 'NOT met'} per CPU s; pipeline: {'met' if cfps_p >= 10_000 else 'not met'}")
    print("\nwhere a pipeline frame's wall time goes (us/frame):")
    for k, v in sorted(phases.items(), key=lambda kv: -kv[1]):
        print(f"  {k:<42} {v:8.1f}")
    print(f"\nvirtual: pipeline {len(trace.records) / (trace.ended - trace.started):.2f} fps, "
          f"replay {out.fps:.2f} fps on the simulated cluster")
    res = {"frames_cached": len(frames), "tiles_per_frame": len(windows), "cache_fill_s": fill_s,
           "load_average": load, "cpu_count": os.cpu_count(),
           "pipeline": {"frames": len(trace.records), "wall_s": wall_p, "cpu_s": cpu_p, "frames_per_s": fps_p,
                        "frames_per_cpu_s": cfps_p, "us_per_frame": phases},
           "replay": {"frames": len(ids), "wall_s": wall_r, "cpu_s": cpu_r, "frames_per_s": fps_r,
                      "frames_per_cpu_s": cfps_r},
           "ratio_replay_over_pipeline": fps_r / fps_p, "acceptance_10k": {"wall": fps_r >= 10_000, "cpu": cfps_r >= 10_000},
           "virtual_fps": {"pipeline": len(trace.records) / (trace.ended - trace.started), "replay": out.fps},
           "overrides": args.overrides}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=1))
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
