"""Where a run writes: the Hydra run dir, ``results.json``, and a short summary table."""
from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

# Keys whose values never leave the process (results.json, W&B config, logs).
SECRET_KEY = re.compile(r"(token|secret|password|passphrase|api_key|apikey)", re.I)


def run_dir() -> Path:
    """The Hydra run dir of the current job (``hydra.run.dir=...``), or the cwd outside Hydra."""
    try:
        from hydra.core.hydra_config import HydraConfig

        return Path(HydraConfig.get().runtime.output_dir)
    except Exception:
        return Path.cwd()


def redact(obj: Any) -> Any:
    """A copy of a plain config tree with every secret-looking value replaced by ``***``."""
    if isinstance(obj, dict):
        return {k: ("***" if SECRET_KEY.search(str(k)) and v not in (None, "") else redact(v)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [redact(v) for v in obj]
    return obj


def redact_overrides(overrides: list[str]) -> list[str]:
    """Command-line overrides (``key=value``) with the value of every secret-looking key replaced by ``***``."""
    out = []
    for o in overrides:
        key, eq, value = str(o).partition("=")
        out.append(f"{key}=***" if eq and value and SECRET_KEY.search(key.split(".")[-1]) else str(o))
    return out


def plain_config(cfg: DictConfig) -> dict:
    return redact(OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False))


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    return obj


_written: list[Path] = []  # results files this process finished writing (what run.py may claim)


def written() -> list[Path]:
    """The results files this process has completely written, oldest first."""
    return list(_written)


def atomic_write_text(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` so that no reader, on this machine or another one over a shared
    filesystem, ever sees half a file: the text goes to a temporary file of a unique name in the same
    folder (two writers never share one), is flushed to disk, then renamed over ``path``. An
    interruption leaves the previous file or none, and no stray temporary file."""
    import os
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:  # Ctrl-C included
        Path(tmp).unlink(missing_ok=True)
        raise


def write_results(cfg: DictConfig, results: dict, path: Path | None = None) -> dict:
    """Write ``results.json`` (with the redacted config) into the run dir and return the dict.

    Atomic (:func:`atomic_write_text`): an interruption at any point leaves the previous file or none,
    never half a one, and only a completed rename is recorded in :func:`written`."""
    results = dict(results)
    results["config"] = plain_config(cfg)
    path = path or run_dir() / "results.json"
    atomic_write_text(path, json.dumps(_jsonable(results), indent=1))
    _written.append(path)
    return results


def summary_table(r: dict) -> str:
    """A few lines a person reads at the end of a run."""
    against = f" (against {r['gt']})" if r.get("gt") else ""  # dataset ground truth, or golden labels
    lines = [f"task={r.get('task')}  frames={r.get('frames')}  fps={_f(r.get('fps'))}"
             f"  mAP50={_f(r.get('map50'))}  mAP50-95={_f(r.get('map50_95'))}{against}"]
    runner = r.get("runner") or {}
    if runner.get("emulated") and r.get("fps"):  # wall fps of a slowed-down emulation
        lines.append(f"emulated devices: time_scale={_f(runner['time_scale'], 2)} -> "
                     f"fps in device time={_f(r['fps'] * runner['time_scale'], 2)}")
    if "latency_ms" in r:
        lat = r["latency_ms"]
        lines.append(f"latency ms  p50={_f(lat['p50'])}  p95={_f(lat['p95'])}  p99={_f(lat['p99'])}")
    if isinstance(r.get("tiles"), dict):
        t = r["tiles"]
        lines.append(f"tiles  total={t['total']}  processed={t['processed']}  skipped={t['skipped']}")
    if "overhead_ms" in r:
        o = r["overhead_ms"]
        lines.append("camera overhead ms/frame (median)  " + "  ".join(f"{k}={_f(v, 2)}" for k, v in o.items()))
    for n in r.get("nodes", []):
        lines.append(f"  node {n['name']:<12} {n['model']:<8} items={n['items']:<6} busy_s={_f(n['busy_s'], 2)}")
    return "\n".join(lines)


def _f(v: Any, nd: int = 3) -> str:
    return "n/a" if v is None else f"{v:.{nd}f}" if isinstance(v, float) else str(v)
