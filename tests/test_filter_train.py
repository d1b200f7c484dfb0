"""Filter training through the real Lightning loop, on small synthetic and real (TUD) tracks."""
from __future__ import annotations

import json

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from hode.config import build
from hode.data.synthetic import SyntheticCrowd
from hode.filter.lit import FilterDataModule, LitFlowFilter, predict_samples
from hode.filter.st import STFilter, load_checkpoint
from hode.filter.tracks import from_source, split_blocks
from hode.tiling import Tiler

from support.config import compose_config

SMALL = ["dataset.width=1024", "dataset.height=768", "tiling.tile=256"]


def small_seqs(seeds, frames=40):
    return [from_source(SyntheticCrowd(width=1024, height=768, frames=frames, seed=s)) for s in seeds]


def test_synthetic_gt_fast_path_matches_rendered_frames():
    src = SyntheticCrowd(width=640, height=480, frames=3, seed=5)
    for frame, gt in zip(src, src.gt_frames()):
        assert np.array_equal(frame.gt.boxes, gt.boxes) and np.array_equal(frame.gt.ignore, gt.ignore)


@pytest.mark.slow
def test_a_few_lightning_steps_lower_the_loss(tmp_path):
    torch.manual_seed(0)
    tiler = Tiler(tile=256, pad=(48, 24))
    train, val = small_seqs([11, 12], 30), small_seqs([13], 12)
    dm = FilterDataModule(train, val, [], tiler, batch_size=64)
    dm.setup()
    module = LitFlowFilter(dict(rows=3, cols=4, channels=8, units=1), lr=1e-2)
    data = dm.data["train"]

    def loss() -> float:
        with torch.no_grad():
            logits = module(torch.from_numpy(data.counts), torch.from_numpy(data.memory))
            return float(module._loss(logits, torch.from_numpy(data.target)))

    before = loss()
    trainer = pl.Trainer(max_steps=12, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                         default_root_dir=str(tmp_path))
    trainer.fit(module, datamodule=dm)
    module.eval()
    assert trainer.global_step == 12
    assert loss() < 0.8 * before
    p = predict_samples(module.net, dm.data["val"])
    assert p.shape == dm.data["val"].target.shape and 0 <= p.min() and p.max() <= 1


def test_train_filter_task_writes_a_checkpoint_curves_and_results(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = compose_config(["task=train_filter", *SMALL, "task.frames=40", "task.seeds.train=[21,22,23]",
                          "task.seeds.val=[24]", "task.seeds.test=[25]", "task.epochs=3", "task.batch=64",
                          "task.model.channels=4", "task.model.units=1", "task.dagger_every=1",
                          "task.dagger_rounds=1", "task.probe_every=5", "task.probe=global"])
    from hode.tasks.train_filter import main

    r = main(cfg)
    ckpt = tmp_path / "filter_st.ckpt"
    net, policy, meta = load_checkpoint(ckpt)
    assert net.grid == (3, 4) and policy["probe_every"] == 5
    assert meta["train"] == [f"synthetic-1024x768-s{s}" for s in (21, 22, 23)] and meta["tile"] == 256
    saved = json.loads((tmp_path / "results.json").read_text())
    for loop in ("open_loop", "closed_loop"):
        assert set(saved["test"][loop]) >= {"accuracy", "precision", "recall", "f1", "skipped", "latency_ms"}
    curves = saved["curves"]
    assert len(curves["epoch"]) == 3 and all(v is not None for v in curves["train_loss"] + curves["val_loss"])
    assert (tmp_path / "lightning" / "metrics.csv").is_file() and (tmp_path / "filter_loss.png").is_file()
    assert r["samples"]["train"] > 2 * 3 * 30  # open loop + Comp-1 + one DAgger round


def test_mot_tracks_train_by_time_blocks():
    cfg = compose_config(["task=train_filter", "task.source=mot", "task.split=time", "tiling.tile=160"])
    from hode.tasks.train_filter import load_splits

    splits = load_splits(cfg)
    assert [s.name for s in splits["train"]] == ["TUD-Campus[0:43]", "TUD-Stadtmitte[0:107]"]
    assert [len(s) for s in splits["test"]] == [14, 36]
    counts = splits["train"][1].counts(160)
    assert counts.shape == (107, 3, 4) and counts.sum() > 300  # real people, several per frame
    src = build(compose_config(["dataset=mot"], small=False).dataset)  # the same tracks via dataset=mot
    assert [len(b) for b in split_blocks(from_source(src))] == [107, 36, 36]


def test_in_memory_filter_runs_closed_loop_on_real_tracks():
    cfg = compose_config(["task=train_filter", "task.source=mot", "task.split=time", "tiling.tile=160"])
    from hode.filter.evaluate import evaluate
    from hode.filter.net import STNet
    from hode.tasks.train_filter import load_splits

    test = load_splits(cfg)["test"]
    f = STFilter(net=STNet(3, 4, channels=4, units=1, fusion="shared"), threshold=0.5)
    r = evaluate(f, test, build(cfg.tiling), closed=True)
    assert r["frames"] == sum(len(s) - 5 for s in test) and 0 <= r["recall"] <= 1
