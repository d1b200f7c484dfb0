"""``task=profile``: measure a device profile on this machine and write it as ``conf/device`` YAML.

For each model option: the median wall time of ``detector.predict`` (pre- and post-processing
included: what a node's service time is) on one padded 512 tile (704x608) and on one whole
3840x2160 frame at native resolution, after a few warm-up runs; noise = the tiles' relative
spread. The input is a synthetic crowd frame, so NMS sees a realistic number of boxes.

With ``task.batch=n`` (n >= 2) it also times one batch of n tiles and writes ``fixed_ms``, the
per-inference cost a tile riding behind another in a batch does not pay again
(``runner.backend.batched_inference``): a batch of n costs fixed + n x per-tile, one tile costs
fixed + per-tile, so fixed = (tile - batch / n) x n / (n - 1). On a CPU this is small (compute
bound); on a GPU it is most of a tile.
"""
from __future__ import annotations

import logging
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from hode.profiles import load_profile
from hode.data.synthetic import SyntheticCrowd
from hode.detect.factory import detector_config
from hode.config import build
from hode.errors import check
from hode.results import run_dir, write_results

log = logging.getLogger(__name__)
TILE_WINDOW = (1024 - 48, 1024 - 96, 1536 + 48, 1536 + 96)  # an interior 512 cell padded by (96, 48)


def _device_name(device: str) -> str:
    if device.startswith("cuda"):
        import torch

        return f"{device} {torch.cuda.get_device_name(device)}"
    return device


def _time(fn, warmup: int, runs: int) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def cpu_name() -> str:
    """This machine's processor, as /proc/cpuinfo names it (for the record of where a figure was measured)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def fixed_from_batch(tile_ms: float, batch_ms: float, n: int) -> float:
    """The per-inference part of one tile's time, from one tile's and one n-tile batch's times
    (fixed + per-tile = tile_ms; fixed + n x per-tile = batch_ms), clipped to [0, tile_ms]."""
    return min(max((tile_ms - batch_ms / n) * n / (n - 1), 0.0), tile_ms)


def measure(model: str, base: DictConfig, frame: np.ndarray, warmup: int, runs: int, frame4k_runs: int,
            batch: int = 0) -> dict:
    """Tile and 4K-frame service times of one model option (ms), with the raw runs; with
    ``batch`` >= 2 also one batch of that many tiles and the ``fixed_ms`` it implies."""
    cfg = detector_config(model, base)
    tile_det = build(cfg)
    big = OmegaConf.merge(OmegaConf.create(cfg if isinstance(cfg, dict) else OmegaConf.to_container(cfg)),
                          {"imgsz": 3840})  # native resolution: no downscaling of the 4K frame
    frame_det = build(big)
    x0, y0, x1, y1 = TILE_WINDOW
    tile = np.ascontiguousarray(frame[y0:y1, x0:x1])
    tiles = _time(lambda: tile_det.predict([tile]), warmup, runs)
    frames = _time(lambda: frame_det.predict([frame]), min(warmup, 1), frame4k_runs)
    med = statistics.median(tiles)
    spread = statistics.pstdev(tiles) / med if len(tiles) > 1 else 0.05
    out = {"tile_ms": round(med * 1000, 1), "frame4k_ms": round(statistics.median(frames) * 1000, 1),
           "noise": round(min(max(spread, 0.01), 0.5), 3), "weights": Path(str(cfg["weights"])).name,
           "device": tile_det.device, "tile_runs_ms": [round(t * 1000, 2) for t in tiles],
           "frame4k_runs_ms": [round(t * 1000, 1) for t in frames]}
    if batch >= 2:
        # distinct tiles (a row of cells), so the batch does the work n real tiles would
        row = [np.ascontiguousarray(frame[y0:y1, x0 + 512 * (k % 4 - 1):x1 + 512 * (k % 4 - 1)])
               for k in range(batch)]
        batches = _time(lambda: tile_det.predict(row), min(warmup, 1), max(runs // 2, 1))
        b_ms = statistics.median(batches) * 1000
        out.update(batch=batch, batch_ms=round(b_ms, 1), batch_runs_ms=[round(t * 1000, 1) for t in batches],
                   fixed_ms=round(fixed_from_batch(med * 1000, b_ms, batch), 2))
    return out


def to_yaml(name: str, source: str, timings: dict[str, dict]) -> str:
    lines = [f"# Measured by `python run.py task=profile` on {time.strftime('%Y-%m-%d')}: median wall time of",
             "# detector.predict on one padded 512 tile (704x608) and on one 3840x2160 frame at native resolution.",
             f"name: {name}", f"source: {source!r}", "models:"]
    for m, t in timings.items():
        lines += [f"  {m}:", f"    tile_ms: {t['tile_ms']}", f"    frame4k_ms: {t['frame4k_ms']}",
                  f"    noise: {t['noise']}", f"    source: {t['source']!r}"]
        if "fixed_ms" in t:
            lines.append(f"    fixed_ms: {t['fixed_ms']}  # from one batch of {t['batch']} tiles: {t['batch_ms']} ms")
    return "\n".join(lines) + "\n"


def main(cfg: DictConfig) -> dict:
    t = cfg.task
    check(isinstance(t.warmup, int) and t.warmup >= 0, f"task.warmup must be an integer >= 0, got {t.warmup!r}")
    check(isinstance(t.runs, int) and t.runs >= 1, f"task.runs must be an integer >= 1, got {t.runs!r}")
    check(isinstance(t.frame4k_runs, int) and t.frame4k_runs >= 1, f"task.frame4k_runs must be >= 1, got {t.frame4k_runs!r}")
    check(len(t.models) > 0, "task.models must name at least one detector option")
    batch = t.get("batch", 0) or 0
    check(isinstance(batch, int) and (batch == 0 or batch >= 2),
          f"task.batch must be 0 (no batch timing) or an integer >= 2, got {batch!r}")
    if t.get("torch_threads"):
        import torch

        torch.set_num_threads(int(t.torch_threads))
    frame = next(iter(SyntheticCrowd(width=3840, height=2160, frames=1, seed=int(cfg.seed)))).image
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    import torch

    where = f"{cpu_name()}, {torch.get_num_threads()} torch threads, load average {load:.1f} at start"
    timings = {}
    for model in t.models:
        log.info("profiling %s", model)
        m = measure(str(model), cfg.detector, frame, t.warmup, t.runs, t.frame4k_runs, batch)
        m["source"] = (f"measured on {_device_name(m['device'])} ({where}); weights {m['weights']}; median of {t.runs} tile and "
                       f"{t.frame4k_runs} 4K runs after {t.warmup} warm-up")
        timings[str(model)] = m
        print(f"{model:<8} tile {m['tile_ms']:>8.1f} ms   4K frame {m['frame4k_ms']:>9.1f} ms   noise {m['noise']:.3f}"
              + (f"   batch of {batch} {m['batch_ms']:.1f} ms -> fixed {m['fixed_ms']:.2f} ms" if batch else "")
              + f"   ({m['weights']})")
    out = Path(t.out) if t.out else run_dir() / f"{t.device_name}.yaml"
    out.parent.mkdir(parents=True, exist_ok=True)
    first = next(iter(timings.values()))
    out.write_text(to_yaml(str(t.device_name), f"measured by task=profile on {_device_name(first['device'])} ({where})", timings))
    load_profile(str(t.device_name), out)  # what we wrote must load
    print(f"profile: {out}")
    return write_results(cfg, {"task": "profile", "device_name": t.device_name, "profile": str(out), "models": timings})
