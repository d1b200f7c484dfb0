"""The report's figures as W&B images: one ``job_type=report`` run per figure, in its sweep's group."""
from __future__ import annotations

import logging
import os
from pathlib import Path

from reports.collect import get
from reports.common import Section

log = logging.getLogger(__name__)


def used_wandb(section: Section) -> dict | None:
    """The logger config of the section's W&B jobs (None when its jobs logged elsewhere)."""
    for j in section.jobs:
        lg = get(j.config, "logger") or {}
        if str(lg.get("_target_", "")).endswith("WandbLogger"):
            return lg
    return None


def log_sections(sections: list[Section], out: Path, force: bool = False) -> int:
    """Log each section's PNGs and headline numbers; offline unless WANDB_MODE says otherwise.

    Sections whose jobs did not use W&B are skipped unless ``force``. Returns the runs written;
    a W&B failure is logged and never fails the report.
    """
    os.environ.setdefault("WANDB_SILENT", "true")
    try:
        import wandb
    except Exception as e:  # pragma: no cover - wandb is a dependency
        log.warning("wandb unavailable: %s", e)
        return 0
    n = 0
    for s in sections:
        lg = used_wandb(s) or ({"project": "hode", "mode": "offline"} if force else None)
        pngs = [p for p in s.figures if p.suffix == ".png" and p.is_file()]
        if lg is None or not pngs:
            continue
        exp = s.key
        try:
            run = wandb.init(project=lg.get("project") or "hode", entity=lg.get("entity"), group=lg.get("group"),
                             mode=os.environ.get("WANDB_MODE", lg.get("mode") or "offline"), dir=str(out),
                             job_type="report", name=f"report-{exp}", tags=[exp, "report"],
                             config={"figure": exp, "sweeps": sorted({str(j.sweep) for j in s.jobs})},
                             reinit="finish_previous")
            run.log({f"figures/{p.stem}": wandb.Image(str(p)) for p in pngs})
            run.summary.update({k: v for k, v in s.metrics.items() if isinstance(v, (int, float))})
            run.finish()
            n += 1
        except Exception as e:
            log.warning("wandb logging of %s failed, report kept: %s", exp, str(e).splitlines()[0][:200])
    return n
