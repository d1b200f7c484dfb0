"""``runner=sim``: a discrete-event simulator of the edge cluster on a virtual clock.

Every node is one FIFO server. An item's service time is its device profile's time for the item's
pixel count (:meth:`DeviceProfile.base_s`), times seeded noise, times the load-trace factor of its
frame; since a FIFO server's schedule is fixed once an item is queued, its start and finish are
computed at submission and ``poll`` only moves the clock to the next finish. Detections are real:
replayed from the detection cache (:mod:`hode.detect.cache`), computed by the real detector on a
miss. The camera sees what it would see live: queue = items sent and not yet returned, speed =
moving average of 1 / service time of returned items; ``true_speed`` (for oracles) is the truth.
"""
from __future__ import annotations

import time
from collections import deque
from itertools import repeat
from pathlib import Path
from typing import Sequence

import numpy as np

from hode.cluster.profiles import TILE_PIXELS, LoadTrace, load_profile
from hode.cluster.topology import Topology
from hode.config import ROOT
from hode.detect.cache import DetectionCache
from hode.errors import check
from hode.types import Completion, NodeState, WorkItem

NOISE_BLOCK = 4096  # standard normals drawn per node at a time (one Generator call, not one per item)
SAVE_EVERY = 1000  # new cache entries between saves, so a crash in a long run loses little detector time


class NodeQueues:
    """The simulator's core: FIFO servers on a virtual clock, and what the camera has measured.

    Each queue entry is ``(finish, start, submitted, frame_id, item_id, payload)``.
    """

    def __init__(self, topology: Topology, seed: int, trace: LoadTrace, speed_alpha: float,
                 profiles_dir: str | None = None) -> None:
        self.nodes = topology.nodes
        n = len(self.nodes)
        self.profiles = [load_profile(nd.device, Path(profiles_dir) / f"{nd.device}.yaml" if profiles_dir else None)
                         for nd in self.nodes]
        self.noise = [p.timing(nd.model).noise for p, nd in zip(self.profiles, self.nodes)]  # fails early, naming the profile
        self.tile_s = [p.base_s(nd.model, TILE_PIXELS) for p, nd in zip(self.profiles, self.nodes)]
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
        b = self._base[i].get(pixels)
        if b is None:
            b = self._base[i][pixels] = self.profiles[i].base_s(self.nodes[i].model, pixels)
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
        last = ready
        for i, px, item_id, payload in zip(nodes, pixels, item_ids, payloads if payloads is not None else repeat(None)):
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
            queues[i].append((finish, start, submitted, frame_id, item_id, payload))
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

    def states(self, next_frame: int) -> list[NodeState]:
        return [NodeState(nd.name, nd.model, nd.rank, queue=self.outstanding[i], speed=self.speed[i] or 1.0,
                          up=True, true_speed=1.0 / (self.tile_s[i] * self.factor(i, next_frame)))
                for i, nd in enumerate(self.nodes)]


class SimBackend:
    """The Backend protocol on a virtual clock (see the module doc and the README)."""

    def __init__(self, topology: Topology, detector=None, dataset: dict | str | None = None, seed: int = 0,
                 load_trace: Sequence[dict] = (), cache_dir: str | None = None, camera_overhead="none",
                 speed_alpha: float = 0.3, profiles_dir: str | None = None) -> None:
        check(isinstance(seed, int), f"runner.backend.seed must be an integer, got {seed!r}")
        check(0 < speed_alpha <= 1, f"runner.backend.speed_alpha must be in (0, 1], got {speed_alpha!r}")
        check(camera_overhead in ("none", "measured") or (isinstance(camera_overhead, (int, float))
                                                          and not isinstance(camera_overhead, bool) and camera_overhead >= 0),
              f"runner.backend.camera_overhead must be none, measured or seconds >= 0, got {camera_overhead!r}")
        self.topology, self.seed, self.camera_overhead = topology, seed, camera_overhead
        trace = load_trace if isinstance(load_trace, LoadTrace) else LoadTrace(list(load_trace or []))
        trace.check_nodes([n.name for n in topology])
        self.core = NodeQueues(topology, seed, trace, speed_alpha, profiles_dir)
        self.cache = DetectionCache(Path(cache_dir) if cache_dir else ROOT / ".cache" / "detections", dataset, detector)
        self._measured = camera_overhead == "measured"
        self._fixed = 0.0 if camera_overhead in ("none", "measured") else float(camera_overhead)
        self._t = 0.0
        self._wall = None  # wall time when the camera last got control back (measured overhead)
        self._next_frame = 0
        self._misses = [0] * len(topology)
        self._unsaved = 0

    # ----- the clock --------------------------------------------------------------------------

    def _enter(self) -> None:
        """With ``camera_overhead: measured``, the camera's wall time since our last return runs the clock."""
        if self._measured and self._wall is not None:
            self._t += time.perf_counter() - self._wall

    def _leave(self) -> None:
        if self._measured:
            self._wall = time.perf_counter()

    def now(self) -> float:
        self._enter()
        self._leave()
        return self._t

    # ----- Backend protocol -------------------------------------------------------------------

    def start(self) -> None:
        for model in {n.model for n in self.topology}:
            self.cache.store(model)  # read the cache files now, not on the first frame
        self._leave()

    def states(self) -> list[NodeState]:
        self._enter()
        out = self.core.states(self._next_frame)
        self._leave()
        return out

    def submit(self, frame_id: int, items: Sequence[WorkItem], assignment: Sequence[int]) -> None:
        self._enter()
        n = len(self.topology)
        check(len(assignment) == len(items), f"assignment has {len(assignment)} nodes for {len(items)} items")
        by_node: dict[int, list[int]] = {}
        for k, node in enumerate(assignment):
            check(isinstance(node, (int, np.integer)) and 0 <= node < n, f"assignment names node {node!r} of {n}")
            by_node.setdefault(int(node), []).append(k)
        dets: list = [None] * len(items)
        for node, ks in by_node.items():  # replayed, or computed now by the real detector on a miss
            before = self.cache.misses
            found = self.cache.detections(self.topology.nodes[node].model, [(frame_id, items[k].window) for k in ks],
                                          [items[k].crop for k in ks])
            self._misses[node] += self.cache.misses - before
            self._unsaved += self.cache.misses - before
            for k, d in zip(ks, found):
                dets[k] = d
        if self._unsaved >= SAVE_EVERY:
            self.cache.save()
            self._unsaved = 0
        sent = self._t + self._fixed  # fixed camera overhead: the items leave that much later
        factors = self.core.factors(frame_id)
        self.core.enqueue(frame_id, [it.item_id for it in items], [int(a) for a in assignment],
                          [it.pixels for it in items], self._t, factors, dets, sent)
        self._next_frame = max(self._next_frame, frame_id + 1)
        self._leave()

    def poll(self, timeout: float | None = None) -> list[Completion]:
        """Move the clock to the next finish (at most ``timeout`` ahead) and return what finished."""
        self._enter()
        nxt = self.core.next_finish()
        if nxt is None:  # nothing in flight: nothing to wait for
            self._leave()
            return []
        if timeout is not None and nxt > self._t + timeout:
            self._t += timeout
            self._leave()
            return []
        self._t = max(self._t, nxt)
        done = [Completion(e[3], e[4], i, e[5], e[2], e[1], e[0]) for i, e in self.core.pop_until(self._t)]
        self._leave()
        return done

    def stats(self) -> list[dict]:
        c = self.core
        return [{"name": nd.name, "model": nd.model, "device": nd.device, "items": c.items[i], "busy_s": c.busy[i],
                 "cache_misses": self._misses[i]} for i, nd in enumerate(self.topology)]

    def describe(self) -> dict:
        """How this run's times and detections were made (results.json ``runner``)."""
        return {"kind": "sim", "clock": "virtual", "seed": self.seed, "camera_overhead": self.camera_overhead,
                "load_trace": list(self.core.trace.events),
                "profiles": {nd.name: p.name for nd, p in zip(self.topology, self.core.profiles)},
                "cache": {"dir": str(self.cache.root), "hits": self.cache.hits, "misses": self.cache.misses,
                          "files": sorted(st.path.name for st in self.cache.stores())}}

    def close(self) -> None:
        self.cache.save()
