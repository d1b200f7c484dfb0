"""``task=eval_filter``: every flow filter open loop and closed loop, with the safeguards' cost/benefit.

For each filter of ``task.filters`` (conf/filter options; the run's own ``filter`` config is used
for its option, so ``filter=st filter.ckpt=PATH`` evaluates that checkpoint) on held-out track
sequences: accuracy, precision, recall of occupied tiles, F1, fraction skipped and the median
per-frame filter latency (batch 1, ``task.latency_threads`` torch threads), open loop (history =
true counts) and closed loop (history = what an *ideal detector* found in the kept tiles; see
hode/filter/evaluate.py). Then each of ``task.guard_filters`` under each safeguard variant.
``task.source=video`` scores them on real footage (``dataset=video``; hode/filter/video_eval.py):
results.json ``labels`` says where its boxes came from (truth, or golden labels and their quality).
With ``task.e2e.frames > 0`` it also runs the real pipeline (the run's detector, YOLO) with each
of ``task.e2e.filters`` on the same rendered frames and reports mAP50 and tiles skipped.

results.json: ``filter.<name>.{open_loop,closed_loop}`` (accuracy, precision, recall, f1, skipped,
latency_ms, ...), ``guards.<name>.<variant>.{open_loop,closed_loop}``, ``e2e.<name>``, and
``diagnosis``: the closed-loop false skips / keeps of each of ``task.diagnose`` by row, column and
cause, with the appearance births no history can announce and the oracle-tuned probing estimate
(hode/filter/diagnose.py).
"""
from __future__ import annotations

import logging

import torch
from omegaconf import DictConfig, OmegaConf

from hode.config import build, load_option
from hode.errors import ConfigError, HodeError, check
from hode.filter.diagnose import appearance_bound, error_breakdown
from hode.filter.evaluate import evaluate, run_loop
from hode.filter.tracks import TrackSequence, from_source, split_blocks
from hode.results import run_dir, write_results

log = logging.getLogger(__name__)


def test_sequences(cfg: DictConfig, info: dict | None = None) -> list[TrackSequence]:
    """The held-out sequences of ``task.source``; ``info["labels"]`` says where a video's boxes came from."""
    t = cfg.task
    if t.source == "mot":
        seqs = [from_source(build(load_option("dataset", "mot"), path=str(p))) for p in t.mot_paths]
    elif t.source == "video":  # the user's own footage: its truth, else golden labels (hode/filter/video_eval.py)
        from hode.filter.video_eval import video_sequences

        seqs, labels = video_sequences(cfg.dataset, str(t.split))
        if info is not None:
            info["labels"] = labels
        return seqs
    elif t.source == "dataset":
        if t.split == "seed":
            check("seed" in cfg.dataset, f"task.split=seed needs a dataset with a seed, {cfg.dataset._target_} has none")
            return [from_source(build(cfg.dataset, seed=int(s), frames=int(t.frames))) for s in t.seeds]
        seqs = [from_source(build(cfg.dataset))]
    else:
        raise ConfigError(f"task.source must be 'dataset', 'video' or 'mot', got {t.source!r}")
    check(t.split in ("time", "all"), f"task.split must be 'seed', 'time' or 'all', got {t.split!r}")
    # time: the test block (last fifth) of each video, as train_filter's split=time held it out
    return seqs if t.split == "all" else [split_blocks(s, (3, 1, 1))[2] for s in seqs]


def filter_config(cfg: DictConfig, name: str, guard: dict | None = None) -> DictConfig:
    """The option's config (the run's own ``filter`` when it is that option), guards replaced."""
    node = cfg.filter if cfg.filter.get("name") == name else load_option("filter", name)
    node = OmegaConf.create(OmegaConf.to_container(node, resolve=True))
    if guard is not None:
        node.guard = dict(guard)
    return node


def check_held_out(flt, seqs: list[TrackSequence]) -> None:
    """Refuse to score a trained filter on sequences it was trained or validated on."""
    meta = getattr(flt, "meta", None) or {}
    seen = set(meta.get("train", [])) | set(meta.get("val", []))
    leaked = [s.name for s in seqs if s.name in seen]
    check(not leaked, f"filter {flt.name} ({getattr(flt, 'ckpt', '?')}) was trained/validated on {leaked}: "
                      "evaluate on held-out sequences (task.seeds)")


def _round(d: dict) -> dict:
    return {k: round(v, 6) if isinstance(v, float) else v for k, v in d.items()}


def score(flt, seqs: list[TrackSequence], tiler, warmup: int) -> dict:
    return {"open_loop": _round(evaluate(flt, seqs, tiler, closed=False, warmup=warmup)),
            "closed_loop": _round(evaluate(flt, seqs, tiler, closed=True, warmup=warmup))}


def diagnose(cfg: DictConfig, names: list[str], seqs: list[TrackSequence], tiler, warmup: int) -> dict:
    """Closed-loop error breakdown of each filter, and what no history-based filter can avoid."""
    out: dict = {"appearance_bound": appearance_bound(seqs, tiler.tile, float(cfg.task.diagnose_recall), warmup)}
    for name in names:
        try:
            flt = build(filter_config(cfg, name))
            check_held_out(flt, seqs)
            keeps = [run_loop(flt, s, tiler, closed=True).keep for s in seqs]
            out[name] = error_breakdown(keeps, seqs, tiler.tile, warmup)
        except HodeError as e:
            if isinstance(e, ConfigError) and "trained/validated on" in str(e):
                raise
            out[name] = {"error": str(e)}
    return out


def end_to_end(cfg: DictConfig, names: list[str], frames: int) -> dict:
    """mAP50 and tiles skipped through the real pipeline and detector, same frames for each filter."""
    from hode.tasks.run import build_pipeline, run_pipeline, summarize

    out = {}
    frame_list = list(build(cfg.dataset, frames=frames))
    for name in names:
        pipeline, backend = build_pipeline(cfg, flow_filter=build(filter_config(cfg, name)))
        trace, stats, _, _ = run_pipeline(pipeline, backend, frame_list)
        s = summarize(trace, stats)
        tiles = s["tiles"]
        out[name] = {"map50": s["map50"], "map50_95": s["map50_95"], "frames": s["frames"],
                     "skipped": tiles["skipped"] / max(tiles["total"], 1), "fps": s["fps"],
                     "filter_ms": s["overhead_ms"]["filter"]}
        log.info("e2e %s: %s", name, out[name])
    return out


def main(cfg: DictConfig) -> dict:
    t = cfg.task
    tiler = build(cfg.tiling)
    info: dict = {}
    seqs = test_sequences(cfg, info)
    check(len(seqs) > 0, "no evaluation sequences")
    threads = torch.get_num_threads()
    torch.set_num_threads(int(t.latency_threads))  # the camera's one core: latency at batch 1, 1 thread
    results: dict = {"task": "eval_filter", "sequences": [s.name for s in seqs],
                     "grid": list(tiler.grid(seqs[0].height, seqs[0].width)), "tile": tiler.tile,
                     "pad": list(tiler.pad), "detector_in_closed_loop": "ideal (ground truth of kept crops)",
                     "warmup_frames": int(t.warmup), **info, "filter": {}, "guards": {}}
    try:
        for name in t.filters:
            try:
                flt = build(filter_config(cfg, name))
                check_held_out(flt, seqs)
                results["filter"][name] = score(flt, seqs, tiler, int(t.warmup))
                results["filter"][name]["guard"] = flt.guard.describe() if hasattr(flt, "guard") else "off"
            except HodeError as e:  # e.g. a checkpoint for another grid: report it, go on with the others
                if isinstance(e, ConfigError) and "trained/validated on" in str(e):
                    raise
                log.warning("filter %s skipped: %s", name, e)
                results["filter"][name] = {"error": str(e)}
        for name in t.guard_filters:
            results["guards"][name] = {}
            for variant, guard in t.guards.items():
                try:
                    flt = build(filter_config(cfg, name, OmegaConf.to_container(guard) or {}))
                    check_held_out(flt, seqs)
                    results["guards"][name][variant] = score(flt, seqs, tiler, int(t.warmup))
                except HodeError as e:
                    results["guards"][name][variant] = {"error": str(e)}
        if t.get("diagnose"):
            results["diagnosis"] = diagnose(cfg, list(t.diagnose), seqs, tiler, int(t.warmup))
    finally:
        torch.set_num_threads(threads)
    if int(t.e2e.frames) > 0:
        results["e2e"] = end_to_end(cfg, list(t.e2e.filters), int(t.e2e.frames))
    results = write_results(cfg, results)
    print(table(results))
    print(f"results: {run_dir() / 'results.json'}")
    return results


def table(r: dict) -> str:
    """The paper's Fig. 12 as text, with the closed-loop columns next to the open-loop ones."""
    keys = ("accuracy", "precision", "recall", "f1", "skipped")
    head = f"{'filter':<22}{'loop':<8}" + "".join(f"{k:>10}" for k in keys) + f"{'ms':>8}"
    lines = [f"sequences: {', '.join(r['sequences'])}  grid {r['grid'][0]}x{r['grid'][1]}", head]

    def rows(label: str, d: dict) -> None:
        if "error" in d:
            lines.append(f"{label:<22}error: {d['error']}")
            return
        for loop in ("open_loop", "closed_loop"):
            m = d[loop]
            lines.append(f"{label:<22}{loop.split('_')[0]:<8}" + "".join(f"{m[k]:>10.4f}" for k in keys)
                         + f"{m['latency_ms']:>8.3f}")

    for name, d in r["filter"].items():
        rows(name, d)
    for name, variants in r.get("guards", {}).items():
        for v, d in variants.items():
            rows(f"{name}+{v}", d)
    diag = r.get("diagnosis", {})
    for name, d in diag.items():
        if name == "appearance_bound" or "error" in d:
            continue
        causes = ", ".join(f"{k} {v}" for k, v in d.get("false_skip_causes", {}).items())
        lines.append(f"closed-loop errors {name}: {d['false_skips']} false skips ({causes}) by row "
                     f"{d['false_skips_by_row']}; {d['false_keeps']} false keeps by row {d['false_keeps_by_row']}")
    b = diag.get("appearance_bound", {})
    if "appearance_births" in b:
        best, at = b["oracle_probing_best_accuracy"], b["oracle_probing_at_target_recall"]
        lines.append(f"appearance births (no history announces them): {b['appearance_births']} of {b['births']} births; "
                     f"oracle-tuned per-tile probing: best accuracy {best['accuracy']:.4f} (recall {best['recall']:.4f}), "
                     + (f"at recall >= {at['target_recall']}: accuracy {at['accuracy']:.4f}" if "accuracy" in at else at.get("error", "")))
    for name, d in r.get("e2e", {}).items():
        lines.append(f"e2e {name:<18} mAP50={d['map50']}  skipped={d['skipped']:.3f}  filter_ms={d['filter_ms']}")
    return "\n".join(lines)
