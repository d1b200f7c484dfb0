#!/usr/bin/env python
"""Failures and stragglers, measured: the same frames undisturbed and disturbed, side by side.

live (the acceptance run): ``runner=live topology=paper5``, five real worker processes. One
backend runs the frames twice: undisturbed, then disturbed, where one worker is SIGKILLed while
a frame is in flight (``chaos``) and another is 10x slower (``load_trace`` factor 10). Reported:
frames lost, frames missing a tile, latency p50/p95/max and fps of both passes, hedges,
re-dispatches and duplicates, and when the killed node (restarted by the runner) rejoined.

sim: ``runner=sim topology=paper5``, every scheduler over the same frames undisturbed, with a
failure trace plus the same 10x straggler, and the same again with hedging on.

    python experiments/bench_faults.py live                       # about 5 min here
    python experiments/bench_faults.py live --frames 8 --scheduler roundrobin
    python experiments/bench_faults.py sim --frames 40
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from pathlib import Path

import numpy as np

from hode.config import ROOT, build, compose_config
from hode.errors import HodeError
from hode.tasks.run import build_pipeline

DISTURBED = 100  # frame indices of the disturbed pass start here (chaos and traces are by frame index)


def config(overrides: list[str]):
    return compose_config(["logger=none", "progress=false", "filter=none", "topology=paper5", *overrides])


def run_pass(cfg, backend, frames, first_index: int) -> dict:
    """One pass of ``frames`` (re-indexed from ``first_index``) through a fresh pipeline."""
    delivered: dict[int, list[int]] = {}
    poll = backend.poll

    def spy(timeout=None):
        out = poll(timeout)
        for c in out:
            delivered.setdefault(c.frame_id, []).append(c.item_id)
        return out

    backend.poll = spy
    stream = [dataclasses.replace(f, index=first_index + k) for k, f in enumerate(frames)]
    pipe, _ = build_pipeline(cfg, backend=backend, progress=False)
    try:
        trace = pipe.run(stream)
    finally:
        del backend.poll
    recs = trace.records
    lat = np.array([r.latency_s for r in recs]) * 1000
    missing = [r.index for r in recs if sorted(delivered.get(r.index, [])) != list(range(r.items))]
    return {"frames_in": len(frames), "frames_out": len(recs), "lost": len(frames) - len(recs),
            "frames_missing_tiles": missing, "duplicate_deliveries": sum(len(v) - len(set(v)) for v in delivered.values()),
            "tiles": int(sum(r.items for r in recs)),
            "latency_ms": {"p50": float(np.percentile(lat, 50)), "p95": float(np.percentile(lat, 95)),
                           "max": float(lat.max())},
            "fps": len(recs) / max(trace.ended - trace.started, 1e-9)}


def live(args) -> dict:
    n = args.frames
    kill_at, slow = DISTURBED + args.kill_at, args.slow_node
    over = ["runner=live", f"scheduler={args.scheduler}", f"dataset.frames={n}", f"dataset.width={args.width}",
            f"dataset.height={args.height}", f"runner.backend.emulation.time_scale={args.time_scale}",
            f"runner.load_trace=[{{node: {slow}, start: {DISTURBED}, end: {DISTURBED + n}, factor: 10.0}}]",
            f"runner.backend.chaos=[{{node: {args.kill_node}, frame: {kill_at}, action: kill}}]", *args.overrides]
    cfg = config(over)
    frames = list(build(cfg.dataset))
    backend = build(cfg.runner.backend, topology=build(cfg.topology), detector=cfg.detector, _recursive_=False)
    t0 = time.perf_counter()
    backend.start()
    print(f"5 workers up in {time.perf_counter() - t0:.0f} s, time_scale {backend.time_scale:.1f}")
    out: dict = {"mode": "live", "scheduler": args.scheduler, "time_scale": backend.time_scale,
                 "frame_size": [args.width, args.height], "killed": args.kill_node, "slowed_10x": slow,
                 "load_average_start": os.getloadavg()[0]}
    try:
        out["undisturbed"] = run_pass(cfg, backend, frames, 0)
        print("undisturbed:", json.dumps(out["undisturbed"]["latency_ms"]))
        out["disturbed"] = run_pass(cfg, backend, frames, DISTURBED)
        print("disturbed:  ", json.dumps(out["disturbed"]["latency_ms"]))
        idx = next(i for i, l in enumerate(backend._links) if l.node.name == args.kill_node)
        deadline = time.monotonic() + args.rejoin_timeout
        while not backend.states()[idx].up and time.monotonic() < deadline:
            time.sleep(0.5)
        events = backend.faults.summary()["events"]
        t_kill = next((e["t"] for e in events if e["event"] == "chaos-kill"), None)
        t_up = next((e["t"] for e in events if e["node"] == args.kill_node and e["event"] == "up"), None)
        out["rejoined"] = t_up is not None
        out["rejoin_s_after_kill"] = (t_up - t_kill) if t_up is not None and t_kill is not None else None
        if out["rejoined"]:  # the restarted node takes work again
            before = backend.stats()[idx]["items"]
            out["after_rejoin"] = run_pass(cfg, backend, frames[:3], 2 * DISTURBED)
            out["after_rejoin"]["killed_node_items"] = backend.stats()[idx]["items"] - before
        out["failover"] = backend.describe()["failover"]
        out["overrun_fraction"] = backend.describe()["overrun_fraction"]
        out["nodes"] = [{k: s[k] for k in ("name", "items", "down_events", "restarts", "overruns")} for s in backend.stats()]
    finally:
        backend.close()
    out["load_average_end"] = os.getloadavg()[0]
    a, b = out["undisturbed"], out["disturbed"]
    out["p95_ratio"] = b["latency_ms"]["p95"] / a["latency_ms"]["p95"]
    out["acceptance"] = {"zero_frames_lost": b["lost"] == 0, "every_frame_all_tiles": not b["frames_missing_tiles"],
                         "p95_below_3x": out["p95_ratio"] < 3.0, "killed_node_rejoined": bool(out.get("rejoined"))}
    print(f"\nlive, topology=paper5, scheduler={args.scheduler}, {n} frames of {args.width}x{args.height} per pass, "
          f"time_scale {out['time_scale']:.1f} (wall s per device s), load average {out['load_average_start']:.1f}"
          f"-{out['load_average_end']:.1f} on {os.cpu_count()} cores")
    print(f"disturbed: '{args.kill_node}' SIGKILLed as frame {args.kill_at} went out (restarted by the runner), "
          f"'{slow}' 10x slower on every frame")
    rows = [("frames in / out", lambda r: f"{r['frames_in']} / {r['frames_out']}"), ("frames lost", lambda r: r["lost"]),
            ("frames missing a tile", lambda r: len(r["frames_missing_tiles"])),
            ("latency p50 ms", lambda r: f"{r['latency_ms']['p50']:.0f}"),
            ("latency p95 ms", lambda r: f"{r['latency_ms']['p95']:.0f}"),
            ("latency max ms", lambda r: f"{r['latency_ms']['max']:.0f}"), ("fps (scaled)", lambda r: f"{r['fps']:.3f}")]
    print(f"  {'':<24}{'undisturbed':>14}{'disturbed':>14}")
    for name, fn in rows:
        print(f"  {name:<24}{fn(a)!s:>14}{fn(b)!s:>14}")
    f = out["failover"]
    print(f"  p95 disturbed / undisturbed = {out['p95_ratio']:.2f} (target < 3)")
    print(f"  hedged {f['hedged']}, re-dispatched {f['redispatched']}, duplicates dropped {f['duplicates']}, "
          f"nodes down {f['nodes_down']}, restarts {f['restarts']}, re-admitted {f['readmitted']}")
    rj = out.get("rejoin_s_after_kill")
    print(f"  killed node rejoined: {out['rejoined']}" + (f", {rj:.1f} s after the kill" if rj is not None else "")
          + (f", then took {out['after_rejoin']['killed_node_items']} tiles of 3 more frames" if out.get("after_rejoin") else ""))
    print(f"  overrun fraction {out['overrun_fraction']:.2f}; acceptance: {out['acceptance']}")
    return out


def sim(args) -> dict:
    n = args.frames
    down = f"{{node: {args.kill_node}, start: {n // 4}, end: {n // 2}}}"
    slow = f"{{node: {args.slow_node}, start: 0, end: {n}, factor: 10.0}}"
    variants = {"undisturbed": [], "failure + 10x straggler": [f"runner.failure_trace=[{down}]", f"runner.load_trace=[{slow}]"]}
    variants["same, hedging on"] = variants["failure + 10x straggler"] + ["runner.failover.hedge=true"]
    out: dict = {"mode": "sim", "frames": n, "frame_size": [args.width, args.height], "down": down, "slow": slow,
                 "schedulers": {}}
    frames = None
    for sched in args.schedulers:
        res = {}
        for name, extra in variants.items():
            cfg = config(["runner=sim", f"scheduler={sched}", f"dataset.frames={n}", f"dataset.width={args.width}",
                          f"dataset.height={args.height}", *extra, *args.overrides])
            frames = frames or list(build(cfg.dataset))
            backend = build(cfg.runner.backend, topology=build(cfg.topology), detector=cfg.detector, _recursive_=False)
            backend.start()
            try:
                res[name] = run_pass(cfg, backend, frames, 0)
                res[name]["failover"] = {k: v for k, v in backend.describe()["failover"].items() if k != "events"}
            finally:
                backend.close()
        out["schedulers"][sched] = res
    print(f"\nsim, topology=paper5, {n} frames of {args.width}x{args.height}; '{args.kill_node}' down for frames "
          f"{n // 4}-{n // 2 - 1}, '{args.slow_node}' 10x slower throughout (virtual ms)")
    print(f"  {'scheduler':<12}{'p95 undisturbed':>16}{'p95 disturbed':>15}{'ratio':>7}{'p95 hedged':>12}{'ratio':>7}"
          f"{'lost':>6}{'hedges':>8}{'redisp.':>8}")
    for sched, r in out["schedulers"].items():
        a, b, c = (r[k] for k in variants)
        p = lambda x: x["latency_ms"]["p95"]  # noqa: E731
        print(f"  {sched:<12}{p(a):>16.0f}{p(b):>15.0f}{p(b) / p(a):>7.2f}{p(c):>12.0f}{p(c) / p(a):>7.2f}"
              f"{b['lost'] + c['lost']:>6}{c['failover']['hedged']:>8}{b['failover']['redispatched']:>8}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=["live", "sim"])
    ap.add_argument("--frames", type=int, default=None, help="frames per pass (live 10, sim 40)")
    ap.add_argument("--width", type=int, default=1536)
    ap.add_argument("--height", type=int, default=1024)
    ap.add_argument("--scheduler", default="greedy", help="live: the scheduler")
    ap.add_argument("--schedulers", nargs="+", default=["roundrobin", "greedy", "salbs", "oracle", "dqn"], help="sim")
    ap.add_argument("--kill-node", default="gtx1050")
    ap.add_argument("--slow-node", default="nx-s")
    ap.add_argument("--kill-at", type=int, default=2, help="live: kill while this frame of the pass goes out")
    ap.add_argument("--time-scale", default="auto", help="live: runner.backend.emulation.time_scale")
    ap.add_argument("--rejoin-timeout", type=float, default=180.0)
    ap.add_argument("--out", default=None)
    ap.add_argument("overrides", nargs="*", help="extra Hydra overrides")
    args = ap.parse_args()
    args.frames = args.frames or (10 if args.mode == "live" else 40)
    try:
        out = live(args) if args.mode == "live" else sim(args)
    except HodeError as e:
        raise SystemExit(f"error: {e}") from None
    path = Path(args.out or ROOT / "outputs" / "bench_faults" / f"{args.mode}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1, default=str))
    print(f"results: {path}")


if __name__ == "__main__":
    main()
