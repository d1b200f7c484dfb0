"""PyTorch Lightning pieces of filter training: the data module, the module, the DAgger callback."""
from __future__ import annotations

import copy
import logging

import numpy as np
import pytorch_lightning as pl
import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from hode.filter.baselines import CompFilter
from hode.filter.net import STNet
from hode.filter.samples import Samples, open_loop, rollout
from hode.filter.threshold import best_f1_threshold, scores_at
from hode.filter.tracks import TrackSequence
from hode.tiling import Tiler

log = logging.getLogger(__name__)


def _tensors(s: Samples) -> TensorDataset:
    return TensorDataset(torch.from_numpy(s.counts), torch.from_numpy(s.memory), torch.from_numpy(s.target))


class FilterDataModule(pl.LightningDataModule):
    """Count-matrix samples of train / val / test track sequences (disjoint scenes or time blocks).

    Validation and test hold open-loop samples (true histories: the paper's setting, comparable
    from epoch to epoch). Training adds the closed-loop samples of a Comp-1 rollout (histories with
    the blind spots a filter causes), and :meth:`add_rollouts` appends those of another policy,
    e.g. the net itself (DAgger).
    """

    def __init__(self, train: list[TrackSequence], val: list[TrackSequence], test: list[TrackSequence],
                 tiler: Tiler, trend: int = 5, batch_size: int = 256, closed_loop: bool = True) -> None:
        super().__init__()
        self.seqs = {"train": train, "val": val, "test": test}
        self.tiler, self.trend, self.batch_size, self.closed_loop = tiler, trend, batch_size, closed_loop
        self.data: dict[str, Samples] = {}

    def _samples(self, split: str) -> Samples:
        seqs = self.seqs[split]
        parts = [open_loop(seqs, self.tiler, self.trend)]
        if self.closed_loop and split == "train":
            parts.append(rollout(CompFilter(1), seqs, self.tiler, self.trend, closed=True))
        return Samples.concat(parts)

    def setup(self, stage: str | None = None) -> None:
        for split, seqs in self.seqs.items():
            if split not in self.data and seqs:
                self.data[split] = self._samples(split)

    def add_rollouts(self, policy) -> int:
        new = rollout(policy, self.seqs["train"], self.tiler, self.trend, closed=True)
        self.data["train"] = Samples.concat([self.data["train"], new])
        return len(new)

    def pos_fraction(self) -> float:
        self.setup()
        return float(self.data["train"].target.mean())

    def train_dataloader(self) -> DataLoader:
        return DataLoader(_tensors(self.data["train"]), batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(_tensors(self.data["val"]), batch_size=4096)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(_tensors(self.data["test"]), batch_size=4096)


class LitFlowFilter(pl.LightningModule):
    """Trains :class:`STNet` with class-weighted (optionally focal) binary cross-entropy.

    Validation logs the loss and, at the threshold with the best F1 on the validation samples,
    recall, precision, F1 and the fraction of tiles skipped.
    """

    def __init__(self, arch: dict, lr: float = 3e-3, weight_decay: float = 1e-4, pos_weight: float = 1.0,
                 focal_gamma: float = 0.0, flip: bool = True) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = STNet(**arch)
        self.threshold = 0.5
        self._val: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, counts: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        return self.net(counts, memory if self.net.arch["memory"] else None)

    def _loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        pw = torch.tensor(self.hparams.pos_weight, device=logits.device)
        bce = F.binary_cross_entropy_with_logits(logits, target, pos_weight=pw, reduction="none")
        if self.hparams.focal_gamma:
            p = torch.sigmoid(logits)
            p_true = torch.where(target > 0, p, 1 - p)
            bce = bce * (1 - p_true) ** self.hparams.focal_gamma
        return bce.mean()

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        counts, memory, target = batch
        if self.hparams.flip:
            # mirror scenes left-right: people walk both ways (never flip up-down: perspective)
            flip = torch.rand(len(target), device=target.device) < 0.5
            counts = torch.where(flip[:, None, None, None], counts.flip(-1), counts)
            memory = torch.where(flip[:, None, None, None], memory.flip(-1), memory)
            target = torch.where(flip[:, None, None], target.flip(-1), target)
        loss = self._loss(self(counts, memory), target)
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(target))
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        counts, memory, target = batch
        logits = self(counts, memory)
        self.log("val_loss", self._loss(logits, target), on_epoch=True, prog_bar=True, batch_size=len(target))
        self._val.append((torch.sigmoid(logits).detach().cpu(), target.detach().cpu()))

    def on_validation_epoch_end(self) -> None:
        if not self._val:
            return
        probs = torch.cat([p for p, _ in self._val]).numpy().ravel()
        target = torch.cat([t for _, t in self._val]).numpy().ravel()
        self._val.clear()
        self.threshold = best_f1_threshold(probs, target)
        s = scores_at(probs, target, self.threshold)
        self.log_dict({"val_recall": s["recall"], "val_precision": s["precision"], "val_f1": s["f1"],
                       "val_skipped": s["skipped"], "val_threshold": self.threshold}, prog_bar=False)

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)


def predict_samples(net: STNet, s: Samples) -> np.ndarray:
    """Occupancy probabilities of the net for every sample (batched, no grad)."""
    net = net.eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(s), 4096):
            c, m = torch.from_numpy(s.counts[i:i + 4096]), torch.from_numpy(s.memory[i:i + 4096])
            out.append(torch.sigmoid(net(c, m if net.arch["memory"] else None)).numpy())
    return np.concatenate(out)


class DaggerRollouts(pl.Callback):
    """Every ``every`` epochs, roll the current net out closed-loop on the training sequences and
    add what it saw to the training data (the trainer reloads its dataloader each epoch). The
    rollout policy keeps at the current validation threshold and probes tiles undetected for
    ``probe_every`` frames at a tenth of it."""

    def __init__(self, every: int = 2, max_rounds: int = 4, probe_every: int = 0) -> None:
        self.every, self.max_rounds, self.rounds, self.probe_every = every, max_rounds, 0, probe_every

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: LitFlowFilter) -> None:
        if self.every <= 0 or self.rounds >= self.max_rounds or (trainer.current_epoch + 1) % self.every:
            return
        from hode.filter.st import STFilter

        net = copy.deepcopy(pl_module.net).cpu().eval()
        th = float(np.clip(pl_module.threshold, 1e-6, 1 - 1e-6))
        policy = STFilter(net=net, threshold=th, probe_threshold=th / 10, probe_every=self.probe_every)
        added = trainer.datamodule.add_rollouts(policy)
        self.rounds += 1
        log.info("DAgger round %d: %d closed-loop samples of the current net added", self.rounds, added)
