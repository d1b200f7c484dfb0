"""Sweep jobs -> one Section per figure -> REPORT.md (+ PNG/PDF figures) in one directory."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import matplotlib.pyplot as plt

from hode.sweep import git_commit
from reports import paper
from reports.collect import Job, latest_per_experiment
from reports.common import (COLORS, Section, bar_labels, failed_lines, fmt, md_table, no_data, save, setup_lines,
                            shown)
from reports.filters import fig12
from reports.headline import bench
from reports.methods import fig11, fig13
from reports.motivation import fig2, fig3
from reports.real import TWINS, fig11_real, fig12_real
from reports.training import fig8, fig9

# Paper order; a real-footage figure comes right after its synthetic twin (reports/real.py).
FIGURES: dict[str, Callable[..., Section]] = {
    "fig2": fig2, "fig3": fig3, "fig8": fig8, "fig9": fig9, "fig11": fig11, "fig11_real": fig11_real,
    "fig12": fig12, "fig12_real": fig12_real, "fig13": fig13, "bench": bench,
}
CONTAINERS = {"paper"}  # experiments whose jobs only run other sweeps


def other(exp: str, jobs: list[Job], out: Path) -> Section:
    """Any other sweep (smoke tests, ad-hoc ``-m`` runs): fps per job and a table of its results."""
    s = Section(f"other-{exp}", f"Sweep `{exp}`: every job", "", jobs=list(jobs))
    ok = [j for j in jobs if j.status == "ok" and isinstance(j.r("fps"), (int, float))]
    fig, ax = plt.subplots(figsize=(6, 3.2))
    if ok:
        bars = ax.bar(range(len(ok)), [j.r("fps") for j in ok], color=COLORS[1])
        bar_labels(ax, bars, [j.r("fps") for j in ok])
        ax.set_xticks(range(len(ok)), [j.dir.name for j in ok], fontsize=8)
        ax.set_xlabel("job")
        ax.set_ylabel("fps")
    else:
        no_data(ax, "no successful job reports fps")
    ax.set_title(f"{exp}: fps per job", fontsize=10)
    s.figures = save(fig, out, f"sweep_{exp}")
    s.tables.append(md_table(["job", "overrides", "status", "task", "frames", "fps", "mAP50", "p95 ms"], [
        [j.dir.name, j.name, j.status, (j.results or {}).get("task", j.record.get("task", "?")), fmt(j.r("frames")),
         fmt(j.r("fps"), 2), fmt(j.r("map50"), 3), fmt(j.r("latency_ms.p95"), 0)] for j in jobs]))
    s.setup = setup_lines(ok[0] if ok else (jobs[0] if jobs else None))
    s.notes += failed_lines(jobs)
    return s


def build_sections(jobs: list[Job], out: Path) -> list[Section]:
    """One section per experiment found (its latest sweep), paper figures first, in paper order."""
    groups = latest_per_experiment(jobs)
    sections = []
    for exp in [*FIGURES, *sorted(set(groups) - set(FIGURES) - CONTAINERS)]:
        if exp not in groups:
            continue
        try:
            fn = FIGURES.get(exp)
            twin = {"twin": groups.get(TWINS[exp], [])} if exp in TWINS else {}  # drawn beside its synthetic twin
            sections.append(fn(groups[exp], out, **twin) if fn else other(exp, groups[exp], out))
        except Exception as e:  # a report must never crash on odd results: say what broke instead
            plt.close("all")
            s = Section(exp, f"{exp}: report failed", "", jobs=groups[exp])
            s.notes.append(f"drawing this figure failed: {type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}")
            s.notes += failed_lines(groups[exp])
            sections.append(s)
    return sections


def _section_md(s: Section, out: Path) -> list[str]:
    lines = [f"## {s.title}", ""]
    if s.claim:
        lines += [f"**Paper:** {s.claim}", ""]
    pngs = [p for p in s.figures if p.suffix == ".png"]
    for p in pngs:
        rel = p.relative_to(out) if p.is_relative_to(out) else p
        pdf = p.with_suffix(".pdf")
        lines += [f"![{s.key}]({rel})", "", f"Files: `{rel}`" + (f", `{pdf.relative_to(out)}`" if pdf.exists() and
                                                                    pdf.is_relative_to(out) else ""), ""]
    if s.caption:
        lines += [f"*{s.caption}*", ""]
    for t in s.tables:
        lines += [t, ""]
    if s.setup:
        lines += ["**Setup of this run:**", ""] + [f"- {x}" for x in s.setup] + [""]
    sweeps = sorted({shown(j.sweep) for j in s.jobs})
    n_ok = sum(j.status == "ok" for j in s.jobs)
    lines += [f"**Jobs:** {n_ok} ok, {len(s.jobs) - n_ok} failed or missing, from {', '.join(f'`{x}`' for x in sweeps)}.",
              ""]
    notes = [n for n in s.notes if n]
    if notes:
        lines += ["**Notes and failed jobs:**", ""] + [f"- {n}" for n in notes] + [""]
    return lines


def write_report(sections: list[Section], out: Path, sources: list[Path]) -> Path:
    """REPORT.md in ``out`` with every section; returns its path."""
    out.mkdir(parents=True, exist_ok=True)
    commits = sorted({j.record.get("commit") for s in sections for j in s.jobs if j.record.get("commit")})
    lines = ["# HODE harness: reproduction report", "",
             f"Paper: {paper.TITLE}.", "",
             f"Made {time.strftime('%Y-%m-%d %H:%M:%S')} by `python -m reports` from "
             + ", ".join(f"`{shown(p)}`" for p in sources) + ".",
             f"Report code at commit `{git_commit()}`; jobs ran at "
             + (", ".join(f"`{c}`" for c in commits) if commits else "an unrecorded commit") + ".", ""]
    failed = [(s, j) for s in sections for j in s.jobs if j.status != "ok"]
    summary = [[s.title.split(":")[0], sum(j.status == "ok" for j in s.jobs),
                sum(j.status != "ok" for j in s.jobs), ", ".join(f"{k}={fmt(v, 3)}" for k, v in list(s.metrics.items())[:4])]
               for s in sections]
    if sections:
        lines += [md_table(["figure", "ok jobs", "failed jobs", "headline (this run)"], summary), ""]
    else:
        lines += ["No jobs were found.", ""]
    if any(s.key == "fig11" for s in sections):
        lines += [f"- {paper.CLAIMS['overhead']}", ""]
    for s in sections:
        lines += _section_md(s, out)
    if failed:
        lines += ["## Failed jobs", ""] + [f"- {s.key}: `{shown(j.dir)}` ({j.name}): **{j.status}**: {j.error}"
                                          for s, j in failed] + [""]
    path = out / "REPORT.md"
    path.write_text("\n".join(lines))
    return path
