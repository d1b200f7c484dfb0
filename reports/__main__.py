"""``python -m reports <sweep dir> [...] | --all [--root multirun] [--out DIR] [--wandb auto|on|off]``."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hode.config import ROOT


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m reports", description=__doc__)
    ap.add_argument("dirs", nargs="*", type=Path, help="sweep dirs (or any dir holding job dirs)")
    ap.add_argument("--all", action="store_true", help="the latest sweep of each experiment under --root")
    ap.add_argument("--root", type=Path, default=ROOT / "multirun", help="where --all looks (default: multirun/)")
    ap.add_argument("--out", type=Path, default=None,
                    help="output dir (default: the sweep dir; with --all or several dirs: <root>/report)")
    ap.add_argument("--wandb", choices=("auto", "on", "off"), default="auto",
                    help="log the figures as W&B images: auto = when the sweep's jobs used logger=wandb")
    ap.add_argument("--no-pdf", action="store_true", help="PNG only (e.g. for the README's pictures)")
    ap.add_argument("--dpi", type=int, default=110, help="PNG resolution (default 110)")
    args = ap.parse_args(argv)
    if not args.dirs and not args.all:
        ap.error("name a sweep dir, or use --all")
    dirs = list(args.dirs) + ([args.root] if args.all else [])
    for d in dirs:
        if not d.is_dir():
            print(f"error: {d}: no such directory", file=sys.stderr)
            return 2

    from reports.build import build_sections, write_report
    from reports.collect import find_jobs
    from reports.common import OUTPUT

    OUTPUT.update(pdf=not args.no_pdf, dpi=args.dpi)

    jobs = [j for d in dirs for j in find_jobs(d)]
    if not jobs:
        print(f"error: no sweep jobs under {', '.join(map(str, dirs))} (a job dir has .hydra/, results.json or job.json)",
              file=sys.stderr)
        return 2
    out = args.out or (dirs[0] if len(dirs) == 1 and not args.all else args.root / "report")
    sections = build_sections(jobs, out)
    path = write_report(sections, out, dirs)
    if args.wandb != "off":
        from reports.wandb_log import log_sections

        n = log_sections(sections, out, force=args.wandb == "on")
        if n:
            print(f"W&B: {n} report run(s) with the figures, offline unless WANDB_MODE=online "
                  f"(sync: wandb sync {out}/wandb/offline-run-*)")
    for s in sections:
        bad = len(s.failed)
        print(f"{s.title.split(':')[0]:<10} {len(s.jobs) - bad} ok, {bad} failed"
              + "".join(f"  {p}" for p in s.figures if p.suffix == ".png"))
    print(f"report: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
