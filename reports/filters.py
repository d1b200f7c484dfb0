"""Fig. 12: accuracy of the spatio-temporal flow filter and of Comp-i (``task=eval_filter`` jobs)."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from reports import paper
from reports.collect import Job
from reports.common import COLORS, PAPER_COLOR, Section, bar_labels, failed_lines, fmt, md_table, mean, no_data, save

ORDER = ["st", "comp1", "comp2", "comp3", "oracle", "none"]
LABELS = {"st": "ST filter (ours)", "comp1": "Comp-1", "comp2": "Comp-2", "comp3": "Comp-3", "oracle": "Oracle",
          "none": "None"}
LOOPS = ("open_loop", "closed_loop")
KEYS = ("accuracy", "precision", "recall", "f1", "skipped", "latency_ms")


def filter_scores(jobs: list[Job]) -> tuple[dict[str, dict], dict[str, str]]:
    """filter -> loop -> metric (mean over jobs), and filter -> error for filters a job could not score."""
    acc: dict[str, dict[str, dict[str, list]]] = {}
    errors: dict[str, str] = {}
    for j in jobs:
        if j.status != "ok" or not isinstance(j.r("filter"), dict):
            continue
        for name, d in j.r("filter").items():
            if not isinstance(d, dict):
                continue
            if "error" in d:
                errors[name] = str(d["error"])
                continue
            for loop in LOOPS:
                for k in KEYS:
                    acc.setdefault(name, {}).setdefault(loop, {}).setdefault(k, []).append((d.get(loop) or {}).get(k))
    scores = {n: {loop: {k: mean(v) for k, v in ks.items()} for loop, ks in loops.items()} for n, loops in acc.items()}
    order = sorted(scores, key=lambda n: (ORDER.index(n) if n in ORDER else len(ORDER), n))
    return {n: scores[n] for n in order}, errors


def fig12(jobs: list[Job], out: Path) -> Section:
    s = Section("fig12", "Fig. 12: accuracy of the flow filter and of the comparison methods Comp-i",
                paper.CLAIMS["fig12"], jobs=list(jobs))
    scores, errors = filter_scores(jobs)
    fig, ax = plt.subplots(figsize=(8, 3.6))
    if not scores:
        no_data(ax, "no successful Fig. 12 job")
    else:
        names = list(scores)
        w = 0.38
        for k, loop in enumerate(LOOPS):
            vals = [scores[n].get(loop, {}).get("accuracy") for n in names]
            bars = ax.bar(np.arange(len(names)) + (k - 0.5) * w, [100 * (v or 0) for v in vals], w,
                          color=COLORS[k + 1], label=loop.replace("_", " "))
            bar_labels(ax, bars, [None if v is None else 100 * v for v in vals], "{:.1f}", fontsize=6)
        if "st" in names:
            i = names.index("st")
            ax.scatter([i], [100 * paper.FILTER_ACCURACY], marker="D", color=PAPER_COLOR, zorder=3,
                       label=f"paper: {100 * paper.FILTER_ACCURACY:.2f}%")
        lo = min(100 * (scores[n].get(loop, {}).get("accuracy") or 1) for n in names for loop in LOOPS)
        ax.set_ylim(max(0, lo - 10), 104)
        ax.set_xticks(range(len(names)), [LABELS.get(n, n) for n in names], fontsize=8)
        ax.set_ylabel("tile accuracy (%)")
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title("Fig. 12 (this run): flow filter accuracy on held-out scenes", fontsize=10)
    s.figures = save(fig, out, "fig12")
    rows = []
    for n, loops in scores.items():
        for loop in LOOPS:
            m = loops.get(loop, {})
            rows.append([LABELS.get(n, n), loop.split("_")[0],
                         fmt(paper.FILTER_ACCURACY, 4, pct=True) if n == "st" and loop == "open_loop" else
                         ("lower than ST (no number)" if n.startswith("comp") and loop == "open_loop" else ""),
                         *(fmt(m.get(k), 4, pct=True) for k in KEYS[:5]), fmt(m.get("latency_ms"), 3)])
    s.tables.append(md_table(["filter", "loop", "paper accuracy", "accuracy", "precision", "recall", "F1", "skipped",
                              "ms/frame"], rows))
    if "st" in scores:
        st = scores["st"]
        s.metrics = {"st_accuracy_open": st.get("open_loop", {}).get("accuracy"),
                     "st_accuracy_closed": st.get("closed_loop", {}).get("accuracy"),
                     "st_latency_ms": st.get("open_loop", {}).get("latency_ms")}
        s.tables.append(md_table(["", "paper", "this run"], [
            ["ST filter accuracy", fmt(paper.FILTER_ACCURACY, 4, pct=True),
             f"{fmt(s.metrics['st_accuracy_open'], 4, pct=True)} open loop, "
             f"{fmt(s.metrics['st_accuracy_closed'], 4, pct=True)} closed loop"],
            ["filter latency (ms per frame)", fmt(paper.FILTER_MS, 1), fmt(s.metrics["st_latency_ms"], 3)]]))
    for n, e in errors.items():
        s.notes.append(f"filter `{n}` was not scored: {e}")
    ok = [j for j in jobs if j.status == "ok"]
    if ok:
        s.setup = eval_setup(ok[0], "Held-out sequences", "true occupancy", "true counts")
    s.notes += failed_lines(jobs)
    return s


def eval_setup(job: Job, sequences: str, occupancy: str, counts: str) -> list[str]:
    """The setup lines of an eval_filter job (Fig. 12 and its real-footage twin)."""
    r = job.results or {}
    lines = [f"{sequences}: {', '.join(map(str, r.get('sequences', [])))}; grid {r.get('grid')}, tile "
             f"{r.get('tile')}, padding {r.get('pad')}; closed loop: detector = {r.get('detector_in_closed_loop', '?')}; "
             f"scored from frame {r.get('warmup_frames', '?')}.",
             f"Accuracy = fraction of tiles whose keep/skip decision matches the tile's {occupancy}; open loop "
             f"feeds the filter {counts}, closed loop feeds it what was detected in the kept tiles."]
    if job.record.get("commit"):
        lines.append(f"Code: commit `{job.record['commit']}` (at the time of the job).")
    return lines
