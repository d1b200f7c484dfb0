"""The simulator's core (:class:`NodeQueues`): FIFO servers on a virtual clock and what the camera has
measured of them. Shared by ``runner=sim`` (:mod:`hode.cluster.sim`) and the DQN's training env
(:mod:`hode.schedule.env`)."""
from __future__ import annotations

import queue
from collections import deque
from itertools import repeat
from typing import Sequence

import numpy as np

from hode.cluster.topology import Topology
from hode.errors import check
from hode.profiles import TILE_PIXELS, LoadTrace, load_profile
from hode.types import NodeState

def drain(done: "queue.Queue", timeout: float | None) -> list:
    """Everything ``done`` holds, waiting up to ``timeout`` s for the first entry (None: for ever, 0:
    not at all). Entries are lists of completions; an exception put there by another thread (a
    run-ending failure) is raised here, on the camera's thread."""
    out: list = []
    try:
        got = done.get(timeout=timeout) if timeout is None or timeout > 0 else done.get_nowait()
    except queue.Empty:
        return out
    while True:
        if isinstance(got, BaseException):
            raise got
        out.extend(got)
        try:
            got = done.get_nowait()
        except queue.Empty:
            return out


NOISE_BLOCK = 4096  # standard normals drawn per node at a time (one Generator call, not one per item)


class NodeQueues:
    """The simulator's core: FIFO servers on a virtual clock, and what the camera has measured.

    Each queue entry is ``(finish, start, submitted, frame_id, item_id, payload, ready)``.
    """

    def __init__(self, topology: Topology, seed: int, trace: LoadTrace, speed_alpha: float,
                 profiles_dir: str | None = None, batched_inference: bool = False) -> None:
        check(isinstance(batched_inference, bool), f"runner.backend.batched_inference must be true or false, got {batched_inference!r}")
        self.nodes = topology.nodes
        n = len(self.nodes)
        self.profiles = [load_profile(nd.device, profiles_dir=profiles_dir) for nd in self.nodes]
        self.noise = [p.timing(nd.model).noise for p, nd in zip(self.profiles, self.nodes)]  # fails early, naming the profile
        self.tile_s = [p.base_s(nd.model, TILE_PIXELS) for p, nd in zip(self.profiles, self.nodes)]
        # batched inference: a node's items of one submission run as one batch, every item after the
        # first without the profile's fixed per-inference cost (nodes whose profile has one)
        self.batching = [batched_inference and p.fixed_ms(nd.model) > 0 for p, nd in zip(self.profiles, self.nodes)]
        self.trace, self.alpha = trace, speed_alpha
        self._traced = {e["node"] for e in trace.events}
        self.traced = [i for i, nd in enumerate(self.nodes) if nd.name in self._traced]
        self._rng = [np.random.default_rng([seed, i]) for i in range(n)]  # per node: a node's draws do not depend on the others'
        self._z: list[list[float]] = [[] for _ in range(n)]
        self._base: list[dict[int, float]] = [{} for _ in range(n)]  # pixels -> noise-free seconds
        self.queues: list[deque] = [deque() for _ in range(n)]
        self.free = [0.0] * n  # when each node is done with everything queued so far
        self.outstanding = [0] * n  # sent and not yet returned, as the camera counts
        self.speed = [0.0] * n  # measured items/s (moving average), 0 until the first return
        self.items = [0] * n
        self.busy = [0.0] * n
        self.down = [False] * n  # failure trace: the node is dead (or unreachable) now
        self.last_finish = [0.0] * n  # finish of the last item popped (the server's state before its queue)

    def factor(self, i: int, frame_id: int) -> float:
        name = self.nodes[i].name
        return self.trace.factor(name, frame_id) if name in self._traced else 1.0

    def factors(self, frame_id: int) -> list[float]:
        """Load-trace factor of every node for one frame."""
        out = [1.0] * len(self.nodes)
        for i in self.traced:
            out[i] = self.trace.factor(self.nodes[i].name, frame_id)
        return out

    def base(self, i: int, pixels: int) -> float:
        """Noise-free service time on node ``i``, cached per pixel count; ``-pixels`` is the same
        item riding in a batch behind another one."""
        b = self._base[i].get(pixels)
        if b is None:
            b = self._base[i][pixels] = self.profiles[i].base_s(self.nodes[i].model, abs(pixels), pixels < 0)
        return b

    def enqueue(self, frame_id: int, item_ids: Sequence[int], nodes: Sequence[int], pixels: Sequence[int],
                submitted: float, factors: Sequence[float], payloads: Sequence | None = None,
                ready: float | None = None) -> float:
        """Queue items sent at ``submitted`` (reaching their nodes at ``ready``), in order; each node
        serves its items first come, first served. Returns the last finish time (``ready`` if none).

        One tight loop for the pipeline's submit and the replay path alike: the per-item cost here
        is what bounds simulated frames per second.
        """
        ready = submitted if ready is None else ready
        free, queues, outstanding, noise, zs, bases = self.free, self.queues, self.outstanding, self.noise, self._z, self._base
        batching, in_batch = self.batching, [False] * len(free)
        last = ready
        for i, px, item_id, payload in zip(nodes, pixels, item_ids, payloads if payloads is not None else repeat(None)):
            if batching[i]:
                px_key = -px if in_batch[i] else px
                in_batch[i] = True
                s = bases[i].get(px_key) or self.base(i, px_key)
            else:
                s = bases[i].get(px) or self.base(i, px)
            if noise[i] > 0:
                z = zs[i]
                if not z:
                    z.extend(self._rng[i].standard_normal(NOISE_BLOCK).tolist()[::-1])
                m = 1.0 + noise[i] * z.pop()
                s *= m if m > 0.1 else 0.1
            s *= factors[i]
            start = free[i] if free[i] > ready else ready
            finish = free[i] = start + s
            queues[i].append((finish, start, submitted, frame_id, item_id, payload, ready))
            outstanding[i] += 1
            if finish > last:
                last = finish
        return last

    def next_finish(self) -> float | None:
        heads = [q[0][0] for q in self.queues if q]
        return min(heads) if heads else None

    def pop_until(self, t: float, collect: bool = True) -> list[tuple[int, tuple]]:
        """Every item finished by ``t`` as ``(node, entry)``, updating what the camera measured."""
        out = []
        a = self.alpha
        for i, q in enumerate(self.queues):
            if not q or q[0][0] > t:
                continue
            speed, busy, n = self.speed[i], self.busy[i], 0
            while q and q[0][0] <= t:
                e = q.popleft()
                self.last_finish[i] = e[0]
                service = e[0] - e[1]
                rate = 1.0 / service if service > 0 else 1e9
                speed = rate if not speed else (1 - a) * speed + a * rate
                busy += service
                n += 1
                if collect:
                    out.append((i, e))
            self.speed[i], self.busy[i] = speed, busy
            self.outstanding[i] -= n
            self.items[i] += n
        return out

    def cancel(self, i: int, frame_id: int, item_id: int, t: float) -> bool:
        """Take a not yet started item out of node ``i``'s queue (a hedged copy won elsewhere); the
        items behind it move up. False when it has started (it then runs to the end)."""
        q = self.queues[i]
        for k, e in enumerate(q):
            if e[3] == frame_id and e[4] == item_id:
                break
        else:
            return False
        if e[1] <= t:
            return False
        entries = list(q)
        prev = entries[k - 1][0] if k > 0 else self.last_finish[i]
        rest = []
        for e2 in entries[k + 1:]:
            start = max(prev, e2[6])
            prev = start + (e2[0] - e2[1])
            rest.append((prev, start, *e2[2:]))
        self.queues[i] = deque(entries[:k] + rest)
        self.free[i] = prev if rest else (entries[k - 1][0] if k > 0 else max(self.last_finish[i], t))
        self.outstanding[i] -= 1
        return True

    def states(self, next_frame: int) -> list[NodeState]:
        return [NodeState(nd.name, nd.model, nd.rank, queue=self.outstanding[i], speed=self.speed[i] or 1.0,
                          measured=self.speed[i] > 0,
                          up=not self.down[i], true_speed=1.0 / (self.tile_s[i] * self.factor(i, next_frame)))
                for i, nd in enumerate(self.nodes)]
