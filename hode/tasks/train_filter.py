"""``task=train_filter``: train the spatio-temporal flow filter with PyTorch Lightning.

Data: ground-truth tracks turned into per-tile count matrices, from ``dataset=...`` (one scene per
seed for the synthetic crowd: ``split=seed``; or contiguous time blocks of a video: ``split=time``)
or from MOT tracks, e.g. the real TUD tracks bundled with motmetrics (``task.source=mot``), split
train:val:test 3:1:1 with no frame shared between splits; or from the user's own video
(``task.source=video`` with ``dataset=video``: its ground truth, else cached golden labels; the test
split is the held-out last 20% of the video, hode/filter/video_tracks.py). Samples are open loop (true histories)
and closed loop (Comp-1 and DAgger rollouts of the net itself). Validation F1 picks the checkpoint
and stops training early; the keep policy is then chosen on the validation data for the target
recall: with ``task.probe=motion`` (default) nothing is probed, the motion guard (``task.guard``,
hode/filter/motion.py) watches the skipped tiles, and the keep threshold and base are the most
accurate reaching the target closed-loop recall; with ``task.probe=walkin`` each tile is probed at
its own period from its walk-in rate on the *training* scenes (hode/filter/walkin.py) and the one
knob, ``walkin_beta``, is the smallest reaching the target closed-loop recall on validation.
``task.refit=PATH`` keeps that checkpoint's net (and, for walkin/global, its keep threshold) and
only chooses the policy again (minutes, no training). The small checkpoint (kilobytes) goes to ``task.ckpt_out``
(default ``<run dir>/filter_st.ckpt``); use it with ``filter=st filter.ckpt=PATH``.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from hode.config import build, load_option
from hode.errors import ConfigError, check
from hode.filter.evaluate import evaluate
from hode.filter.st import STFilter, save_checkpoint
from hode.filter.threshold import best_f1_threshold, closed_loop_threshold, smallest_for_recall
from hode.filter.walkin import prior_rates, walkin_counts
from hode.filter.tracks import TrackSequence, from_source, split_blocks
from hode.results import plain_config, run_dir, write_results

log = logging.getLogger(__name__)
SPLITS = ("train", "val", "test")
MONITORS = {"val_f1": "max", "val_recall": "max", "val_loss": "min"}  # what picks the checkpoint


def load_splits(cfg: DictConfig) -> dict[str, list[TrackSequence]]:
    """Train / val / test track sequences as ``task.source`` and ``task.split`` say."""
    t = cfg.task
    if t.source == "video":
        from hode.filter.video_tracks import video_splits

        return video_splits(build(cfg.dataset), int(t.model.trend))
    if t.source == "mot":
        seqs = [from_source(build(load_option("dataset", "mot"), path=str(p))) for p in t.mot_paths]
        check(t.split != "seed", "task.source=mot: split MOT videos by time (task.split=time, 3:1:1 blocks)")
    elif t.source == "dataset":
        if t.split == "seed":
            check("seed" in cfg.dataset, f"task.split=seed needs a dataset with a seed (synthetic), "
                                          f"{cfg.dataset._target_} has none: use task.split=time")
            out = {}
            for split in SPLITS:
                seeds = [int(s) for s in t.seeds[split]]
                check(len(seeds) > 0, f"task.seeds.{split} is empty")
                out[split] = [from_source(build(cfg.dataset, seed=s, frames=int(t.frames))) for s in seeds]
            overlap = set(t.seeds.train) & (set(t.seeds.val) | set(t.seeds.test)) | set(t.seeds.val) & set(t.seeds.test)
            check(not overlap, f"task.seeds share scenes between splits: {sorted(overlap)}")
            return out
        seqs = [from_source(build(cfg.dataset))]
    else:
        raise ConfigError(f"task.source must be 'dataset', 'video' or 'mot', got {t.source!r}")
    check(t.split == "time", f"task.split must be 'seed' or 'time', got {t.split!r}")
    blocks = [split_blocks(s, (3, 1, 1)) for s in seqs]
    return {split: [b[i] for b in blocks] for i, split in enumerate(SPLITS)}


def _loggers(cfg: DictConfig, out: Path, name: str) -> list:
    """CSV always (the loss curves file); W&B through Lightning's logger when logger=wandb."""
    from pytorch_lightning.loggers import CSVLogger

    loggers = [CSVLogger(save_dir=str(out), name="lightning", version="")]
    if str(cfg.logger.get("_target_", "")).endswith("WandbLogger"):
        import os

        os.environ.setdefault("WANDB_SILENT", "true")
        try:
            from pytorch_lightning.loggers import WandbLogger

            mode = os.environ.get("WANDB_MODE", cfg.logger.get("mode", "offline"))
            loggers.append(WandbLogger(project=cfg.logger.get("project", "hode"), entity=cfg.logger.get("entity"),
                                       group=cfg.logger.get("group"), name=name, save_dir=str(out),
                                       offline=mode != "online", config=plain_config(cfg), tags=["train_filter"]))
        except Exception as e:  # logging never takes training down
            log.warning("wandb logger unavailable, continuing with CSV only: %s", str(e).splitlines()[0][:200])
    return loggers


def loss_curves(csv_path: Path) -> dict[str, list]:
    """Per-epoch train and val loss from Lightning's metrics.csv (the paper's Fig. 8)."""
    import csv

    if not csv_path.is_file():
        return {"epoch": [], "train_loss": [], "val_loss": []}
    by_epoch: dict[int, dict] = {}
    with open(csv_path) as f:
        for row in csv.DictReader(f):
            if row.get("epoch") in (None, ""):
                continue
            e = by_epoch.setdefault(int(row["epoch"]), {})
            for k in ("train_loss", "val_loss", "val_f1", "val_skipped"):
                if row.get(k) not in (None, ""):
                    e[k] = float(row[k])
    epochs = sorted(by_epoch)
    return {"epoch": epochs, **{k: [by_epoch[e].get(k) for e in epochs] for k in ("train_loss", "val_loss", "val_f1", "val_skipped")}}


def plot_curves(curves: dict, path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception:
        return None
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for k, style in (("train_loss", "-"), ("val_loss", "--")):
        pts = [(e, v) for e, v in zip(curves["epoch"], curves[k]) if v is not None]
        if pts:
            ax.plot(*zip(*pts), style, label=k.replace("_", " "))
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title("flow filter training (cf. paper Fig. 8)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def train(cfg: DictConfig, splits: dict[str, list[TrackSequence]], out: Path) -> dict:
    import pytorch_lightning as pl
    from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint

    from hode.filter.lit import DaggerRollouts, FilterDataModule, LitFlowFilter

    t = cfg.task
    tiler = build(cfg.tiling)
    seq0 = splits["train"][0]
    rows, cols = tiler.grid(seq0.height, seq0.width)
    for split, seqs in splits.items():
        for s in seqs:
            check(tiler.grid(s.height, s.width) == (rows, cols),
                  f"{s.name} is {s.width}x{s.height}: another tile grid than {seq0.name}; train one size at a time")
    torch.set_num_threads(int(t.threads))
    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
    arch = dict(rows=rows, cols=cols, **OmegaConf.to_container(t.model, resolve=True))
    if arch.get("fusion") == "auto":  # the user's footage: a net that runs on any grid (other sizes, tiles)
        arch["fusion"] = "shared" if t.source == "video" else "cell"
    dm = FilterDataModule(splits["train"], splits["val"], splits["test"], tiler, trend=int(arch["trend"]),
                          batch_size=int(t.batch), closed_loop=bool(t.closed_loop_samples))
    t0 = time.time()
    dm.setup()
    t_data = time.time() - t0
    if t.pos_weight == "auto":
        pos = dm.pos_fraction()
        pos_weight = float(np.clip((1 - pos) / max(pos, 1e-6), 0.1, 100.0))
    else:
        pos_weight = float(t.pos_weight)
    module = LitFlowFilter(arch, lr=float(t.lr), weight_decay=float(t.weight_decay), pos_weight=pos_weight,
                           focal_gamma=float(t.focal_gamma), flip=bool(t.flip))
    monitor = str(t.monitor)
    check(monitor in MONITORS, f"task.monitor must be one of {sorted(MONITORS)}, got {monitor!r}")
    ckpt_cb = ModelCheckpoint(dirpath=str(out / "lightning_ckpt"), monitor=monitor, mode=MONITORS[monitor],
                              save_top_k=1, filename="best-{epoch}")
    callbacks = [ckpt_cb, EarlyStopping(monitor=monitor, mode=MONITORS[monitor], patience=int(t.patience)),
                 DaggerRollouts(every=int(t.dagger_every), max_rounds=int(t.dagger_rounds), probe_every=int(t.probe_every))]
    trainer = pl.Trainer(max_epochs=int(t.epochs), max_steps=int(t.max_steps) if t.max_steps else -1,
                         accelerator="cpu", devices=1, logger=_loggers(cfg, out, f"train_filter-{seq0.name}"),
                         callbacks=callbacks, enable_progress_bar=bool(cfg.progress), enable_model_summary=False,
                         log_every_n_steps=1, reload_dataloaders_every_n_epochs=1, num_sanity_val_steps=0,
                         default_root_dir=str(out))
    trainer.fit(module, datamodule=dm)
    t_train = time.time() - t0 - t_data
    if ckpt_cb.best_model_path:
        best = LitFlowFilter.load_from_checkpoint(ckpt_cb.best_model_path, map_location="cpu")
    else:  # e.g. max_steps hit before the first validation
        best = module
    net = best.net.cpu().eval()
    curves = loss_curves(out / "lightning" / "metrics.csv")
    return {"net": net, "val_samples": dm.data["val"], "pos_weight": pos_weight, "curves": curves,
            "data_s": round(t_data, 1), "train_s": round(t_train, 1), "epochs": trainer.current_epoch,
            "best_" + monitor: float(ckpt_cb.best_model_score) if ckpt_cb.best_model_score is not None else None,
            "samples": {k: len(v) for k, v in dm.data.items()}, "tiler": tiler, "trainer": trainer}


def walkin_policy(net, threshold: float, train: list[TrackSequence], val: list[TrackSequence], tiler,
                  target_recall: float, strength: float, mirror: bool) -> tuple[dict, dict]:
    """Per-tile walk-in probing: the prior from the *training* scenes' ground truth, the knob
    ``walkin_beta`` the smallest (fewest probes) reaching ``target_recall`` in closed-loop rollouts
    of the validation scenes. Returns (policy, its validation closed-loop scores)."""
    prior = prior_rates(*walkin_counts(train, tiler.tile, mirror=mirror), strength)
    policy = {"threshold": threshold, "probe_threshold": 1.0, "probe_every": 0, "walkin_prior": prior.tolist(),
              "walkin_strength": float(strength)}

    def make(beta: float) -> STFilter:
        flt = STFilter(net=net)
        flt.set_policy(**policy, walkin_beta=beta)
        return flt

    beta, val_scores = smallest_for_recall(make, val, tiler, target_recall, lo=1e-2, hi=1e4)
    return {**policy, "walkin_beta": beta}, val_scores


def motion_policy(net, val: list[TrackSequence], tiler, target_recall: float, guard: dict) -> tuple[dict, dict]:
    """No probing: the motion guard (``guard``) watches the skipped tiles. For each base (the net's
    mask, or the net's or Comp-1's) the keep threshold is the highest reaching ``target_recall`` in
    closed-loop rollouts of the validation scenes with the guard on (:func:`closed_loop_threshold`);
    of the two, the more accurate one that reaches it (else the one with the higher recall).
    Returns (policy, its validation closed-loop scores)."""
    best = None
    for base in ("net", "net_or_comp1"):
        def make(thr: float, base: str = base) -> STFilter:
            flt = STFilter(net=net, guard=guard)
            flt.set_policy(threshold=thr, probe_threshold=1.0, probe_every=0, base=base)
            return flt

        thr, r = closed_loop_threshold(make, val, tiler, target_recall)
        log.info("motion policy %s: threshold %.4g, val accuracy %.4f recall %.4f", base, thr, r["accuracy"], r["recall"])
        reached = r["recall"] >= target_recall
        key = (reached, r["accuracy"] if reached else r["recall"])
        if best is None or key > best[0]:
            best = (key, {"threshold": thr, "probe_threshold": 1.0, "probe_every": 0, "base": base}, r)
    return best[1], best[2]


def choose_policy(net, val: list[TrackSequence], val_samples, tiler, target_recall: float,
                  probe_every: int, probe: str = "global", train: list[TrackSequence] | None = None,
                  walkin: dict | None = None, threshold: float | None = None,
                  guard: dict | None = None) -> tuple[dict, dict]:
    """The keep policy, on validation data only: the keep threshold is the net's best-F1 threshold on
    the open-loop validation samples (what it believes; or ``threshold`` as given); then
    ``probe="walkin"``: :func:`walkin_policy`; ``probe="global"``: the probe threshold is the highest
    that reaches ``target_recall`` in closed-loop rollouts of the validation sequences;
    ``probe="motion"``: :func:`motion_policy` with the motion ``guard`` (chooses its own threshold).
    Returns (policy, its validation closed-loop scores)."""
    from hode.filter.lit import predict_samples

    if probe == "motion":
        check(bool(guard and guard.get("motion")), "task.probe=motion needs task.guard.motion > 0")
        return motion_policy(net, val, tiler, target_recall, guard)
    if threshold is None:
        threshold = best_f1_threshold(predict_samples(net, val_samples), val_samples.target)
    if probe == "walkin":
        check(bool(train), "probe=walkin needs the training sequences (the walk-in prior)")
        w = walkin or {}
        return walkin_policy(net, threshold, train, val, tiler, target_recall, float(w.get("strength", 100.0)),
                             bool(w.get("mirror", True)))
    check(probe == "global", f"task.probe must be 'walkin', 'global' or 'motion', got {probe!r}")
    make = lambda pt: STFilter(net=net, threshold=threshold, probe_threshold=min(pt, threshold),  # noqa: E731
                               probe_every=probe_every)
    if probe_every <= 0:
        return {"threshold": threshold, "probe_threshold": 1.0, "probe_every": 0}, \
            evaluate(make(1.0), val, tiler, closed=True)
    pt, val_scores = closed_loop_threshold(make, val, tiler, target_recall, lo=1e-5, hi=threshold)
    return {"threshold": threshold, "probe_threshold": min(pt, threshold), "probe_every": probe_every}, val_scores


def refit(cfg: DictConfig, splits: dict[str, list[TrackSequence]], path: str) -> dict:
    """``task.refit=PATH``: that checkpoint's net and keep threshold, no training; it must have been
    trained and validated on this run's train/val splits (the prior comes from the same scenes)."""
    from hode.filter.st import load_checkpoint

    net, policy, meta = load_checkpoint(path)
    for split in ("train", "val"):
        names = [s.name for s in splits[split]]
        check(list(meta.get(split, [])) == names, f"task.refit={path} was trained with {split} = {meta.get(split)}, "
                                                  f"this run's {split} split is {names}")
    return {"net": net, "threshold": float(policy["threshold"]), "meta": meta, "tiler": build(cfg.tiling),
            "epochs": meta.get("epochs"), "curves": None}


def main(cfg: DictConfig) -> dict:
    t = cfg.task
    out = run_dir()
    check(0.0 < float(t.target_recall) < 1.0, f"task.target_recall must be in (0, 1), got {t.target_recall!r}")
    splits = load_splits(cfg)
    r = refit(cfg, splits, str(t.refit)) if t.get("refit") else train(cfg, splits, out)
    net, tiler = r["net"], r["tiler"]
    walkin = {"strength": float(t.get("walkin_strength", 100.0)), "mirror": bool(t.get("walkin_mirror", True))}
    probe = str(t.get("probe", "global"))
    guard = OmegaConf.to_container(t.guard) if probe == "motion" and t.get("guard") else None
    policy, val = choose_policy(net, splits["val"], r.get("val_samples"), tiler, float(t.target_recall),
                                int(t.probe_every), probe, splits["train"], walkin, r.get("threshold"), guard)
    flt = STFilter(net=net, guard=guard)  # test figures of the filter as it will run (its guard included)
    flt.set_policy(**policy)
    test = {"open_loop": evaluate(flt, splits["test"], tiler, closed=False),
            "closed_loop": evaluate(flt, splits["test"], tiler, closed=True)}
    split = "time" if t.source == "video" else str(t.split)
    labels = getattr(splits["train"][0].source, "gt_kind", None) if t.source == "video" else None  # dataset | golden
    meta = {"source": str(t.source), "split": split, "labels": labels, "dataset": splits["train"][0].name.split("[")[0],
            "train": [s.name for s in splits["train"]], "val": [s.name for s in splits["val"]],
            "test_scenes": [s.name for s in splits["test"]], "tile": tiler.tile, "pad": list(tiler.pad),
            "frame": [splits["train"][0].width, splits["train"][0].height], "target_recall": float(t.target_recall),
            "probe_every": int(t.probe_every), "probe": probe, "guard": guard, "val_closed_loop": val,
            "test": test, "epochs": r["epochs"], "trained": r["meta"].get("trained") if "meta" in r else time.strftime("%Y-%m-%d")}
    if "meta" in r:  # a refit keeps what the training run recorded
        meta = {**r["meta"], **meta, "refit_from": Path(str(t.refit)).name, "refit": time.strftime("%Y-%m-%d")}
    ckpt = Path(t.ckpt_out) if t.ckpt_out else out / "filter_st.ckpt"
    save_checkpoint(ckpt, net, policy, meta)
    fig = plot_curves(r["curves"], out / "filter_loss.png") if r["curves"] else None
    results = {"task": "train_filter", "source": str(t.source), "split": split, "labels": labels,
               "fusion": net.arch["fusion"], "ckpt": str(ckpt), "ckpt_bytes": ckpt.stat().st_size, "policy": policy,
               "grid": list(tiler.grid(splits["train"][0].height, splits["train"][0].width)),
               "params": sum(p.numel() for p in net.parameters()), "pos_weight": r.get("pos_weight"),
               "samples": r.get("samples"), "epochs": r["epochs"], "monitor": str(t.monitor),
               "best_monitor": r.get("best_" + str(t.monitor)), "refit": str(t.refit) if "meta" in r else None,
               "data_s": r.get("data_s"), "train_s": r.get("train_s"), "val_closed_loop": val, "test": test,
               "curves": r["curves"], "loss_plot": str(fig) if fig else None}
    results = write_results(cfg, results)
    for lg in (r["trainer"].loggers if "trainer" in r else []):  # the W&B run gets the test figures and the Fig. 8 plot too
        if type(lg).__name__ == "WandbLogger":
            try:
                lg.experiment.summary.update({f"test_{k}_{m}": v for k, d in test.items() for m, v in d.items()
                                              if isinstance(v, (int, float))})
                if fig:
                    import wandb

                    lg.experiment.log({"filter_loss": wandb.Image(str(fig))})
                lg.experiment.finish()
            except Exception as e:
                log.warning("wandb summary failed: %s", str(e).splitlines()[0][:200])
    c = test["closed_loop"]
    print(f"flow filter: grid {results['grid'][0]}x{results['grid'][1]}, {results['params']} params, "
          f"{results['ckpt_bytes'] / 1024:.1f} KiB, threshold {policy['threshold']:.4g}, probe "
          + (f"per tile, walk-in beta {policy['walkin_beta']:.4g}" if policy.get("walkin_prior") is not None else
             f"none, motion guard {guard['motion']} px, base {policy['base']}" if probe == "motion" else
             f"{policy['probe_threshold']:.4g} every {policy['probe_every']}")
          + f" (val closed-loop accuracy {val['accuracy']:.4f} recall {val['recall']:.4f})")
    where = f"held-out stretch {', '.join(meta['test_scenes'])}" if t.source == "video" else "test"
    print(f"{where} closed-loop: accuracy {c['accuracy']:.4f} recall {c['recall']:.4f} precision {c['precision']:.4f} "
          f"skipped {c['skipped']:.3f}")
    print(f"checkpoint: {ckpt}  (use: python run.py filter=st filter.ckpt={ckpt})")
    return results
