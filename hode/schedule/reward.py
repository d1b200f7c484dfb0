"""The DQN's reward, paper eqs. (5)-(7): how much more balanced the nodes became.

    r_t = lambda1 * dP + lambda2 * dQ
    dP  = sum_i (p_i^t - avg p^t)^2 - sum_i (p_i^{t+1} - avg p^{t+1})^2          (progress)
    dQ  = sum_i (q_i^t/v_i^t - avg q^t)^2 - sum_i (q_i^{t+1}/v_i^{t+1} - avg q^{t+1})^2   (est. finish)

Both are sums of squared deviations (as printed in the paper, not divided by M). Nodes that are
down take no part: they neither progress nor have a finish time.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from hode.schedule.shares import known_speeds
from hode.types import NodeState

MIN_SPEED = 1e-3  # items/s; keeps q/v finite for a node whose speed was never measured


def progress_spread(nodes: Sequence[NodeState]) -> float:
    p = np.array([n.progress for n in nodes if n.up], np.float64)
    return float(((p - p.mean()) ** 2).sum()) if len(p) else 0.0


def finish_spread(nodes: Sequence[NodeState]) -> float:
    v = known_speeds(nodes)  # a node not yet measured counts at the others' mean, not at its placeholder
    eta = np.array([n.queue / max(v[i], MIN_SPEED) for i, n in enumerate(nodes) if n.up], np.float64)
    return float(((eta - eta.mean()) ** 2).sum()) if len(eta) else 0.0


def reward(before: Sequence[NodeState], after: Sequence[NodeState], lambda1: float, lambda2: float) -> float:
    """Reward of the action taken in state ``before`` that led to state ``after``."""
    d_p = progress_spread(before) - progress_spread(after)
    d_q = finish_spread(before) - finish_spread(after)
    return lambda1 * d_p + lambda2 * d_q
