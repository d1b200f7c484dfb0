"""Fig. 8 (flow-filter training loss) and Fig. 9 (DQN training loss): curves from training jobs.

Curves are read from ``results.json`` when the task put them there (``curves``: columns of equal
length; ``history``: lists of row dicts), else from CSV files the job wrote (Lightning's
``metrics.csv``, a training log ``*.csv``): any numeric column whose name has ``loss`` or
``reward`` in it, against ``epoch`` / ``step`` / ``episode``.
"""
from __future__ import annotations

import csv
import math
from pathlib import Path

import matplotlib.pyplot as plt

from reports import paper
from reports.collect import Job, get
from reports.common import COLORS, Section, failed_lines, fmt, md_table, no_data, save

X_KEYS = ("epoch", "step", "global_step", "episode", "update", "iteration")
Curve = tuple[str, list[float], list[float]]  # (x label, xs, ys)


def _num(v) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _is_curve_key(k: str) -> bool:
    return ("loss" in k or "reward" in k) and not k.endswith(("_step_count", "_std"))


def _from_columns(cols: dict) -> dict[str, Curve]:
    xk = next((k for k in X_KEYS if isinstance(cols.get(k), list)), None)
    out = {}
    for k, ys in cols.items():
        if not (isinstance(ys, list) and _is_curve_key(k)):
            continue
        xs = cols[xk] if xk and len(cols[xk]) == len(ys) else list(range(len(ys)))
        pts = [(_num(x), _num(y)) for x, y in zip(xs, ys)]
        pts = [(x, y) for x, y in pts if x is not None and y is not None]
        if pts:
            out[k] = (xk or "index", [p[0] for p in pts], [p[1] for p in pts])
    return out


def _from_rows(rows: list[dict], name: str) -> dict[str, Curve]:
    rows = [r for r in rows if isinstance(r, dict)]
    if not rows:
        return {}
    keys = {k for r in rows for k in r}
    xk = next((k for k in X_KEYS if k in keys), None)
    out = {}
    for k in sorted(keys):
        if not _is_curve_key(k) and not (k in ("value", "y") and _is_curve_key(name)):
            continue
        pts = [(_num(r.get(xk)) if xk else i, _num(r.get(k))) for i, r in enumerate(rows)]
        pts = [(x, y) for x, y in pts if x is not None and y is not None]
        if pts:
            out[k if _is_curve_key(k) else name] = (xk or "index", [p[0] for p in pts], [p[1] for p in pts])
    return out


def _from_csv(path: Path) -> dict[str, Curve]:
    """Columns of a CSV log; Lightning writes train and val rows apart, so blanks are skipped per column."""
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, csv.Error, UnicodeDecodeError):
        return {}
    curves = _from_rows(rows, path.stem)
    if "epoch" in (rows[0] if rows else {}):  # per-epoch mean of per-step rows (Lightning logs both)
        merged = {}
        for k, (xl, xs, ys) in curves.items():
            by: dict[float, list[float]] = {}
            for x, y in zip(xs, ys):
                by.setdefault(x, []).append(y)
            merged[k] = (xl, sorted(by), [sum(by[x]) / len(by[x]) for x in sorted(by)])
        curves = merged
    return curves


def curves_of(job: Job) -> dict[str, Curve]:
    """Every loss / reward curve a training job logged (results.json first, then its CSV files)."""
    r = job.results or {}
    out: dict[str, Curve] = {}
    if isinstance(r.get("curves"), dict):
        out.update(_from_columns(r["curves"]))
    hist = r.get("history")
    if isinstance(hist, dict):
        for k, v in hist.items():
            if isinstance(v, list) and v and isinstance(v[0], dict):
                out.update({kk: c for kk, c in _from_rows(v, k).items() if kk not in out})
            elif isinstance(v, list) and _is_curve_key(k):  # a bare list of values
                out.update({kk: c for kk, c in _from_columns({k: v}).items() if kk not in out})
    if not out:
        for path in sorted(job.dir.rglob("*.csv"))[:20]:
            if "wandb" not in path.parts:
                out.update({k: c for k, c in _from_csv(path).items() if k not in out})
    return out


def _training_section(jobs: list[Job], out: Path, key: str, title: str, what: str) -> Section:
    s = Section(key, title, paper.CLAIMS[key], jobs=list(jobs))
    runs = [(j, curves_of(j)) for j in jobs if j.status == "ok"]
    runs = [(j, c) for j, c in runs if c]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    if not runs:
        no_data(ax, f"no successful {what} job with a loss curve")
    reward_ax = None
    k = 0
    for j, curves in runs:
        tag = f" ({j.name})" if len(runs) > 1 else ""
        for name, (xl, xs, ys) in sorted(curves.items()):
            if "reward" in name:
                reward_ax = reward_ax or ax.twinx()
                reward_ax.plot(xs, ys, ":", color="#7f8c8d", label=name.replace("_", " ") + tag)
                reward_ax.set_ylabel("reward")
                continue
            ax.plot(xs, ys, "--" if name.startswith("val") else "-", color=COLORS[k % len(COLORS)],
                    marker="o" if len(xs) <= 40 else None, ms=3, label=name.replace("_", " ") + tag)
            ax.set_xlabel(xl)
            k += 1
        ax.set_ylabel("loss")
    if runs:
        handles = ax.get_legend_handles_labels()
        if reward_ax is not None:
            h2 = reward_ax.get_legend_handles_labels()
            handles = (handles[0] + h2[0], handles[1] + h2[1])
        ax.legend(*handles, fontsize=8)
    ax.set_title(f"{title.split(':')[0]} (this run): {what} training loss", fontsize=10)
    s.figures = save(fig, out, key)
    rows = []
    for j, curves in runs:
        for name, (xl, xs, ys) in sorted(curves.items()):
            rows.append([j.name, name, f"{len(xs)} {xl}s", fmt(ys[0], 4), fmt(ys[-1], 4), fmt(min(ys), 4),
                         "decreases, levels off (curve only)" if "loss" in name else "n/a"])
            s.metrics.setdefault(f"{name}_first", ys[0])
            s.metrics.setdefault(f"{name}_last", ys[-1])
    s.tables.append(md_table(["job", "curve", "length", "first", "last", "min", "paper"], rows))
    s.notes += failed_lines(jobs)
    return s


def fig8(jobs: list[Job], out: Path) -> Section:
    s = _training_section(jobs, out, "fig8", "Fig. 8: training loss of the spatio-temporal flow filter",
                          "flow filter")
    for j in (j for j in jobs if j.status == "ok"):
        c, t = j.config, j.results or {}
        seeds = get(c, "task.seeds") or {}
        s.setup.append(f"{j.name}: source `{get(c, 'task.source')}`, split `{get(c, 'task.split')}`"
                       + (f" (scenes: train {seeds.get('train')}, val {seeds.get('val')}, test {seeds.get('test')})"
                          if get(c, "task.split") == "seed" else "")
                       + f", {get(c, 'task.frames')} frames per scene of {get(c, 'dataset.width')}x"
                         f"{get(c, 'dataset.height')}, tiles {get(c, 'tiling.tile')} px; {t.get('epochs')} epochs "
                         f"in {fmt(t.get('train_s'), 0)} s; best {t.get('monitor') or 'val F1'} {fmt(t.get('best_monitor'), 4)}; "
                         f"threshold {fmt(get(t, 'policy.threshold'), 4)}; checkpoint `{t.get('ckpt')}`.")
        test = get(t, "test.closed_loop") or {}
        if test:
            s.tables.append(f"{j.name}: held-out test scenes, closed loop: accuracy {fmt(test.get('accuracy'), 4, pct=True)}, "
                            f"recall {fmt(test.get('recall'), 4, pct=True)}, tiles skipped "
                            f"{fmt(test.get('skipped'), 3, pct=True)} (Fig. 12 evaluates the shipped filter).")
        if j.record.get("commit"):
            s.setup.append(f"Code: commit `{j.record['commit']}` (at the time of the job).")
    return s


def fig9(jobs: list[Job], out: Path) -> Section:
    s = _training_section(jobs, out, "fig9", "Fig. 9: training loss of the DQN-based load-balanced scheduler",
                          "DQN scheduler")
    for j in (j for j in jobs if j.status == "ok"):
        c, t = j.config, j.results or {}
        nodes = get(c, "topology.nodes") or []
        s.setup.append(f"{j.name}: topology `{get(c, 'topology.name')}` ("
                       + ", ".join(f"{n.get('name')}: {n.get('model')} on {n.get('device')}" for n in nodes
                                   if isinstance(n, dict))
                       + f"); {t.get('steps')} environment steps, {t.get('updates')} updates in "
                         f"{fmt(t.get('train_s'), 0)} s; checkpoint `{t.get('checkpoint')}`.")
        for key, label in (("eval_random_traces", "random load traces"),
                           ("eval_one_in_flight", "random load traces, one frame in flight"),
                           ("eval_runner_trace", "the runner's trace")):
            ev = t.get(key)
            if isinstance(ev, dict) and ev:
                s.tables.append(f"{j.name}: the trained policy in the training env, held-out episodes with {label} "
                                "(fps on the simulated cluster):\n\n" + md_table(
                                    ["policy", "fps", "fps / oracle", "mean reward"],
                                    [[n, fmt(v.get("fps"), 2), fmt(v.get("fps_vs_oracle"), 3), fmt(v.get("reward"), 4)]
                                     for n, v in ev.items() if isinstance(v, dict)]))
        if j.record.get("commit"):
            s.setup.append(f"Code: commit `{j.record['commit']}` (at the time of the job).")
    return s
