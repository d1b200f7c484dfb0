"""``scheduler=dqn``: the agent of :mod:`hode.schedule.dqn` as a :class:`~hode.schedule.base.Scheduler`.

Each decision: the agent's action -> shares per node -> tile counts (largest remainder) -> accuracy-aware
dispatch (the most crowded tiles to the nodes with the largest model); optionally it keeps learning
online during a run (Algorithm 1 as printed). :meth:`DQNScheduler.fit` finds a checkpoint for the
topology before anything starts.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from hode.errors import WeightsError, check
from hode.schedule.base import Scheduler, up_nodes
from hode.schedule.dispatch import get_dispatch
from hode.schedule.dqn import DQNAgent, DQNSettings, _nodes_of, features, read_checkpoint, up_vector
from hode.schedule.reward import reward
from hode.schedule.shares import StaleProbe, largest_remainder
from hode.settings import settings_of
from hode.types import NodeState, WorkItem

log = logging.getLogger(__name__)


class DQNScheduler(Scheduler):
    """DQN shares -> counts -> accuracy-aware dispatch. Nodes that are down are masked out.

    ``ckpt`` is loaded lazily on the first decision, when the node count is known; ``ckpt=null``
    starts from an untrained network (only sensible with ``online=true``). With ``online=true`` the
    scheduler keeps learning during the run (Algorithm 1 as printed): the transition of decision t
    completes at decision t+1, whose node states give the reward.
    """

    name = "dqn"

    def __init__(self, settings: DQNSettings | Mapping | None = None, name: str | None = None, **fields: Any) -> None:
        """``settings`` (or its fields as keywords: conf/scheduler/dqn.yaml's keys, as Hydra passes them)."""
        super().__init__(name)
        c = self.settings = settings_of(DQNSettings, settings, fields, "scheduler")
        check(c.fallback in (None, "salbs"), f"scheduler.fallback must be salbs or null, got {c.fallback!r}")
        self.ckpt, self.fallback = c.ckpt, c.fallback
        self.stand_in: Scheduler | None = None  # SALBS when no checkpoint fits the topology (see fit)
        self.probe = StaleProbe(c.probe_after)
        self.lambda1, self.lambda2 = float(c.lambda1), float(c.lambda2)
        check(self.lambda1 >= 0 and self.lambda2 >= 0, f"scheduler.lambda1/lambda2 must be >= 0, got {c.lambda1}, {c.lambda2}")
        self.dispatch = get_dispatch(c.dispatch)
        self.online, self.epsilon, self.learning_starts = bool(c.online), float(c.epsilon), c.learning_starts
        self.agent: DQNAgent | None = None
        self._prev: tuple[np.ndarray, int, list[NodeState]] | None = None
        self.losses: list[float] = []

    def fit(self, node_names: Sequence[str]) -> None:
        """Find the checkpoint for this topology before anything starts. A missing ``ckpt`` is replaced by
        a shipped one trained on as many nodes (its node names differ: a warning), else by
        ``fallback`` (SALBS, with a warning) or, with ``fallback=null``, refused in one line."""
        n = len(node_names)
        if n == 1 or not self.ckpt or self.agent is not None:
            return
        path = Path(self.ckpt)
        if path.is_file():
            trained = read_checkpoint(path)["nodes"]
            if trained == n:
                return
            why = f"{path} was trained for {trained} nodes, this topology has {n}"
        else:
            why = f"no DQN checkpoint {path}"
        same = [c for c in sorted(path.parent.glob("dqn_*.pt")) if c != path and _nodes_of(c) == n]
        if same:
            log.warning("%s; using %s (trained for %d nodes: %s) instead", why, same[0], n,
                        ", ".join(read_checkpoint(same[0]).get("meta", {}).get("nodes") or []))
            self.ckpt = str(same[0])
            return
        hint = "train one with `python run.py task=train_scheduler topology=... runner=sim`"
        if self.fallback is None:
            raise WeightsError(f"{why} ({hint}, or set scheduler.fallback=salbs)")
        from hode.schedule.salbs import SpeedAware

        log.warning("%s and none shipped for %d nodes: scheduling with SALBS instead (%s)", why, n, hint)
        self.stand_in = SpeedAware(dispatch="accuracy_aware")

    def _agent_for(self, nodes: Sequence[NodeState]) -> DQNAgent:
        if self.agent is None:
            if self.ckpt:
                self.agent = DQNAgent.load(self.ckpt, nodes=len(nodes), settings=self.settings)
                trained = self.agent.meta.get("nodes")
                if trained and trained != [n.name for n in nodes]:
                    log.warning("DQN checkpoint %s was trained on nodes %s, running on %s", self.ckpt, trained,
                                [n.name for n in nodes])
            else:
                if not self.online:
                    log.warning("scheduler=dqn without a checkpoint and without online learning: untrained policy")
                self.agent = DQNAgent(len(nodes), self.settings)
        elif self.agent.nodes != len(nodes):
            raise WeightsError(f"the DQN scheduler was built for {self.agent.nodes} nodes, got {len(nodes)}")
        return self.agent

    def decide(self, nodes: Sequence[NodeState], n_items: int, epsilon: float = 0.0) -> np.ndarray:
        """Tile counts per node for ``n_items`` tiles (the DQN phase, without dispatch)."""
        up_nodes(nodes)  # a clear error when none is up
        if len(nodes) == 1:  # nothing to decide, no checkpoint needed
            return np.array([n_items])
        agent = self._agent_for(nodes)
        obs = features(nodes, n_items, agent.n_ref)
        a = agent.act(obs, up_vector(nodes), epsilon)
        if self.online:
            self._learn_online(obs, a, nodes)
        return self.probe(largest_remainder(agent.actions[a], n_items), nodes)

    def assign(self, work: Sequence[WorkItem], nodes: Sequence[NodeState]) -> list[int]:
        if self.stand_in is not None:
            return self.stand_in.assign(work, nodes)
        counts = self.decide(nodes, len(work), self.epsilon if self.online else 0.0)
        return self.dispatch(work, counts, nodes)

    def _learn_online(self, obs: np.ndarray, action: int, nodes: Sequence[NodeState]) -> None:
        agent = self.agent
        if self._prev is not None:
            p_obs, p_action, p_nodes = self._prev
            r = reward(p_nodes, nodes, self.lambda1, self.lambda2)
            agent.remember(p_obs, p_action, r, obs, up_vector(nodes))
            loss = agent.maybe_learn(self.learning_starts)
            if loss is not None:
                self.losses.append(loss)
        self._prev = (obs, action, [NodeState(**vars(n)) for n in nodes])
