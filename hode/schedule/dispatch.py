"""From per-node counts to which item goes where (the second phase of HODE's scheduler, Fig. 7).

``accuracy_aware``: the paper's dispatch. Tiles are sorted by the pedestrians the latest result saw
in them, most crowded first, and dealt out to the nodes running the largest model first, each node
taking exactly as many as its count. Crowded tiles are where occlusion hurts a small model most.

``in_order``: the same counts, items dealt in their given order (no accuracy awareness), for
baselines that only balance load.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from hode.errors import HodeError
from hode.types import NodeState, WorkItem


def _check(work: Sequence[WorkItem], counts: Sequence[int], nodes: Sequence[NodeState]) -> np.ndarray:
    c = np.asarray(counts, np.int64)
    if len(c) != len(nodes) or c.sum() != len(work) or np.any(c < 0):
        raise HodeError(f"dispatch: counts {c.tolist()} do not cover {len(work)} items on {len(nodes)} nodes")
    if any(c[i] > 0 and not n.up for i, n in enumerate(nodes)):
        raise HodeError(f"dispatch: counts {c.tolist()} give work to a node that is down")
    return c


def accuracy_aware(work: Sequence[WorkItem], counts: Sequence[int], nodes: Sequence[NodeState]) -> list[int]:
    """Most crowded items to the highest-rank nodes, within ``counts`` (ties keep the given order)."""
    c = _check(work, counts, nodes)
    items = sorted(range(len(work)), key=lambda k: -work[k].count)  # stable: equal counts keep order
    # Larger model first; among equal models the faster node first, then the lower index.
    node_order = sorted(range(len(nodes)), key=lambda i: (-nodes[i].rank, -nodes[i].speed, i))
    out = [0] * len(work)
    pos = 0
    for i in node_order:
        for k in items[pos:pos + c[i]]:
            out[k] = i
        pos += c[i]
    return out


def in_order(work: Sequence[WorkItem], counts: Sequence[int], nodes: Sequence[NodeState]) -> list[int]:
    """The first ``counts[0]`` items to node 0, the next ``counts[1]`` to node 1, and so on."""
    c = _check(work, counts, nodes)
    return np.repeat(np.arange(len(nodes)), c).tolist()


DISPATCH = {"accuracy_aware": accuracy_aware, "in_order": in_order}


def get_dispatch(name: str):
    if name not in DISPATCH:
        from hode.errors import ConfigError

        raise ConfigError(f"unknown scheduler.dispatch '{name}' (available: {', '.join(DISPATCH)})")
    return DISPATCH[name]
