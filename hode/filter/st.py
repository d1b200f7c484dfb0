"""``filter=st``: the trained spatio-temporal flow filter, and its checkpoint file.

The keep rule for a tile with predicted occupancy probability ``p``:

- keep it when ``p >= threshold`` (the net believes someone is there);
- *probe* it when it has not been detected for ``probe_every`` frames and ``p >= probe_threshold``
  (the net cannot rule a person out): in the closed loop a skipped tile reports zero whether or
  not someone walked in, so a tile near a walkway is looked at again now and then, while tiles
  the net knows stay empty (sky, water) never are. ``probe_every=0`` turns probing off.
- or, when the checkpoint holds a per-tile *walk-in prior* (``walkin_prior``, walk-ins per empty
  frame on the training scenes), probe each tile at its own period ``sqrt(2 / (walkin_beta * rate))``
  with ``rate`` updated online from the filter's own detections (hode/filter/walkin.py): busy
  entrances often, the sky almost never. This replaces the global probe rule above.

A checkpoint is a small ``torch.save`` dict (kilobytes, loaded with ``weights_only=True``)::

    {"format": "hode-flow-filter", "version": 1, "arch": {...STNet kwargs}, "state_dict": {...},
     "policy": {"threshold", "probe_threshold", "probe_every", "walkin_prior", "walkin_beta",
                "walkin_strength"}, "meta": {...training, validation}}

The policy is chosen on validation data when the net is trained (task=train_filter), so the
filter needs no tuning at run time; the config can override each value.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from hode.checkpoints import read_tagged
from hode.errors import WeightsError, check
from hode.filter.guard import GuardedFilter
from hode.filter.memory import TileMemory
from hode.filter.net import STNet
from hode.filter.walkin import WalkInProber
from hode.threads import one_thread

log = logging.getLogger(__name__)

FORMAT = "hode-flow-filter"
VERSION = 1
DEFAULT_POLICY = {"threshold": 0.5, "probe_threshold": 1.0, "probe_every": 0,
                  "walkin_prior": None, "walkin_beta": None, "walkin_strength": None, "base": "net"}
BASES = ("net", "comp1", "net_or_comp1")  # where the keep mask comes from before probing


def save_checkpoint(path: str | Path, net: STNet, policy: dict, meta: dict | None = None) -> Path:
    """Write the net (on CPU), its keep policy and metadata to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
    policy = {**DEFAULT_POLICY, **{k: v for k, v in policy.items() if k in DEFAULT_POLICY}}
    walkin = policy["walkin_prior"] is not None
    torch.save({"format": FORMAT, "version": VERSION, "arch": dict(net.arch), "state_dict": state,
                "policy": {"threshold": float(policy["threshold"]), "probe_threshold": float(policy["probe_threshold"]),
                           "probe_every": int(policy["probe_every"]),
                           "walkin_prior": np.asarray(policy["walkin_prior"], float).tolist() if walkin else None,
                           "walkin_beta": float(policy["walkin_beta"]) if walkin else None,
                           "walkin_strength": float(policy["walkin_strength"]) if walkin else None,
                           "base": str(policy["base"])},
                "meta": meta or {}}, path)
    return path


def load_checkpoint(path: str | Path) -> tuple[STNet, dict, dict]:
    """``(net in eval mode, policy, meta)``; a missing or foreign file raises WeightsError."""
    ckpt = read_tagged(path, FORMAT, VERSION, "flow-filter", "train one with `python run.py task=train_filter`")
    try:
        net = STNet(**ckpt["arch"])
        net.load_state_dict(ckpt["state_dict"])
        policy = {**DEFAULT_POLICY, **dict(ckpt.get("policy") or {})}
    except Exception as e:
        raise WeightsError(f"{path} does not match the flow-filter network: {str(e).splitlines()[0][:200]}") from None
    return net.eval(), policy, dict(ckpt.get("meta") or {})


def _logit(p: float) -> float:
    p = min(max(float(p), 1e-7), 1 - 1e-7)
    return float(np.log(p / (1 - p)))


class STFilter(GuardedFilter):
    """The trained trend/closeness net as a :class:`~hode.filter.base.FlowFilter`.

    Before the first result of a video comes back every tile is kept; while the history is shorter
    than the trend window its oldest frame stands in for the missing ones. ``threshold``,
    ``probe_threshold`` and ``probe_every`` override the checkpoint's validated policy;
    ``walkin_beta`` overrides the checkpoint's walk-in knob and ``walkin=False`` falls back to the
    global probe rule. ``base`` (in the policy; the argument overrides it) says where
    the mask that probing and guards add to comes from: the net (``net``), Comp-1 (``comp1``: kept
    iff detected at ``t-1``; with walk-in probing the net is not run; an ablation) or both
    (``net_or_comp1``). The filter is stateful (it remembers its own keep masks); an empty history
    means a new video and resets that state. Give ``net`` instead of ``ckpt`` to wrap a net in
    memory (training rollouts).
    """

    def __init__(self, ckpt: str | None = None, name: str = "st", threshold: float | None = None,
                 probe_threshold: float | None = None, probe_every: int | None = None,
                 walkin_beta: float | None = None, walkin: bool | None = None,
                 guard: dict | None = None, net: STNet | None = None, base: str | None = None,
                 transfer: bool = True) -> None:
        super().__init__(guard)
        check(isinstance(transfer, bool), f"filter.transfer must be true or false, got {transfer!r}")
        check(base is None or base in BASES, f"filter.base must be one of {', '.join(BASES)} or null, got {base!r}")
        check((ckpt is None) != (net is None), "filter=st needs exactly one of ckpt (a checkpoint path) or net")
        for key, v in (("threshold", threshold), ("probe_threshold", probe_threshold)):
            check(v is None or 0.0 < float(v) <= 1.0, f"filter.{key} must be a probability in (0, 1] or null, got {v!r}")
        check(probe_every is None or (isinstance(probe_every, int) and probe_every >= 0),
              f"filter.probe_every must be a non-negative integer (0 = no probing) or null, got {probe_every!r}")
        check(walkin_beta is None or float(walkin_beta) > 0, f"filter.walkin_beta must be > 0 or null, got {walkin_beta!r}")
        check(walkin is None or isinstance(walkin, bool), f"filter.walkin must be true, false or null, got {walkin!r}")
        self.name, self.ckpt = name, str(ckpt) if ckpt is not None else "<in memory>"
        if net is None:
            net, policy, self.meta = load_checkpoint(ckpt)
        else:
            policy, self.meta = dict(DEFAULT_POLICY), {}
        self.net = net.eval()
        self.trend = net.arch["trend"]
        self.memory = TileMemory()
        self._warned = False
        self.transfer = transfer
        self.transferred: str | None = None  # why the net is off on this run's grid (results.json)
        self._grid: tuple[int, int] | None = None
        if walkin is False:
            policy["walkin_prior"] = None
        elif walkin and policy.get("walkin_prior") is None:
            raise WeightsError(f"filter.walkin=true, but {self.ckpt} holds no walk-in prior (refit it with task=train_filter)")
        overrides = {"threshold": threshold, "probe_threshold": probe_threshold, "probe_every": probe_every,
                     "walkin_beta": walkin_beta, "base": base}
        self.set_policy(**{**policy, **{k: v for k, v in overrides.items() if v is not None}})

    def set_policy(self, threshold: float, probe_threshold: float, probe_every: int, walkin_prior=None,
                   walkin_beta: float | None = None, walkin_strength: float | None = None, base: str = "net") -> None:
        if base not in BASES:
            raise WeightsError(f"{self.ckpt}: unknown keep base {base!r} in the policy (one of {', '.join(BASES)})")
        self.threshold, self.probe_threshold, self.probe_every = float(threshold), float(probe_threshold), int(probe_every)
        self.base = base
        # compare logits, not probabilities: saves a sigmoid per frame
        self._z_keep, self._z_probe = _logit(threshold), _logit(probe_threshold)
        self.prober = None
        if walkin_prior is not None:
            try:
                self.prober = WalkInProber(np.asarray(walkin_prior, np.float64), float(walkin_beta), float(walkin_strength))
            except (TypeError, ValueError):
                raise WeightsError(f"{self.ckpt}: malformed walk-in policy (walkin_prior/beta/strength)") from None

    @property
    def policy(self) -> dict:
        p = {"threshold": self.threshold, "probe_threshold": self.probe_threshold, "probe_every": self.probe_every,
             "base": self.base}
        if self.prober is not None:
            p.update(walkin_prior=self.prober.prior.tolist(), walkin_beta=self.prober.beta,
                     walkin_strength=self.prober.strength)
        return p

    def check_grid(self, grid: tuple[int, int]) -> None:
        """Make the filter fit this run's tile grid. A net with per-cell fusion, or a walk-in prior,
        is bound to the grid it was trained on; on another grid (other footage, another size) the
        filter *transfers*: the net is not run (its base becomes Comp-1) and walk-in probing starts
        from a uniform prior at the trained mean rate, learning the new scene's entrances online. The
        motion guard is pixel-based and works on any grid. ``transfer=False`` refuses instead."""
        grid = tuple(int(g) for g in grid)
        if grid == self._grid:
            return
        self._grid = grid
        bound = self.net.grid
        prior_grid = self.prober.grid if self.prober is not None else None
        if (bound is None or grid == bound) and (prior_grid is None or grid == prior_grid):
            return
        trained = bound or prior_grid
        if not self.transfer:
            raise WeightsError(f"flow-filter checkpoint {self.ckpt} was trained for a {trained[0]}x{trained[1]} tile "
                               f"grid, but this run's grid is {grid[0]}x{grid[1]} (filter.transfer=true runs it "
                               "without the grid-bound parts; or train one for this grid with task=train_filter)")
        if bound is not None and grid != bound:
            self.base = "comp1"
        if self.prober is not None and grid != prior_grid:
            self.prober = WalkInProber(np.full(grid, float(np.mean(self.prober.prior))), self.prober.beta,
                                       self.prober.strength)
        probing = ("walk-in probing from a uniform prior" if self.prober is not None else
                   f"every tile probed after {self.probe_every} frames unseen" if self.probe_every else "no probing")
        self.transferred = (f"checkpoint trained on a {trained[0]}x{trained[1]} grid, run on {grid[0]}x{grid[1]}: "
                            f"base {self.base}, {probing}, guards as configured")
        log.warning("filter %s: %s", self.name, self.transferred)

    def reset(self) -> None:
        super().reset()
        self.memory.since_kept = None
        if self.prober is not None:
            self.prober.reset()

    def observe(self, counts: np.ndarray, keep: np.ndarray, boxes: np.ndarray | None = None) -> None:
        """A frame came back: what its keep mask found updates the per-tile memory and walk-in
        evidence. Pairs, not the history, because with K frames in flight the history's latest
        row is frame t-K's while the filter's latest mask is frame t-1's."""
        super().observe(counts, keep, boxes)
        self.memory.observed(counts)
        if self.prober is not None:
            self.prober.update(counts, keep)

    def logits(self, history: np.ndarray) -> np.ndarray:
        """Per-tile logits for the frame after ``history`` (at least ``trend`` frames)."""
        x = torch.from_numpy(np.ascontiguousarray(history[-self.trend:], np.float32))[None]
        m = torch.from_numpy(self.memory.features())[None] if self.net.arch["memory"] else None
        with torch.inference_mode(), one_thread():
            return self.net(x, m)[0].numpy()

    def predict(self, history: np.ndarray, truth: np.ndarray | None = None) -> np.ndarray:
        self.check_grid(history.shape[1:])
        if len(history) == 0:  # a new video, or no result back yet: every tile
            self.reset()
            self.memory.ensure(history.shape[1:])
            return np.ones(history.shape[1:], bool)
        self.memory.ensure(history.shape[1:])
        if len(history) < self.trend:
            if not self._warned and self.guard._step > 4 * self.trend:
                log.warning("filter %s pads its history: the net reads %d frames, the pipeline gives %d "
                            "(runner.history)", self.name, self.trend, len(history))
                self._warned = True
            # The first results of a video: the net reads the oldest repeated, a crowd that has not
            # moved, and Comp-1 and the motion guard still keep every tile with someone in it or moving
            # into it; keeping every tile until `trend` results were back costs fps and buys no recall
            # (docs/history/filters.md).
            history = np.concatenate([np.repeat(history[:1], self.trend - len(history), axis=0), history])
        # The net runs unless Comp-1's mask is probed per tile (the global probe rule reads the net's p).
        z = None if self.base == "comp1" and (self.prober is not None or self.transferred) else self.logits(history)
        keep = history[-1] > 0 if self.base == "comp1" else z >= self._z_keep
        if self.base == "net_or_comp1":
            keep |= history[-1] > 0
        if self.prober is not None:
            keep |= self.prober.due(self.memory.since_kept)
        elif self.probe_every:
            due = self.memory.since_kept >= self.probe_every
            keep |= due if z is None else due & (z >= self._z_probe)
        return keep

    def __call__(self, history: np.ndarray, truth: np.ndarray | None = None) -> np.ndarray:
        keep = super().__call__(history, truth)
        self.memory.decided(keep)  # guards included: what will really be detected
        return keep
