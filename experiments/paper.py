"""``+experiment=paper``: every figure's sweep, one after the other, then one REPORT.md for all.

Each figure is its own Hydra multirun (``python run.py -m +experiment=figN``: its sweep axes, its
launcher), run as a subprocess into ``<this job's dir>/<figN>/``. Overrides given to the paper job
(``experiment.size=full``, ``logger=none``, ...) are passed on to every figure sweep. A figure whose
sweep fails is recorded and the next one runs. With ``experiment.resume=true`` (and
``hydra.sweep.dir=<the earlier paper sweep>``) finished jobs of every figure are skipped.
"""
from __future__ import annotations

import subprocess
import sys
import time

from omegaconf import DictConfig, OmegaConf

from hode.config import ROOT, options
from hode.errors import check
from hode.results import run_dir, write_results

OWN = ("+experiment=", "experiment.figures=", "experiment.resume=", "+experiment.resume=")


def forwarded_overrides() -> list[str]:
    """The paper job's own command-line overrides that every figure sweep gets too."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return []
    return [o for o in HydraConfig.get().overrides.task if not o.startswith(OWN)]


def main(cfg: DictConfig) -> dict:
    figures = [str(f) for f in cfg.experiment.figures]
    known = options("experiment")
    for f in figures:
        check(f in known and f != "paper", f"experiment.figures: unknown figure '{f}' (available: "
                                           f"{', '.join(k for k in known if k.startswith('fig'))})")
    out = run_dir()
    extra = forwarded_overrides()
    resume = bool(OmegaConf.select(cfg, "experiment.resume", default=False))
    results: dict = {"task": "paper", "size": str(cfg.experiment.size), "figures": {}, "forwarded": extra}
    for fig in figures:
        sweep = out / fig
        cmd = [sys.executable, str(ROOT / "run.py"), "-m", f"+experiment={fig}", f"hydra.sweep.dir={sweep}", *extra]
        if resume and sweep.is_dir():
            cmd.append("experiment.resume=true")
        print(f"paper: {fig}: {' '.join(cmd[2:])}", flush=True)
        t0 = time.time()
        rc = subprocess.run(cmd, cwd=str(ROOT)).returncode
        results["figures"][fig] = {"sweep": str(sweep), "exit_status": rc, "ok": rc == 0,
                                   "duration_s": round(time.time() - t0, 1)}
        write_results(cfg, results)  # after every figure: an interrupted paper run shows what is done
    rc = subprocess.run([sys.executable, "-m", "reports", str(out), "--out", str(out)], cwd=str(ROOT)).returncode
    results["report"] = str(out / "REPORT.md") if rc == 0 else None
    results = write_results(cfg, results)
    done = [f for f, r in results["figures"].items() if r["ok"]]
    print(f"paper: {len(done)}/{len(figures)} figure sweeps without failures; report: {results['report']}")
    return results
