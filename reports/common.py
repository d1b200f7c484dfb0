"""What every figure section shares: the Section record, saving figures, tables, setup lines."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")  # files only: no display needed, safe in worker processes
import matplotlib.pyplot as plt  # noqa: E402

from reports.collect import Job, get  # noqa: E402

PAPER_COLOR = "#c0392b"
COLORS = ["#34495e", "#2980b9", "#27ae60", "#8e44ad", "#d35400", "#16a085", "#7f8c8d", "#f39c12"]


@dataclass
class Section:
    """One figure of the report: its pictures, tables (markdown) and the runs it came from."""

    key: str
    title: str
    claim: str = ""
    caption: str = ""  # under the figure: what data the numbers come from (footage, truth, size)
    figures: list[Path] = field(default_factory=list)
    tables: list[str] = field(default_factory=list)
    setup: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    jobs: list[Job] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)  # headline numbers (W&B summary, tests)

    @property
    def failed(self) -> list[Job]:
        return [j for j in self.jobs if j.status != "ok"]


OUTPUT = {"pdf": True, "dpi": 110}  # python -m reports --no-pdf / --dpi


def save(fig, out: Path, stem: str) -> list[Path]:
    """``<stem>.png`` (for REPORT.md and W&B) and ``<stem>.pdf`` (for papers) in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{stem}.png"] + ([out / f"{stem}.pdf"] if OUTPUT["pdf"] else [])
    fig.tight_layout()
    fig.savefig(paths[0], dpi=OUTPUT["dpi"])
    if OUTPUT["pdf"]:
        fig.savefig(paths[1])
    plt.close(fig)
    return paths


def no_data(ax, why: str) -> None:
    """Mark an empty panel so a figure with no successful jobs still says why."""
    ax.text(0.5, 0.5, why, ha="center", va="center", transform=ax.transAxes, fontsize=9, color="#7f8c8d", wrap=True)
    ax.set_xticks([])
    ax.set_yticks([])


def bar_labels(ax, bars, values: Sequence[float | None], fmt: str = "{:.2f}", fontsize: int = 8) -> None:
    for b, v in zip(bars, values):
        if v is not None and math.isfinite(v):
            ax.annotate(fmt.format(v), (b.get_x() + b.get_width() / 2, b.get_height()), ha="center", va="bottom",
                        fontsize=fontsize, xytext=(0, 2), textcoords="offset points")


def fmt(v: Any, nd: int = 3, pct: bool = False) -> str:
    """A table cell: numbers rounded, percentages with %, n/a for missing."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return str(v)
    return f"{100 * v:.{max(nd - 2, 0)}f}%" if pct else f"{v:.{nd}f}" if isinstance(v, float) else str(v)


def md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(x: Any) -> str:
        return str(x).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def mean(values: Sequence[float | None]) -> float | None:
    v = [float(x) for x in values if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)]
    return sum(v) / len(v) if v else None


def short_target(target: Any) -> str:
    return str(target or "?").split(".")[-1]


def option_name(cfg: dict, group: str) -> str:
    """The option's name (``scheduler.name``), else its module (``hode.schedule.fourk.X`` -> fourk)."""
    name = get(cfg, f"{group}.name")
    if name:
        return str(name)
    parts = str(get(cfg, f"{group}._target_") or "?").split(".")
    return parts[-2] if len(parts) >= 2 else parts[-1]


def device_sources(devices: Sequence[str], profiles_dir: str | None = None) -> dict[str, str]:
    """Device kind -> where its profile's numbers come from (the profile's own ``source`` line)."""
    from omegaconf import OmegaConf

    from hode.config import CONF_DIR

    out = {}
    for d in dict.fromkeys(devices):
        path = Path(profiles_dir or CONF_DIR / "device") / f"{d}.yaml"
        try:
            out[d] = str(OmegaConf.load(path).get("source") or "no source line")
        except Exception:
            out[d] = f"profile file {path} unreadable"
    return out


def setup_lines(job: Job | None) -> list[str]:
    """Topology, device profiles, dataset, runner and detector of a (representative) job."""
    if job is None or not job.config:
        return ["(no job config available)"]
    c = job.config
    lines = []
    nodes = get(c, "topology.nodes") or []
    if nodes:
        desc = ", ".join(f"{n.get('name')} ({n.get('model')} on {n.get('device')})" for n in nodes if isinstance(n, dict))
        lines.append(f"Topology `{get(c, 'topology.name', '?')}`: {desc}.")
        srcs = device_sources([n.get("device") for n in nodes if isinstance(n, dict) and n.get("device")],
                              get(c, "runner.backend.profiles_dir"))
        lines.append("Device profiles: " + "; ".join(f"`{d}`: {s}" for d, s in srcs.items()) + ".")
    ds = get(c, "dataset") or {}
    if ds:
        size = f"{ds.get('width')}x{ds.get('height')}" if ds.get("width") else "native size"
        extra = ", ".join(f"{k}={ds[k]}" for k in ("seed", "density", "root", "path") if ds.get(k) is not None)
        lines.append(f"Dataset `{short_target(ds.get('_target_'))}`: {size}, {ds.get('frames', '?')} frames"
                     + (f", {extra}" if extra else "") + ".")
    if get(c, "runner.name"):
        trace = get(c, "runner.load_trace") or []
        lines.append(f"Runner `{get(c, 'runner.name')}`" + (
            "; load trace: " + ", ".join(f"{t.get('node')} x{t.get('factor')} on frames {t.get('start')}-{t.get('end')}"
                                         for t in trace if isinstance(t, dict)) if trace else "") + ".")
    models = sorted({n.get("model") for n in nodes if isinstance(n, dict) and n.get("model")})
    if len(models) > 1:
        lines.append(f"Detectors: each node runs its model's option ({', '.join(models)}; conf/detector/) at imgsz "
                     f"{get(c, 'detector.imgsz')}; tiles {get(c, 'tiling.tile')} px, padding {get(c, 'tiling.pad')}.")
    elif get(c, "detector.name"):
        lines.append(f"Detector option `{get(c, 'detector.name')}` (imgsz {get(c, 'detector.imgsz')}, weights "
                     f"`{Path(str(get(c, 'detector.weights', '?'))).name}`); tiles {get(c, 'tiling.tile')} px, "
                     f"padding {get(c, 'tiling.pad')}.")
    commit = job.record.get("commit")
    if commit:
        lines.append(f"Code: commit `{commit}` (at the time of the job).")
    return lines


def shown(p: Path | str) -> str:
    """A path as REPORT.md shows it: relative to the current directory when inside it."""
    p = Path(p)
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(p)


def failed_lines(jobs: Sequence[Job]) -> list[str]:
    return [f"`{shown(j.dir)}` ({j.name}): **{j.status}**: {j.error}" for j in jobs if j.status != "ok"]
