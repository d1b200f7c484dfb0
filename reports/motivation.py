"""The paper's motivation figures (Sec. I): Fig. 2 (mAP vs input resolution) and Fig. 3 (4K
inference latency per device and model)."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from reports import paper
from reports.collect import Job, get
from reports.common import (COLORS, PAPER_COLOR, Section, bar_labels, failed_lines, fmt, md_table, mean, no_data,
                            save, setup_lines)

MODELS = ("yolov5n", "yolov5s", "yolov5m")


def fig2(jobs: list[Job], out: Path) -> Section:
    """mAP50 of whole frames resized to ``detector.imgsz`` (one job per size and model)."""
    s = Section("fig2", "Fig. 2: mAP at different input resolutions (whole frame through YOLOv5)",
                paper.CLAIMS["fig2"], jobs=list(jobs))
    series: dict[str, dict[int, list[float]]] = {}
    for j in jobs:
        imgsz, m = get(j.config, "detector.imgsz"), j.r("map50")
        if j.status == "ok" and isinstance(imgsz, int) and isinstance(m, (int, float)):
            series.setdefault(str(get(j.config, "detector.name", "?")), {}).setdefault(imgsz, []).append(float(m))
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    if not series:
        no_data(ax, "no successful Fig. 2 job")
    for i, (model, pts) in enumerate(sorted(series.items())):
        xs = sorted(pts)
        ax.plot(xs, [mean(pts[x]) for x in xs], "o-", color=COLORS[i % len(COLORS)], label=f"{model} (this run)")
    if series:
        ax.scatter([1024], [paper.MAP_AT_1K], marker="D", color=PAPER_COLOR, zorder=3, label="paper: ~0.4 at 1K")
        ax.set_xlabel("input resolution (long side, px; imgsz)")
        ax.set_ylabel("mAP50")
        ax.set_ylim(0, 1)
        ax.legend(fontsize=8)
    ax.set_title("Fig. 2 (this run): mAP vs input resolution", fontsize=10)
    s.figures = save(fig, out, "fig2")
    sizes = sorted({x for pts in series.values() for x in pts})
    models = sorted(series)
    rows = [[x, "about 0.4" if x in (960, 1024) else "grows with resolution"]
            + [fmt(mean(series[m].get(x, [])), 3) for m in models] for x in sizes]
    s.tables.append(md_table(["imgsz (px)", "paper mAP"] + [f"{m} mAP50" for m in models], rows))
    for m in models:
        xs = sorted(series[m])
        if len(xs) > 1:
            lo, hi = mean(series[m][xs[0]]), mean(series[m][xs[-1]])
            s.metrics[f"{m}_map50_at_{xs[0]}"], s.metrics[f"{m}_map50_at_{xs[-1]}"] = lo, hi
    s.setup = setup_lines(next((j for j in jobs if j.status == "ok"), jobs[0] if jobs else None))
    s.notes.append("Each frame goes whole to one node (scheduler=fourk, topology=single) and YOLO letterboxes it to "
                   "imgsz on its long side; the synthetic crowd stands in for PANDA.")
    s.notes += failed_lines(jobs)
    return s


def reference_profiles(exclude: set[str]) -> dict[str, dict]:
    """conf/device/*.yaml: device -> {model: frame4k_ms, 'source': ...} (the shipped profiles)."""
    from omegaconf import OmegaConf

    from hode.config import CONF_DIR

    out = {}
    for path in sorted((CONF_DIR / "device").glob("*.yaml")):
        if path.stem in exclude:
            continue
        try:
            p = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
            out[path.stem] = {"models": {m: t.get("frame4k_ms") for m, t in (p.get("models") or {}).items()},
                              "source": p.get("source", "")}
        except Exception:
            continue
    return out


def fig3(jobs: list[Job], out: Path) -> Section:
    """Measured 4K latencies (task=profile jobs) beside the shipped device profiles."""
    s = Section("fig3", "Fig. 3: inference latency of 4K images on different devices", paper.CLAIMS["fig3"],
                jobs=list(jobs))
    measured: dict[str, dict] = {}
    for j in jobs:
        if j.status == "ok" and isinstance(j.r("models"), dict):
            name = f"{j.r('device_name', 'this machine')} (measured)"
            measured[name] = {"models": {m: get(t, "frame4k_ms") for m, t in j.r("models").items()},
                              "tile": {m: get(t, "tile_ms") for m, t in j.r("models").items()},
                              "source": get(next(iter(j.r("models").values()), {}), "source", "")}
    devices = {**reference_profiles({str(j.r("device_name")) for j in jobs if j.status == "ok"}), **measured}
    models = [m for m in MODELS if any(d["models"].get(m) for d in devices.values())]
    fig, ax = plt.subplots(figsize=(8, 3.8))
    if not devices or not models:
        no_data(ax, "no device profile and no successful Fig. 3 job")
    else:
        names = list(devices)
        w = 0.8 / len(models)
        for k, m in enumerate(models):
            vals = [devices[d]["models"].get(m) for d in names]
            xs = np.arange(len(names)) + (k - (len(models) - 1) / 2) * w
            bars = ax.bar(xs, [v or 0 for v in vals], w, color=COLORS[k % len(COLORS)], label=m,
                          hatch=None, edgecolor="white")
            for b, d in zip(bars, names):
                if "(measured)" not in d and not str(devices[d]["source"]).startswith("measured"):
                    b.set_hatch("//")  # shipped profile: estimate or public figure, not a measurement
            bar_labels(ax, bars, vals, "{:.0f}")
        ax.axhline(paper.SLOW_4K_MS, color=PAPER_COLOR, ls="--", lw=1, label="paper: > 500 ms on some devices")
        ax.set_yscale("log")
        ax.set_xticks(range(len(names)), names, fontsize=8)
        ax.set_ylabel("one 3840x2160 frame (ms, log)")
        ax.legend(fontsize=7, ncol=2)
    ax.set_title("Fig. 3 (this run): 4K inference latency per device (hatched: shipped profile)", fontsize=10)
    s.figures = save(fig, out, "fig3")
    rows = [[d, *[fmt(v["models"].get(m), 1) for m in models],
             "> 500 ms on some devices" if i == 0 else "", v["source"][:120]] for i, (d, v) in enumerate(devices.items())]
    s.tables.append(md_table(["device", *[f"{m} 4K ms" for m in models], "paper", "source"], rows))
    for d, v in measured.items():
        s.metrics.update({f"measured_{m}_frame4k_ms": ms for m, ms in v["models"].items()})
        s.tables.append(f"{d}: one padded 512 tile (704x608): " + ", ".join(
            f"{m} {fmt(t, 1)} ms" for m, t in v["tile"].items()) + ".")
    s.setup = setup_lines(next((j for j in jobs if j.status == "ok"), None)) if measured else []
    s.notes.append("Hatched bars are the shipped device profiles (conf/device/*.yaml) that hold public figures or "
                   "estimates, each profile's source column says which; solid bars were measured by task=profile: "
                   "by this sweep ('(measured)') or earlier, on another machine (the shipped cpu and h200 profiles).")
    s.notes += failed_lines(jobs)
    return s
