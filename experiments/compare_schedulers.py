#!/usr/bin/env python
"""Every scheduler x filter pair on the paper's five nodes in the simulator, side by side.

Three parts, one JSON (``--out``) and one printed table each:

1. pipeline  The real camera loop (hode.pipeline.Pipeline) with runner=sim on topology=paper5 and
             the default 4K synthetic scene: fps and latency on the virtual clock, mAP50 of the
             merged detections (replayed from the detection cache, computed by the real detectors on
             a miss), for static speeds and for a load trace in which three nodes slow down mid-run
             (the Fig. 13 pattern of runner=sim_dynamic, compressed to the clip's length). Each
             scheduler's fps is also given as a fraction of the oracle's with the same filter (fourk
             and elf bypass the filter: they are compared with oracle + filter=none) and of fourk's.
2. replay    Timing at scale (hode.replay.replay: the same queues, no merge): every tile
             of every frame for ``--replay-frames`` frames, static and with runner=sim_dynamic's own
             trace (slowdowns from frame 100 to 350).
3. decision  The scheduler's own time per decision (``assign``) for five nodes, median and p95
             over many frames of random node states (one CPU thread).

    python experiments/compare_schedulers.py                      # 40 frames, both scenarios
    python experiments/compare_schedulers.py --frames 12 --schedulers dqn salbs fourk --filters none
    python experiments/compare_schedulers.py --parts decision     # just the decision latency

The first run fills the detection cache (.cache/detections) with the real detectors' outputs
for every tile, crop and frame any scheduler sends: slow on a CPU, once.
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf, open_dict

from hode.config import ROOT, build, compose_config
from hode.errors import HodeError

SCHEDULERS = ["fourk", "elf", "roundrobin", "salbs", "greedy", "dqn", "oracle_grid", "oracle"]
NO_FILTER = {"fourk", "elf"}  # they choose their own regions: filter=none only
FILTERS = ["none", "st"]


def dynamic_trace(frames: int) -> list[dict]:
    """runner=sim_dynamic's pattern (nx-s 3x, then gtx1070 2x, overlapping tx2 4x) scaled to ``frames``."""
    f = lambda x: int(round(x * frames / 400))  # noqa: E731  (sim_dynamic spans frames 100-350 of 400)
    return [{"node": "nx-s", "start": f(100), "end": f(200), "factor": 3.0},
            {"node": "gtx1070", "start": f(200), "end": f(300), "factor": 2.0},
            {"node": "tx2", "start": f(250), "end": f(350), "factor": 4.0}]


def base_overrides(args) -> list[str]:
    over = ["runner=sim", "topology=paper5", "logger=none", "progress=false", f"dataset.frames={args.frames}",
            f"runner.in_flight={args.in_flight}", f"seed={args.seed}"]
    if args.cache_dir:
        over.append(f"runner.backend.cache_dir={args.cache_dir}")
    return over + list(args.overrides)


def scheduler_overrides(args, scheduler: str) -> list[str]:
    """``scheduler=<name>``, and ``--dqn-ckpt`` for the DQN."""
    return [f"scheduler={scheduler}"] + ([f"scheduler.ckpt={args.dqn_ckpt}"] if scheduler == "dqn" and args.dqn_ckpt else [])


# ----- 1. the camera loop ------------------------------------------------------------------------

def run_pipeline(args, scheduler: str, flt: str, trace: list[dict], frames: list) -> dict:
    from hode.tasks.run import build_pipeline, summarize
    from hode.tasks.run import run_pipeline as run_built  # this function has the same name

    cfg = compose_config(base_overrides(args) + scheduler_overrides(args, scheduler) + [f"filter={flt}"])
    with open_dict(cfg):
        cfg.runner.load_trace = trace
    pipeline, backend = build_pipeline(cfg, progress=False)
    trace_, stats, _, wall = run_built(pipeline, backend, frames)
    r = summarize(trace_, stats)
    return {"scheduler": scheduler, "filter": flt, "fps": r["fps"], "latency_p50_ms": r["latency_ms"]["p50"],
            "latency_p95_ms": r["latency_ms"]["p95"], "map50": r["map50"], "map50_95": r["map50_95"],
            "tiles_processed": r["tiles"]["processed"], "tiles_total": r["tiles"]["total"],
            "schedule_ms": r["overhead_ms"]["schedule"], "items_per_node": [s["items"] for s in stats],
            "wall_s": time.perf_counter() - wall}


def available_filters(args, wanted: list[str]) -> tuple[list[str], dict]:
    ok, skipped = [], {}
    for f in wanted:
        try:
            build(compose_config(base_overrides(args) + [f"filter={f}"]).filter)
            ok.append(f)
        except HodeError as e:
            skipped[f] = str(e)
    return ok, skipped


def pipeline_part(args, log) -> dict:
    cfg = compose_config(base_overrides(args))
    frames = list(build(cfg.dataset))  # rendered once, shared by every run
    filters, skipped = available_filters(args, args.filters)
    for f, why in skipped.items():
        log.warning("filter=%s skipped: %s", f, why)
    scenarios = {"static": [], "dynamic": dynamic_trace(args.frames)}
    out = {"frames": len(frames), "resolution": list(frames[0].shape), "in_flight": args.in_flight,
           "filters_skipped": skipped, "scenarios": {}}
    for name, trace in scenarios.items():
        rows = []
        for s in args.schedulers:
            for f in (["none"] if s in NO_FILTER else filters):
                t0 = time.perf_counter()
                try:
                    row = run_pipeline(args, s, f, trace, frames)
                except HodeError as e:
                    log.warning("%s/%s/%s failed: %s", name, s, f, e)
                    row = {"scheduler": s, "filter": f, "error": str(e)}
                rows.append(row)
                log.info("%-8s %-11s %-5s fps=%s  (%.0f s)", name, s, f, _f(row.get("fps")), time.perf_counter() - t0)
        _relative(rows)
        out["scenarios"][name] = {"load_trace": trace, "rows": rows}
    return out


def _relative(rows: list[dict]) -> None:
    oracle = {r["filter"]: r["fps"] for r in rows if r["scheduler"] == "oracle" and "fps" in r}
    fourk = next((r["fps"] for r in rows if r["scheduler"] == "fourk" and "fps" in r), None)
    map_fourk = next((r["map50"] for r in rows if r["scheduler"] == "fourk" and "map50" in r), None)
    for r in rows:
        if "fps" not in r:
            continue
        ref = oracle.get(r["filter"])
        r["fps_vs_oracle"] = r["fps"] / ref if ref else None
        r["fps_vs_fourk"] = r["fps"] / fourk if fourk else None
        r["map50_minus_fourk"] = (r["map50"] - map_fourk) if (map_fourk is not None and r["map50"] is not None) else None


# ----- 2. timing at scale ------------------------------------------------------------------------

def replay_part(args, log) -> dict:
    from hode.replay import replay

    from hode.profiles import TILE_PIXELS

    out = {"frames": args.replay_frames, "in_flight": args.in_flight, "scenarios": {}}
    dyn = OmegaConf.to_container(compose_config(base_overrides(args) + ["runner=sim_dynamic"]).runner.load_trace)
    # "full tiles": without the 4K grid's one small corner tile (304x208 px, a fifth of a tile's
    # cost). A node's measured speed is a moving average of 1 / service time per item, so the node
    # that finishes a frame on that tile reads several times faster than it is; this variant shows
    # each scheduler without that measurement artefact.
    for name, trace, full in (("static", [], False), ("dynamic", dyn, False), ("static, full tiles", [], True),
                              ("dynamic, full tiles", dyn, True)):
        rows = []
        for s in [x for x in args.schedulers if x != "elf"]:
            cfg = compose_config(base_overrides(args) + scheduler_overrides(args, s))
            with open_dict(cfg):
                cfg.runner.load_trace = trace
            topology = build(cfg.topology)
            sim = build(cfg.runner.backend, topology=topology, detector=cfg.detector, _recursive_=False)
            H, W = int(cfg.dataset.height), int(cfg.dataset.width)
            tiles = [t.window for t in build(cfg.tiling).tiles(H, W)]
            if full:
                tiles = [w for w in tiles if (w[2] - w[0]) * (w[3] - w[1]) >= TILE_PIXELS / 4]
            windows = [(0, 0, W, H)] if s == "fourk" else tiles
            run = replay(sim, build(cfg.scheduler), list(range(args.replay_frames)), windows,
                         in_flight=args.in_flight, count_detections=False)
            lat = run.latency_s * 1000
            rows.append({"scheduler": s, "filter": "none", "fps": run.fps, "latency_p50_ms": float(np.percentile(lat, 50)),
                         "latency_p95_ms": float(np.percentile(lat, 95))})
            log.info("replay %-8s %-10s fps=%.2f", name, s, run.fps)
        oracle = next((r["fps"] for r in rows if r["scheduler"] == "oracle"), None)
        fourk = next((r["fps"] for r in rows if r["scheduler"] == "fourk"), None)
        for r in rows:
            r["fps_vs_oracle"] = r["fps"] / oracle if oracle else None
            r["fps_vs_fourk"] = r["fps"] / fourk if fourk else None
        out["scenarios"][name] = {"load_trace": trace, "tiles_per_frame": len(tiles),
                                  "rows": rows}
    return out


# ----- 3. decision latency -----------------------------------------------------------------------

def decision_part(args, log) -> dict:
    import torch

    from hode.types import NodeState, WorkItem

    torch.set_num_threads(1)
    rng = np.random.default_rng(args.seed)
    topo = build(compose_config(base_overrides(args)).topology)
    img = np.zeros((4, 4, 3), np.uint8)
    cases = []
    for _ in range(args.decisions):
        n = int(rng.integers(10, 41))
        work = [WorkItem(0, k, (0, 0, 4, 4), img, "tile", float(rng.integers(0, 12))) for k in range(n)]
        nodes = [NodeState(nd.name, nd.model, nd.rank, queue=int(rng.integers(0, 30)), speed=float(rng.uniform(10, 70)),
                           true_speed=float(rng.uniform(10, 70))) for nd in topo]
        cases.append((work, nodes))
    out = {}
    for s in [x for x in args.schedulers if x not in NO_FILTER]:
        sched = build(compose_config(base_overrides(args) + scheduler_overrides(args, s)).scheduler)
        sched.assign(*cases[0])  # loads the checkpoint
        times = []
        for work, nodes in cases:
            t0 = time.perf_counter()
            sched.assign(work, nodes)
            times.append(time.perf_counter() - t0)
        ms = np.array(times) * 1000
        out[s] = {"median_ms": float(np.median(ms)), "p95_ms": float(np.percentile(ms, 95)), "decisions": len(ms)}
        log.info("decision %-10s median %.3f ms  p95 %.3f ms", s, out[s]["median_ms"], out[s]["p95_ms"])
    return {"nodes": len(topo), "per_scheduler": out}


# ----- output ------------------------------------------------------------------------------------

def _f(v, nd=2) -> str:
    return "-" if v is None else f"{v:.{nd}f}"


def print_table(title: str, rows: list[dict]) -> None:
    print(f"\n{title}")
    print(f"{'scheduler':<13}{'filter':<7}{'fps':>7}{'p50 ms':>9}{'p95 ms':>9}{'mAP50':>8}{'vs oracle':>11}{'vs fourk':>10}")
    for r in rows:
        if "error" in r:
            print(f"{r['scheduler']:<13}{r['filter']:<7}  error: {r['error']}")
            continue
        print(f"{r['scheduler']:<13}{r['filter']:<7}{_f(r['fps']):>7}{_f(r['latency_p50_ms'], 0):>9}"
              f"{_f(r['latency_p95_ms'], 0):>9}{_f(r.get('map50'), 3):>8}{_f(r.get('fps_vs_oracle'), 3):>11}"
              f"{_f(r.get('fps_vs_fourk'), 2):>10}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=40, help="4K frames through the camera loop")
    ap.add_argument("--replay-frames", type=int, default=400, help="frames for the timing-at-scale part")
    ap.add_argument("--decisions", type=int, default=5000, help="decisions timed per scheduler")
    ap.add_argument("--in-flight", type=int, default=2, help="frames outstanding (runner.in_flight)")
    ap.add_argument("--schedulers", nargs="+", default=SCHEDULERS)
    ap.add_argument("--filters", nargs="+", default=FILTERS)
    ap.add_argument("--parts", nargs="+", default=["pipeline", "replay", "decision"], choices=["pipeline", "replay", "decision"])
    ap.add_argument("--dqn-ckpt", default=None, help="DQN checkpoint (default: the config's, weights/dqn_paper5.pt)")
    ap.add_argument("--cache-dir", default=None, help="detection cache (default: the runner's, .cache/detections)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "outputs" / "compare_schedulers" / "results.json"))
    ap.add_argument("overrides", nargs="*", help="extra Hydra overrides, e.g. dataset.density=1.5")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("ultralytics").setLevel(logging.WARNING)
    log = logging.getLogger("compare_schedulers")
    args.dqn_ckpt = str(Path(args.dqn_ckpt).resolve()) if args.dqn_ckpt else None
    res = {"topology": "paper5", "args": {k: v for k, v in vars(args).items()}}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for part, fn in (("decision", decision_part), ("replay", replay_part), ("pipeline", pipeline_part)):
        if part in args.parts:
            try:
                res[part] = fn(args, log)
            except HodeError as e:
                raise SystemExit(f"error: {e}") from None
            out.write_text(json.dumps(res, indent=1))  # what is done so far survives a later failure
    if "pipeline" in res:
        for name, sc in res["pipeline"]["scenarios"].items():
            print_table(f"camera loop, runner=sim, paper5, {res['pipeline']['frames']} frames "
                        f"{res['pipeline']['resolution'][1]}x{res['pipeline']['resolution'][0]}, {name} "
                        f"(trace {sc['load_trace'] or 'none'})", sc["rows"])
    if "replay" in res:
        for name, sc in res["replay"]["scenarios"].items():
            print_table(f"timing at scale (replay, every tile), {res['replay']['frames']} frames, {name}", sc["rows"])
    if "decision" in res:
        print(f"\ndecision time per frame, {res['decision']['nodes']} nodes, one thread:")
        for s, v in res["decision"]["per_scheduler"].items():
            print(f"  {s:<13} median {v['median_ms']:.3f} ms   p95 {v['p95_ms']:.3f} ms")
    print(f"\nresults: {out}")


if __name__ == "__main__":
    main()
