"""Fig. 11 and Fig. 12 on real footage (``fig11_real``, ``fig12_real`` sweeps), each drawn beside its
synthetic twin (``fig11``, ``fig12``) when that sweep is in the report too, with a caption that says
what footage, what truth and what size the numbers come from."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from reports.collect import Job, get
from reports.common import COLORS, Section, bar_labels, failed_lines, fmt, md_table, no_data, save, setup_lines
from reports.filters import LABELS as FILTER_LABELS
from reports.filters import LOOPS, eval_setup, filter_scores
from reports.methods import METHOD_HEADER, _method_rows, by_method, representative

TWINS = {"fig11_real": "fig11", "fig12_real": "fig12"}
# Footage the harness knows by name: what a caption says about it.
FOOTAGE = {"asset:vtest.avi": "`vtest.avi`, OpenCV's pedestrian sample clip (PETS 2009 S2.L1 View 001: a plaza, "
                              "static camera, 768x576 at 10 fps, 795 frames)"}
REAL, SYNTH = "real footage", "synthetic 4K scene"
CLAIM = ("The paper measures Fig. {n} on PANDA at 4K only; this is the same comparison on real footage, "
         "so there are no paper numbers to put beside it.")


def _footage(job: Job | None) -> str:
    ds = (get(job.config, "dataset") or {}) if job else {}
    path = str(ds.get("path") or "?")
    size = f"{ds.get('width')}x{ds.get('height')}" if ds.get("width") and ds.get("height") else "native size"
    return f"{FOOTAGE.get(path, f'`{path}`')}, resized to {size}"


def _frames_read(job: Job) -> list[int]:
    """Footage frame numbers the job read: ``start + k * every`` for each frame it processed."""
    ds = get(job.config, "dataset") or {}
    n = job.r("frames") or job.r("labels.frames") or 0
    start, every = int(ds.get("start") or 0), int(ds.get("every") or 1)
    return [start + k * every for k in range(int(n))]


def _truth_frames(path: str | None) -> list[int] | None:
    """Frame numbers a COCO truth file labels (None when there is no readable file)."""
    if not path:
        return None
    try:
        from hode.data.coco import load_truth

        return sorted(load_truth(path))
    except Exception:
        return None


def _span(numbers: list[int]) -> str:
    if not numbers:
        return "no frames"
    step = numbers[1] - numbers[0] if len(numbers) > 1 else 1
    return f"frames {numbers[0]}-{numbers[-1]}" + (f" every {step}" if step > 1 else "") + f" ({len(numbers)} frames)"


def _grouped(ax, names: list[str], labels: list[str], series: dict[str, list], ylabel: str, fmt_: str,
             legend: bool = False) -> None:
    """Bars per name, one colour per series (real footage, synthetic scene)."""
    drawn = {k: v for k, v in series.items() if any(x is not None for x in v)}
    if not names or not drawn:
        no_data(ax, f"no {ylabel}")
        return
    w = 0.8 / len(drawn)
    top = 0.0
    for i, (label, vals) in enumerate(drawn.items()):
        xs = np.arange(len(names)) + (i - (len(drawn) - 1) / 2) * w
        bars = ax.bar(xs, [v or 0 for v in vals], w, color=COLORS[(2 * i + 1) % len(COLORS)], label=label)
        bar_labels(ax, bars, vals, fmt_, fontsize=7 if len(names) * len(drawn) <= 6 else 5)
        top = max([top] + [v for v in vals if v is not None])
    ax.set_xticks(range(len(names)), labels, fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, top * 1.32 or 1)  # headroom: the legend sits above the bars
    if legend and len(drawn) > 1:
        ax.legend(fontsize=7, loc="upper center", ncol=len(drawn))


def fig11_real(jobs: list[Job], out: Path, twin: list[Job] | None = None) -> Section:
    ms, syn = by_method(jobs), by_method(twin or [])
    s = Section("fig11_real", "Fig. 11 (real footage): inference speed and AP50 of Infer-4K, Elf-based and HODE",
                CLAIM.format(n=11), jobs=list(jobs))
    names = list(dict.fromkeys([*ms, *(m for m in syn if m in ms)]))
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.4))
    labels = [ms[m]["label"] for m in names]
    for ax, key, ylabel, f in ((axes[0], "fps", "frames per second", "{:.2f}"),
                               (axes[1], "map50", "AP50 (vs each scene's truth)", "{:.3f}"),
                               (axes[2], "p95", "p95 frame latency (ms)", "{:.0f}")):
        if not ms:
            no_data(ax, "no successful fig11_real job")
            continue
        _grouped(ax, names, labels, {REAL: [ms[m][key] for m in names],
                                     SYNTH: [syn[m][key] if m in syn else None for m in names]}, ylabel, f,
                 legend=key == "fps")
    fig.suptitle("Fig. 11 on real footage" + (" beside the synthetic scene (Fig. 11)" if syn else ""), fontsize=10)
    s.figures = save(fig, out, "fig11_real")
    rep = representative(jobs)
    fk, ho = ms.get("fourk"), ms.get("hode")
    speed = ho["fps"] / fk["fps"] if fk and ho and fk["fps"] and ho["fps"] else None
    s.metrics = {"speedup": speed, **{f"fps_{m}": v["fps"] for m, v in ms.items()},
                 **{f"ap50_{m}": v["map50"] for m, v in ms.items()}}
    if ms:
        s.tables.append(md_table(["method", "fps real", "fps synthetic", "AP50 real (vs truth)", "mAP50 synthetic",
                                  "tiles skipped real", "tiles skipped synthetic"], [
            [ms[m]["label"], fmt(ms[m]["fps"], 2), fmt(syn.get(m, {}).get("fps"), 2), fmt(ms[m]["map50"], 3),
             fmt(syn.get(m, {}).get("map50"), 3), fmt(ms[m]["skipped"], 3, pct=True),
             fmt(syn.get(m, {}).get("skipped"), 3, pct=True)] for m in names]))
        s.tables.append(md_table(METHOD_HEADER, _method_rows(ms)))
    s.caption = _fig11_caption(rep, speed)
    s.setup = setup_lines(rep)
    s.notes.append("fps and latency are on the simulator's virtual clock (device-profile service times; the "
                   "profiles' yolo11n / yolo11n_x2 entries for the paper's devices are estimates, see conf/device/); "
                   "detections are the real COCO detectors' outputs replayed from the detection cache. Only frames "
                   "the truth set labels are scored.")
    s.notes += failed_lines(jobs)
    return s


def _fig11_caption(job: Job | None, speed: float | None) -> str:
    if job is None or not job.config:
        return "No fig11_real job recorded its configuration."
    read = _frames_read(job)
    gt = job.r("gt_file") or get(job.config, "dataset.gt")
    labelled = _truth_frames(gt)
    scored = sorted(set(read) & set(labelled)) if labelled is not None else None
    models = get(job.config, "models") or {}
    truth = (f"truth: the hand-checked set `{Path(str(gt)).parent.name}` ({gt and Path(str(gt)).name}), "
             f"{len(scored)} of its {len(labelled)} labelled frames read and scored ({', '.join(map(str, scored))})"
             if scored is not None else f"truth: {job.r('gt') or 'none'}")
    return (f"Footage: {_footage(job)}; {_span(read)}, size `{get(job.config, 'experiment.size', '?')}`. "
            f"{truth[0].upper() + truth[1:]}; AP50 is over those frames only. Model tiers "
            f"{models.get('large')} / {models.get('medium')} / {models.get('small')} (COCO) on topology "
            f"`{get(job.config, 'topology.name', '?')}`" + (f"; HODE / Infer-4K {speed:.2f}x" if speed else "") + ".")


def fig12_real(jobs: list[Job], out: Path, twin: list[Job] | None = None) -> Section:
    s = Section("fig12_real", "Fig. 12 (real footage): accuracy of the flow filter and of Comp-i",
                CLAIM.format(n=12), jobs=list(jobs))
    scores, errors = filter_scores(jobs)
    syn, _ = filter_scores(twin or [])
    names = list(scores)
    labels = [FILTER_LABELS.get(n, n) for n in names]
    fig, axes = plt.subplots(1, 3, figsize=(13.5, 3.6))
    for ax, key, ylabel in zip(axes, ("accuracy", "recall", "skipped"),
                               ("tile accuracy (%)", "recall of occupied tiles (%)", "tiles skipped (%)")):
        if not scores:
            no_data(ax, "no successful fig12_real job")
            continue

        def col(d: dict, n: str) -> float | None:
            v = d.get(n, {}).get("closed_loop", {}).get(key)
            return None if v is None else 100 * v

        _grouped(ax, names, labels, {REAL: [col(scores, n) for n in names], SYNTH: [col(syn, n) for n in names]},
                 ylabel, "{:.1f}", legend=key == "accuracy")
        ax.tick_params(axis="x", labelsize=7, rotation=20)
    fig.suptitle("Fig. 12 on real footage (closed loop)" + (", beside the synthetic scene (Fig. 12)" if syn else ""),
                 fontsize=10)
    s.figures = save(fig, out, "fig12_real")
    rows = []
    for n, loops in scores.items():
        for loop in LOOPS:
            m, t = loops.get(loop, {}), syn.get(n, {}).get(loop, {})
            rows.append([FILTER_LABELS.get(n, n), loop.split("_")[0], *(fmt(m.get(k), 4, pct=True) for k in
                        ("accuracy", "precision", "recall", "skipped")), fmt(m.get("latency_ms"), 3),
                         fmt(t.get("accuracy"), 4, pct=True), fmt(t.get("recall"), 4, pct=True)])
    if rows:
        s.tables.append(md_table(["filter", "loop", "accuracy", "precision", "recall", "skipped", "ms/frame",
                                  "accuracy synthetic", "recall synthetic"], rows))
    if "st" in scores:
        st = scores["st"].get("closed_loop", {})
        s.metrics = {"st_accuracy_closed": st.get("accuracy"), "st_recall_closed": st.get("recall"),
                     "st_skipped_closed": st.get("skipped"),
                     "st_accuracy_open": scores["st"].get("open_loop", {}).get("accuracy")}
    ok = [j for j in jobs if j.status == "ok"]
    s.caption = _fig12_caption(ok[0] if ok else None)
    if ok:
        s.setup = eval_setup(ok[0], "Sequences scored", "occupancy in the labels", "the labels' counts")
    for n, e in errors.items():
        s.notes.append(f"filter `{n}` was not scored: {e}")
    s.notes += failed_lines(jobs)
    return s


def _fig12_caption(job: Job | None) -> str:
    if job is None:
        return "No successful fig12_real job."
    lab = job.r("labels") or {}
    read = _frames_read(job)
    v = lab.get("vs_truth") or {}
    if lab.get("kind") == "golden":
        truth = (f"Boxes on every frame: golden labels ({lab.get('golden_detector')} on whole frames, imgsz "
                 f"{lab.get('golden_imgsz')}), not human labels")
        if v.get("frames"):
            truth += (f"; on the hand-checked truth set's frames read (`{Path(str(lab.get('truth'))).parent.name}`: "
                      f"{v['frames']} frame(s), {v.get('truth_boxes')} people) they find "
                      f"{fmt(v.get('recall'), 3)} of the people with {fmt(v.get('fp_per_frame'), 2)} false "
                      "positives per frame")
    else:
        truth = f"Boxes on every frame: the dataset's ground truth ({lab.get('truth') or job.r('gt') or '?'})"
    ckpt = Path(str(get(job.config, "filter.ckpt") or "?")).name
    return (f"Footage: {_footage(job)}; {_span(read)}, size `{get(job.config, 'experiment.size', '?')}`. {truth}. "
            f"The ST filter is the shipped checkpoint `{ckpt}` (trained on the synthetic scene) transferred to this "
            f"{'x'.join(map(str, job.r('grid') or []))} grid.")
