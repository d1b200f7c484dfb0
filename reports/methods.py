"""Fig. 11 (Infer-4K vs Elf-based vs HODE) and Fig. 13 (SALBS vs DQN under changing compute):
methods compared on throughput and accuracy, jobs of ``task=run``."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

from reports import paper
from reports.collect import Job, get
from reports.common import (COLORS, PAPER_COLOR, Section, bar_labels, failed_lines, fmt, md_table, mean, no_data,
                            option_name, save, setup_lines)

WHOLE_ITEMS = {"fourk", "elf"}  # schedulers whose work items are whole frames or crops, not grid tiles
ORDER = ["fourk", "elf", "salbs", "greedy", "roundrobin", "hode", "oracle"]
LABELS = {"fourk": "Infer-4K", "elf": "Elf-based", "salbs": "SALBS", "hode": "HODE", "oracle": "Oracle",
          "greedy": "Greedy", "roundrobin": "Round-robin"}


def method_of(job: Job) -> str:
    """fourk / elf / salbs / hode / ...: experiment.method, else from the scheduler and filter options."""
    m = get(job.config, "experiment.method")
    if m:
        return str(m)
    sched, flt = option_name(job.config, "scheduler"), option_name(job.config, "filter")
    if sched == "dqn":
        return "hode" if flt == "st" else f"dqn+{flt}"
    return sched if sched in LABELS else f"{sched}+{flt}"


def by_method(jobs: list[Job]) -> dict[str, dict]:
    """Mean fps / mAP / latency / overheads per method over its successful jobs, in ORDER."""
    groups: dict[str, list[Job]] = {}
    for j in jobs:
        if j.status == "ok":
            groups.setdefault(method_of(j), []).append(j)
    out = {}
    for m in sorted(groups, key=lambda m: (ORDER.index(m) if m in ORDER else len(ORDER), m)):
        js = groups[m]
        whole = option_name(js[0].config, "scheduler") in WHOLE_ITEMS  # items are frames or crops, not tiles
        skipped = [j.r("tiles.skipped") / j.r("tiles.total") for j in js
                   if not whole and isinstance(j.r("tiles.total"), (int, float)) and j.r("tiles.total")]
        per_frame = [j.r("tiles.processed") / j.r("frames") for j in js
                     if isinstance(j.r("tiles.processed"), (int, float)) and j.r("frames")]
        out[m] = {"label": str(get(js[0].config, "experiment.label") or LABELS.get(m, m)), "n": len(js),
                  "fps": mean([j.r("fps") for j in js]), "map50": mean([j.r("map50") for j in js]),
                  "map50_95": mean([j.r("map50_95") for j in js]), "p50": mean([j.r("latency_ms.p50") for j in js]),
                  "p95": mean([j.r("latency_ms.p95") for j in js]), "skipped": mean(skipped),
                  "frames": mean([j.r("frames") for j in js]), "items": mean(per_frame),
                  "overhead": {k: mean([j.r(f"overhead_ms.{k}") for j in js])
                               for k in ("filter", "tile", "schedule", "merge")},
                  "scheduler": option_name(js[0].config, "scheduler"), "filter": option_name(js[0].config, "filter"),
                  "jobs": js}
    return out


def representative(jobs: list[Job]) -> Job | None:
    """The job whose setup the section describes: HODE's when it ran, else the first that succeeded."""
    ok = [j for j in jobs if j.status == "ok"]
    return next((j for j in ok if method_of(j) == "hode"), ok[0] if ok else (jobs[0] if jobs else None))


def _bars(ax, ms: dict[str, dict], key: str, ylabel: str, paper_values: dict[str, float] | None = None,
          fmt_: str = "{:.2f}") -> None:
    names = [m for m in ms if ms[m][key] is not None]
    if not names:
        no_data(ax, f"no successful job reports {key}")
        return
    vals = [ms[m][key] for m in names]
    bars = ax.bar(range(len(names)), vals, color=[COLORS[i % len(COLORS)] for i in range(len(names))],
                  label="this run")
    bar_labels(ax, bars, vals, fmt_)
    if paper_values:
        xs = [(i, paper_values[m]) for i, m in enumerate(names) if m in paper_values]
        if xs:
            ax.scatter(*zip(*xs), marker="D", color=PAPER_COLOR, zorder=3, label="paper")
            ax.legend(fontsize=8)
    ax.set_xticks(range(len(names)), [ms[m]["label"] for m in names], fontsize=9)
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, max(vals + list((paper_values or {}).values())) * 1.18 or 1)


def _method_figure(ms: dict[str, dict], out: Path, stem: str, title: str, paper_fps: dict | None,
                   why_empty: str) -> list[Path]:
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.4))
    if not ms:
        for ax in axes:
            no_data(ax, why_empty)
    else:
        _bars(axes[0], ms, "fps", "frames per second", paper_fps)
        _bars(axes[1], ms, "map50", "mAP50", None, "{:.3f}")
        _bars(axes[2], ms, "p95", "p95 frame latency (ms)", None, "{:.0f}")
    fig.suptitle(title, fontsize=10)
    return save(fig, out, stem)


def _method_rows(ms: dict[str, dict]) -> list[list]:
    return [[v["label"], f"`{v['scheduler']}`", f"`{v['filter']}`" if v["scheduler"] not in WHOLE_ITEMS else "bypassed",
             v["n"], fmt(v["frames"], 0), fmt(v["fps"], 2), fmt(v["map50"], 3), fmt(v["p50"], 0), fmt(v["p95"], 0),
             fmt(v["items"], 1), fmt(v["skipped"], 3, pct=True)] for v in ms.values()]


METHOD_HEADER = ["method", "scheduler", "filter", "jobs", "frames", "fps", "mAP50", "p50 ms", "p95 ms",
                 "items / frame", "tiles skipped"]


def fig11(jobs: list[Job], out: Path) -> Section:
    ms = by_method(jobs)
    s = Section("fig11", "Fig. 11: inference speed and mAP of Infer-4K, Elf-based and HODE", paper.CLAIMS["fig11"],
                jobs=list(jobs))
    s.figures = _method_figure(ms, out, "fig11", "Fig. 11 (this run): fps, mAP50 and p95 latency per method",
                               {"fourk": paper.FOURK_FPS, "hode": paper.HODE_FPS}, "no successful Fig. 11 job")
    fk, ho, elf = ms.get("fourk"), ms.get("hode"), ms.get("elf")
    speed = ho["fps"] / fk["fps"] if fk and ho and fk["fps"] and ho["fps"] else None
    loss = fk["map50"] - ho["map50"] if fk and ho and fk["map50"] is not None and ho["map50"] is not None else None
    rel = loss / fk["map50"] if loss is not None and fk["map50"] else None
    s.metrics = {"speedup": speed, "map50_loss_points": loss, "map50_loss_relative": rel,
                 **{f"fps_{m}": v["fps"] for m, v in ms.items()}, **{f"map50_{m}": v["map50"] for m, v in ms.items()}}
    s.tables.append(md_table(["", "paper", "this run"], [
        ["Infer-4K fps", fmt(paper.FOURK_FPS, 2), fmt(fk and fk["fps"], 2)],
        ["Elf-based fps", "below HODE (no number)", fmt(elf and elf["fps"], 2)],
        ["HODE fps", fmt(paper.HODE_FPS, 2), fmt(ho and ho["fps"], 2)],
        ["speedup HODE / Infer-4K", f"{paper.SPEEDUP:.2f}x", f"{speed:.2f}x" if speed else "n/a"],
        ["mAP50 Infer-4K -> HODE", "< 1% loss", f"{fmt(fk and fk['map50'], 3)} -> {fmt(ho and ho['map50'], 3)}"],
        ["mAP50 loss (points / relative)", "< 1%",
         f"{fmt(loss and 100 * loss, 2)} pt / {fmt(rel, 3, pct=True)}" if loss is not None else "n/a"],
        ["Elf-based mAP50", "below HODE (no number)", fmt(elf and elf["map50"], 3)],
    ]))
    s.tables.append(md_table(METHOD_HEADER, _method_rows(ms)))
    if ho:
        o = ho["overhead"]
        total = sum(v for v in o.values() if v is not None)
        s.tables.append("System overhead on the camera side (paper Sec. III-E), HODE job, mean per 4K frame (a mean "
                        "over a short run includes the first calls' warm-up; `experiments/bench_headline.py` gives "
                        "medians):\n\n" +
                        md_table(["step", "paper (ms)", "this run (ms)"], [
                            ["flow filter", fmt(paper.FILTER_MS, 1), fmt(o["filter"], 3)],
                            ["scheduling decision (DQN + dispatch)", fmt(paper.SCHEDULE_MS, 1), fmt(o["schedule"], 3)],
                            ["tiling / crops", "n/a", fmt(o["tile"], 3)],
                            ["merge (NMS)", "n/a", fmt(o["merge"], 3)],
                            ["camera-side total", "n/a", fmt(total, 3)]]))
        s.metrics.update({"filter_ms": o["filter"], "schedule_ms": o["schedule"], "camera_ms": total})
    s.setup = setup_lines(representative(jobs))
    s.setup.insert(0, paper.SETUP)
    if any(get(j.config, "runner.name", "").startswith("sim") for j in jobs):
        s.notes.append("fps and latency are on the simulator's virtual clock (device-profile service times); "
                       "detections are the real YOLO outputs replayed from the detection cache.")
    s.notes += failed_lines(jobs)
    return s


def fig13(jobs: list[Job], out: Path) -> Section:
    ms = by_method(jobs)
    s = Section("fig13", "Fig. 13: inference speed and mAP of SALBS and HODE's DQN under changing compute",
                paper.CLAIMS["fig13"], jobs=list(jobs))
    s.figures = _method_figure(ms, out, "fig13", "Fig. 13 (this run): SALBS vs DQN under a load trace", None,
                               "no successful Fig. 13 job")
    sa, ho = ms.get("salbs"), ms.get("hode")
    ratio = ho["fps"] / sa["fps"] if sa and ho and sa["fps"] and ho["fps"] else None
    s.metrics = {"fps_ratio_dqn_over_salbs": ratio, **{f"fps_{m}": v["fps"] for m, v in ms.items()},
                 **{f"map50_{m}": v["map50"] for m, v in ms.items()}}
    s.tables.append(md_table(["", "paper", "this run"], [
        ["SALBS fps", "below the DQN (no number)", fmt(sa and sa["fps"], 2)],
        ["DQN (HODE) fps", "above SALBS (no number)", fmt(ho and ho["fps"], 2)],
        ["fps DQN / SALBS", "> 1", f"{ratio:.3f}x" if ratio else "n/a"],
        ["mAP50 SALBS / DQN", "DQN higher (no number)",
         f"{fmt(sa and sa['map50'], 3)} / {fmt(ho and ho['map50'], 3)}"],
        ["p95 latency ms SALBS / DQN", "n/a", f"{fmt(sa and sa['p95'], 0)} / {fmt(ho and ho['p95'], 0)}"],
    ]))
    s.tables.append(md_table(METHOD_HEADER, _method_rows(ms)))
    s.setup = setup_lines(representative(jobs))
    s.notes += failed_lines(jobs)
    return s
