#!/usr/bin/env python
"""The project's headline numbers, measured side by side in one run (paper values beside them).

On the same synthetic 4K frames, the paper's five nodes (topology=paper5) in the simulator:
  - HODE (filter=st + scheduler=dqn) vs Infer-4K (scheduler=fourk, native 4K): fps ratio, mAP50 loss
  - HODE vs the oracle (true occupancy, true current speeds): throughput fraction
  - camera-side costs per 4K frame in HODE's run: flow filter, scheduling decision, tiling, merge, total;
    and the filter and the DQN decision timed alone (median over many calls, batch 1, one thread)
  - simulator speed: frames per wall second of the replay path (queues + DQN scheduler, no camera
    loop) and of the pipeline run above
Methods are the Fig. 11 sweep's (conf/experiment/method/*.yaml), applied to one composed config.

Frames in flight (``runner.in_flight``, K) decide the comparison, so it is run for each K given:
Infer-4K puts a whole frame on one node, so with K=1 four nodes idle while one works (latency-bound,
the real-time regime: each frame is answered before the next is sent), and with K >= 5 every node
has a frame of its own (throughput-bound, at the price of latency). HODE splits every frame over all
nodes at any K. The first K is the headline; the rest are printed beside it.

    python experiments/bench_headline.py                       # 12 frames (cache misses run YOLO: minutes on a CPU)
    python experiments/bench_headline.py --frames 60 --replay-frames 20000
    python run.py +experiment=bench                            # the same as a Hydra job (results.json in its run dir)
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict

from hode.config import CONF_DIR, ROOT, build, compose_config, load_option
from hode.errors import HodeError, check

METHODS = ("fourk", "hode", "oracle")
PAPER = {"speedup": 2.01, "map_loss": "< 1%", "filter_ms": 2.7, "schedule_ms": 1.0}


def with_method(cfg: DictConfig, method: str) -> DictConfig:
    """``cfg`` with a method's filter/scheduler options and values (conf/experiment/method/<m>.yaml)."""
    spec = OmegaConf.load(CONF_DIR / "experiment" / "method" / f"{method}.yaml")
    out = cfg.copy()
    with open_dict(out):
        for entry in spec.get("defaults", []):
            for key, option in dict(entry).items():  # {"override /filter": "st"}
                group = str(key).split("/")[-1]
                if out[group].get("name") != str(option):  # keep the command line's settings of the same option
                    out[group] = load_option(group, str(option))
        rest = OmegaConf.masked_copy(spec, [k for k in spec if k != "defaults"])
        out.merge_with(rest)
    return out


def run_method(cfg: DictConfig) -> dict:
    """One pipeline run of ``cfg`` (runner=sim): the run task's summary, plus the objects for timing."""
    from hode.tasks.run import build_pipeline, run_pipeline, summarize

    frames = list(build(cfg.dataset))
    flt, sched = build(cfg.filter), build(cfg.scheduler)
    pipe, backend = build_pipeline(cfg, flow_filter=flt, scheduler=sched, progress=bool(cfg.progress))
    trace, stats, _, t0 = run_pipeline(pipe, backend, frames)
    s = summarize(trace, stats)
    s["overhead_median_ms"] = {k: 1000 * statistics.median(v) if v else None for k, v in trace.overhead_s.items()}
    s["overhead_max_ms"] = {k: 1000 * max(v) if v else None for k, v in trace.overhead_s.items()}
    s["wall_s"] = time.perf_counter() - t0
    s["cache_misses"] = sum(n.get("cache_misses", 0) for n in stats)
    return {"summary": s, "filter": flt, "scheduler": sched, "backend": backend, "frames": frames}


def median_ms(fn, reps: int) -> float:
    fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return 1000 * statistics.median(ts)


def component_times(cfg: DictConfig, run: dict, reps: int) -> dict:
    """The filter on a real history and the DQN decision on real node states, timed alone."""
    import numpy as np
    import torch

    from hode.schedule.base import tile_work

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the camera's one core
    try:
        tiler, frame = build(cfg.tiling), run["frames"][-1]
        H, W = frame.shape
        grid = tiler.grid(H, W)
        counts = [tiler.counts(f.gt, H, W) for f in run["frames"]]
        need = int(cfg.runner.history)
        counts = (counts * need)[-need:] if len(counts) < need else counts[-need:]  # a full history, as mid-run
        hist = np.stack(counts).astype(np.float32)
        flt_ms = median_ms(lambda: run["filter"](hist, None), reps)
        items = tile_work(frame, tiler, np.ones(grid, bool), hist[-1])
        states = run["backend"].states()
        sched_ms = median_ms(lambda: run["scheduler"].assign(items, states), reps)
    finally:
        torch.set_num_threads(threads)
    return {"filter_ms_median": flt_ms, "schedule_ms_median": sched_ms, "reps": reps, "tiles": len(items)}


def timed_replay(cfg: DictConfig, frames: int, windows: list, in_flight: int):
    """``(ReplayRun, wall s)``: ``frames`` frames of ``cfg``'s scheduler through a fresh simulator's
    replay path (no detections counted)."""
    from hode.replay import replay

    sim = build(cfg.runner.backend, topology=build(cfg.topology), detector=cfg.detector, _recursive_=False)
    sim.start()
    try:
        t0 = time.perf_counter()
        out = replay(sim, build(cfg.scheduler), list(range(frames)), windows, in_flight=in_flight, count_detections=False)
        return out, time.perf_counter() - t0
    finally:
        sim.close()


def simulator_speed(cfg: DictConfig, replay_frames: int) -> dict:
    """Frames per wall second of the simulator's replay path with HODE's scheduler (no detections)."""
    windows = [t.window for t in build(cfg.tiling).tiles(int(cfg.dataset.height), int(cfg.dataset.width))]
    out, wall = timed_replay(cfg, replay_frames, windows, int(cfg.runner.in_flight))
    return {"frames": replay_frames, "wall_s": wall, "frames_per_s": replay_frames / wall, "virtual_fps": out.fps}


def with_in_flight(cfg: DictConfig, k: int) -> DictConfig:
    out = cfg.copy()
    with open_dict(out):
        out.runner.in_flight = int(k)
    return out


def run_methods(cfg: DictConfig) -> tuple[dict, dict]:
    """fourk, HODE and oracle on ``cfg``: their summaries and the run objects."""
    runs, methods = {}, {}
    for m in METHODS:
        mc = with_method(cfg, m)
        print(f"bench: {m} ({mc.scheduler.name} + {mc.filter.name}) on {cfg.dataset.frames} frames, "
              f"{cfg.runner.in_flight} in flight ...", flush=True)
        runs[m] = run_method(mc)
        s = runs[m]["summary"]
        methods[m] = {k: s[k] for k in ("fps", "map50", "map50_95", "latency_ms", "tiles", "overhead_ms",
                                        "overhead_median_ms", "overhead_max_ms", "frames", "wall_s", "cache_misses")}
    return methods, runs


def fourk_ceiling(cfg: DictConfig) -> float:
    """Infer-4K's throughput bound, frames/s: every node busy with whole frames, noise-free static
    speeds (sum over nodes of 1 / 4K service time). A short run stays below it (ramp-up, drain)."""
    from hode.profiles import FRAME4K_PIXELS, load_profile

    pdir = cfg.runner.backend.get("profiles_dir")
    topo = build(cfg.topology)
    return sum(1.0 / load_profile(n.device, profiles_dir=pdir).base_s(n.model, FRAME4K_PIXELS) for n in topo.nodes)


def fourk_long_run(cfg: DictConfig, frames: int = 2000, in_flight: int = 16) -> float:
    """Infer-4K's fps over ``frames`` frames on the simulator's replay path (whole frames, so no
    detections are needed): its capacity without the ramp-up and drain of a short camera-loop run."""
    mc = with_method(cfg, "fourk")
    return timed_replay(mc, frames, [(0, 0, int(mc.dataset.width), int(mc.dataset.height))], in_flight)[0].fps


def bench(cfg: DictConfig, replay_frames: int = 5000, reps: int = 500, in_flight: list[int] | None = None) -> dict:
    ks = [int(k) for k in (in_flight or [int(cfg.runner.in_flight)])]
    check(all(k >= 1 for k in ks), f"in_flight values must be >= 1, got {ks}")
    cfg = with_in_flight(cfg, ks[0])
    res = {"frames": int(cfg.dataset.frames), "in_flight": ks[0]}
    res["methods"], runs = run_methods(cfg)
    res["by_in_flight"] = {}
    for k in ks:
        ms = res["methods"] if k == ks[0] else run_methods(with_in_flight(cfg, k))[0]
        f, h, o = (ms[m] for m in METHODS)
        res["by_in_flight"][str(k)] = {
            "fps": {m: ms[m]["fps"] for m in METHODS},
            "latency_ms": {m: ms[m]["latency_ms"] for m in METHODS},
            "map50": {m: ms[m]["map50"] for m in METHODS},
            "speedup_hode_over_fourk": h["fps"] / f["fps"], "hode_over_oracle_fps": h["fps"] / o["fps"]}
    if len(ks) > 1:  # throughput capacity: each method at the K that serves it best (latency aside)
        best = {m: max(res["by_in_flight"].items(), key=lambda kv: kv[1]["fps"][m]) for m in METHODS}
        res["at_capacity"] = {"fps": {m: kv[1]["fps"][m] for m, kv in best.items()},
                              "in_flight": {m: int(kv[0]) for m, kv in best.items()}}
        res["at_capacity"]["speedup_hode_over_fourk"] = res["at_capacity"]["fps"]["hode"] / res["at_capacity"]["fps"]["fourk"]
    res["fourk_ceiling_fps"] = fourk_ceiling(cfg)
    res["hode_best_fps"] = max(v["fps"]["hode"] for v in res["by_in_flight"].values())
    res["hode_best_over_fourk_ceiling"] = res["hode_best_fps"] / res["fourk_ceiling_fps"]
    res["fourk_long_run"] = {"frames": 2000, "in_flight": 16, "fps": fourk_long_run(cfg)}
    res["hode_best_over_fourk_long_run"] = res["hode_best_fps"] / res["fourk_long_run"]["fps"]
    # The bound on any filter + scheduler pair: true occupancy and true speeds (on these frames, K values)
    res["oracle_best_fps"] = max(v["fps"]["oracle"] for v in res["by_in_flight"].values())
    res["oracle_best_over_fourk_long_run"] = res["oracle_best_fps"] / res["fourk_long_run"]["fps"]
    f, h, o = (res["methods"][m] for m in METHODS)
    res["speedup_hode_over_fourk"] = h["fps"] / f["fps"]
    res["map50_loss_points"] = (f["map50"] - h["map50"]) if None not in (f["map50"], h["map50"]) else None
    res["hode_over_oracle_fps"] = h["fps"] / o["fps"]
    res["camera_ms_per_frame"] = sum(v for v in h["overhead_ms"].values() if v is not None)
    hode_cfg = with_method(cfg, "hode")
    res["components"] = component_times(hode_cfg, runs["hode"], reps)
    res["simulator"] = simulator_speed(hode_cfg, replay_frames)
    res["simulator"]["pipeline_frames_per_s"] = h["frames"] / h["wall_s"]
    return res


def table(r: dict) -> str:
    f, h, o = (r["methods"][m] for m in METHODS)
    c, s = r["components"], r["simulator"]
    med = h.get("overhead_median_ms") or h["overhead_ms"]
    loss = r["map50_loss_points"]
    rel = loss / f["map50"] if loss is not None and f["map50"] else None
    rows = [
        ("HODE / Infer-4K throughput", f"{PAPER['speedup']:.2f}x (12.13 / 6.02 fps)",
         f"{r['speedup_hode_over_fourk']:.2f}x ({h['fps']:.2f} / {f['fps']:.2f} fps)"),
        ("mAP50 loss, Infer-4K -> HODE", PAPER["map_loss"],
         "n/a" if loss is None else f"{100 * loss:+.2f} pt ({f['map50']:.3f} -> {h['map50']:.3f}, {100 * rel:+.1f}% rel)"),
        ("HODE / oracle throughput", "n/a", f"{r['hode_over_oracle_fps']:.3f} ({h['fps']:.2f} / {o['fps']:.2f} fps)"),
        ("flow filter latency / frame", f"{PAPER['filter_ms']} ms",
         f"{med['filter']:.3f} ms median in the run (mean {h['overhead_ms']['filter']:.3f}); "
         f"{c['filter_ms_median']:.3f} ms alone"),
        ("scheduling decision / frame", f"{PAPER['schedule_ms']} ms",
         f"{med['schedule']:.3f} ms median in the run (mean {h['overhead_ms']['schedule']:.3f}); "
         f"{c['schedule_ms_median']:.3f} ms alone ({c['tiles']} tiles)"),
        ("camera-side overhead / 4K frame", "n/a",
         f"{sum(med.values()):.2f} ms median sum (" + ", ".join(f"{k} {v:.2f}" for k, v in med.items())
         + f"); mean {r['camera_ms_per_frame']:.2f}"),
        ("simulator frames / wall s", "n/a",
         f"{s['frames_per_s']:,.0f} replay path ({s['frames']} frames), {s['pipeline_frames_per_s']:.2f} pipeline "
         f"(incl. {h['cache_misses']} cache misses)"),
    ]
    w = max(len(a) for a, _, _ in rows)
    lines = [f"headline numbers: {r['frames']} synthetic 4K frames, topology=paper5, runner=sim (virtual fps), "
             f"{r.get('in_flight', '?')} frame(s) in flight",
             f"  {'':<{w}}  {'paper':<26}this run"]
    lines += [f"  {a:<{w}}  {b:<26}{c_}" for a, b, c_ in rows]
    by = r.get("by_in_flight") or {}
    if len(by) > 1:
        lines += ["", "by frames in flight (K): fps, p50 / p95 latency ms",
                  f"  {'K':>3}  {'Infer-4K':>22}  {'HODE':>22}  {'oracle':>22}  {'HODE/4K':>8}  {'HODE/oracle':>11}"]
        for k, v in by.items():
            cell = lambda m: (f"{v['fps'][m]:6.2f} ({v['latency_ms'][m]['p50']:4.0f} / "  # noqa: E731
                              f"{v['latency_ms'][m]['p95']:4.0f})")
            lines.append(f"  {k:>3}  {cell('fourk'):>22}  {cell('hode'):>22}  {cell('oracle'):>22}  "
                         f"{v['speedup_hode_over_fourk']:7.2f}x  {v['hode_over_oracle_fps']:11.3f}")
        cap = r.get("at_capacity")
        if cap:
            lines.append(f"  at capacity (each at its best K of these): Infer-4K {cap['fps']['fourk']:.2f} fps "
                         f"(K={cap['in_flight']['fourk']}), HODE {cap['fps']['hode']:.2f} fps (K={cap['in_flight']['hode']}): "
                         f"{cap['speedup_hode_over_fourk']:.2f}x")
    if "fourk_ceiling_fps" in r:
        lines.append(f"  Infer-4K's ceiling (every node busy, no ramp-up): {r['fourk_ceiling_fps']:.2f} fps; "
                     f"HODE's best {r['hode_best_fps']:.2f} fps is {r['hode_best_over_fourk_ceiling']:.2f}x it")
    if "fourk_long_run" in r:
        lr = r["fourk_long_run"]
        lines.append(f"  Infer-4K over {lr['frames']} frames, {lr['in_flight']} in flight (replay path): {lr['fps']:.2f} fps; "
                     f"HODE's best is {r['hode_best_over_fourk_long_run']:.2f}x it")
        if "oracle_best_over_fourk_long_run" in r:
            lines.append(f"  the oracle's best (true occupancy, true speeds: the bound for any filter and scheduler) "
                         f"{r['oracle_best_fps']:.2f} fps is {r['oracle_best_over_fourk_long_run']:.2f}x it")
    return "\n".join(lines)


def main(cfg: DictConfig) -> dict:
    """``python run.py +experiment=bench``: the benchmark as a task (results.json in the run dir)."""
    from hode.results import run_dir, write_results

    b = cfg.get("bench", {})
    ks = b.get("in_flight")
    res = bench(cfg, int(b.get("replay_frames", 5000)), int(b.get("reps", 500)),
                [int(k) for k in ks] if ks else None)
    res = write_results(cfg, {"task": "bench", **res})
    print(table(res))
    print(f"results: {run_dir() / 'results.json'}")
    return res


def cli() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=12, help="synthetic 4K frames per method")
    ap.add_argument("--replay-frames", type=int, default=5000, help="frames through the simulator's replay path")
    ap.add_argument("--reps", type=int, default=500, help="calls timed for the filter and the DQN decision")
    ap.add_argument("--in-flight", type=int, nargs="+", default=[1, 2, 4],
                    help="frames in flight (runner.in_flight) to compare at; the first is the headline")
    ap.add_argument("--out", default=str(ROOT / "outputs" / "bench_headline" / "results.json"))
    ap.add_argument("overrides", nargs="*", help="extra Hydra overrides, e.g. seed=3 dataset.density=1.5")
    args = ap.parse_args()
    over = ["runner=sim", "topology=paper5", "logger=none", "progress=false", f"dataset.frames={args.frames}",
            *args.overrides]
    try:
        res = bench(compose_config(over), args.replay_frames, args.reps, args.in_flight)
    except HodeError as e:
        raise SystemExit(f"error: {e}") from None
    res["overrides"] = over
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=1, default=float))
    print(table(res))
    print(f"results: {args.out}")


if __name__ == "__main__":
    cli()
