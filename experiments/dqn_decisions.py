#!/usr/bin/env python
"""Why the DQN wins or loses: each of its decisions beside the best action on its own share grid.

Runs the camera loop (runner=sim, topology=paper5 by default) with ``scheduler=dqn`` and, at every
decision, also finds the share-grid action that finishes earliest by the speeds the camera measured
(``hode.schedule.shares.best_on_grid``, what a perfectly trained DQN on the paper's action space
would pick with the same information). Both are priced by the measured speeds and by the simulator's
true current speeds: the time the last node would finish the frame's tiles, queues included.

    python experiments/dqn_decisions.py                          # 40 frames, 1 in flight, the dynamic trace
    python experiments/dqn_decisions.py --in-flight 2 --trace none
    python experiments/dqn_decisions.py --frames 12 dataset.density=1.5
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from omegaconf import open_dict

from hode.config import ROOT, build, compose_config
from hode.errors import HodeError
from hode.schedule.shares import best_on_grid, known_speeds, last_finish


def decision_log(overrides: list[str], trace: list[dict]) -> list[dict]:
    """One row per DQN decision of a camera-loop run of ``overrides`` (``scheduler=dqn`` is forced)."""
    from hode.tasks.run import build_pipeline, run_pipeline

    cfg = compose_config(overrides + ["scheduler=dqn"])
    with open_dict(cfg):
        cfg.runner.load_trace = trace
    frames = list(build(cfg.dataset))
    pipeline, backend = build_pipeline(cfg, progress=False)
    dqn, rows = pipeline.scheduler, []
    decide = dqn.decide

    def logged(nodes, n_items, epsilon=0.0):
        counts = decide(nodes, n_items, epsilon)
        measured, queue = known_speeds(nodes), np.array([x.queue for x in nodes], np.float64)
        true = np.array([x.true_speed if x.true_speed is not None else x.speed for x in nodes], np.float64)
        best = best_on_grid(dqn.agent.actions, n_items, queue, measured, [x.up for x in nodes]) if dqn.agent else counts
        rows.append({"decision": len(rows), "tiles": int(n_items), "dqn": counts.tolist(), "grid_best": best.tolist(),
                     "all_measured": all(x.measured for x in nodes if x.up),
                     "measured_share": np.round(measured / measured.sum(), 3).tolist(),
                     "dqn_ms_measured": 1000 * float(last_finish(counts, queue, measured)),
                     "grid_best_ms_measured": 1000 * float(last_finish(best, queue, measured)),
                     "dqn_ms_true": 1000 * float(last_finish(counts, queue, true)),
                     "grid_best_ms_true": 1000 * float(last_finish(best, queue, true))})
        return counts

    dqn.decide = logged
    run_pipeline(pipeline, backend, frames)
    return rows


def summary(rows: list[dict]) -> dict:
    """Over the decisions made once every up node's speed was measured (before that, speeds are
    placeholders and both choices are equal shares)."""
    rows = [r for r in rows if r["all_measured"]]
    same = sum(r["dqn"] == r["grid_best"] for r in rows)
    mean = lambda k: float(np.mean([r[k] for r in rows])) if rows else float("nan")  # noqa: E731
    return {"decisions": len(rows), "same_as_grid_best": same,
            **{k: mean(k) for k in ("dqn_ms_measured", "grid_best_ms_measured", "dqn_ms_true", "grid_best_ms_true")}}


def main() -> None:
    from experiments.compare_schedulers import dynamic_trace

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--in-flight", type=int, default=1)
    ap.add_argument("--trace", choices=["dynamic", "none"], default="dynamic",
                    help="dynamic: compare_schedulers' load trace scaled to --frames")
    ap.add_argument("--out", default=str(ROOT / "outputs" / "dqn_decisions" / "results.json"))
    ap.add_argument("overrides", nargs="*", help="extra Hydra overrides, e.g. topology=local2")
    args = ap.parse_args()
    over = ["runner=sim", "topology=paper5", "filter=st", "logger=none", "progress=false",
            f"dataset.frames={args.frames}", f"runner.in_flight={args.in_flight}", *args.overrides]
    trace = dynamic_trace(args.frames) if args.trace == "dynamic" else []
    try:
        rows = decision_log(over, trace)
    except HodeError as e:
        raise SystemExit(f"error: {e}") from None
    print(f"{'#':>3} {'tiles':>5}  {'dqn':<20} {'grid best':<20} {'last node done, ms: measured':>29} {'true':>11}  measured shares")
    for r in rows:
        print(f"{r['decision']:>3} {r['tiles']:>5}  {str(r['dqn']):<20} {str(r['grid_best']):<20} "
              f"{r['dqn_ms_measured']:>14.0f} / {r['grid_best_ms_measured']:<12.0f} "
              f"{r['dqn_ms_true']:>5.0f} / {r['grid_best_ms_true']:<5.0f} {r['measured_share']}")
    s = summary(rows)
    print(f"\n{s['decisions']} decisions with every speed measured, {s['same_as_grid_best']} the same as the grid's best by measured speeds; "
          f"mean time to the last node done, dqn / grid best: measured {s['dqn_ms_measured']:.0f} / "
          f"{s['grid_best_ms_measured']:.0f} ms, true {s['dqn_ms_true']:.0f} / {s['grid_best_ms_true']:.0f} ms")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"overrides": over, "load_trace": trace, "summary": s, "decisions": rows}, indent=1))
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
