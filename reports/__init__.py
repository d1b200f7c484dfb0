"""Sweep results -> the paper's figures (PNG + PDF) and a REPORT.md with the paper's numbers beside ours.

    python -m reports multirun/fig11/<time>_quick      # one sweep; REPORT.md goes into that dir
    python -m reports --all                            # the latest sweep of every experiment under multirun/
    python -m reports DIR --out /tmp/report            # write somewhere else

Reports read the local ``results.json`` / ``job.json`` files the sweeps wrote; failed jobs are listed,
never fatal. Modules: collect (find and read jobs), one module per family of figures (motivation,
training, methods, filters; real: Fig. 11 and 12 on real footage beside their synthetic twins), build
(sections -> REPORT.md), wandb_log (figures as W&B images).
"""
