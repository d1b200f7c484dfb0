"""The headline benchmark (``+experiment=bench``, experiments/bench_headline.py) as a report section."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

from reports import paper
from reports.collect import Job
from reports.common import COLORS, Section, bar_labels, failed_lines, fmt, md_table, no_data, save, setup_lines

METHODS = {"fourk": "Infer-4K", "hode": "HODE", "oracle": "Oracle"}


def bench(jobs: list[Job], out: Path) -> Section:
    s = Section("bench", "Headline benchmark: speedup, accuracy, overheads and simulator speed in one run",
                paper.CLAIMS["fig11"] + " " + paper.CLAIMS["overhead"], jobs=list(jobs))
    ok = [j for j in jobs if j.status == "ok" and isinstance(j.r("methods"), dict)]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    if not ok:
        no_data(ax, "no successful benchmark job")
    else:
        r = ok[-1].results
        ms = [m for m in METHODS if m in r["methods"]]
        vals = [r["methods"][m].get("fps") for m in ms]
        bars = ax.bar(range(len(ms)), [v or 0 for v in vals], color=COLORS[: len(ms)])
        bar_labels(ax, bars, vals)
        ax.set_xticks(range(len(ms)), [METHODS[m] for m in ms])
        ax.set_ylabel("frames per second (simulated)")
        h, f = r["methods"].get("hode", {}), r["methods"].get("fourk", {})
        c, sim = r.get("components", {}), r.get("simulator", {})
        med = h.get("overhead_median_ms") or h.get("overhead_ms") or {}
        s.metrics = {"speedup": r.get("speedup_hode_over_fourk"), "map50_loss_points": r.get("map50_loss_points"),
                     "hode_over_oracle": r.get("hode_over_oracle_fps"), "camera_ms": r.get("camera_ms_per_frame"),
                     "sim_frames_per_s": sim.get("frames_per_s")}
        loss = r.get("map50_loss_points")
        s.tables.append(md_table(["", "paper", "this run"], [
            ["HODE / Infer-4K throughput", f"{paper.SPEEDUP:.2f}x", f"{fmt(r.get('speedup_hode_over_fourk'), 2)}x "
             f"({fmt(h.get('fps'), 2)} / {fmt(f.get('fps'), 2)} fps)"],
            ["mAP50 loss Infer-4K -> HODE", "< 1%", "n/a" if loss is None else
             f"{100 * loss:+.2f} pt ({fmt(f.get('map50'), 3)} -> {fmt(h.get('map50'), 3)})"],
            ["HODE / oracle throughput", "n/a", fmt(r.get("hode_over_oracle_fps"), 3)],
            ["flow filter ms / frame (median in run; alone)", fmt(paper.FILTER_MS, 1),
             f"{fmt(med.get('filter'), 3)}; {fmt(c.get('filter_ms_median'), 3)}"],
            ["scheduling ms / frame (median in run; alone)", fmt(paper.SCHEDULE_MS, 1),
             f"{fmt(med.get('schedule'), 3)}; {fmt(c.get('schedule_ms_median'), 3)}"],
            ["camera-side overhead ms / 4K frame (median sum)", "n/a",
             fmt(sum(v for v in med.values() if isinstance(v, (int, float))), 2)],
            ["simulator frames / wall s (replay path)", "n/a", fmt(sim.get("frames_per_s"), 0)],
        ]))
        s.setup = setup_lines(ok[-1])
    ax.set_title("Headline benchmark: fps per method", fontsize=10)
    s.figures = save(fig, out, "bench")
    s.notes += failed_lines(jobs)
    return s
