"""``runner=sim``: a discrete-event simulator of the edge cluster on a virtual clock.

Every node is one FIFO server. An item's service time is its device profile's time for the item's
pixel count (:meth:`DeviceProfile.base_s`), times seeded noise, times the load-trace factor of its
frame; since a FIFO server's schedule is fixed once an item is queued, its start and finish are
computed at submission and ``poll`` only moves the clock to the next finish. With
``batched_inference`` a node's items of one submission run as one batch: every item after the first
skips the profile's fixed per-inference cost (``DeviceProfile.fixed_ms``). Detections are real:
replayed from the detection cache (:mod:`hode.detect.cache`), computed by the real detector on a
miss. The camera sees what it would see live: queue = items sent and not yet returned, speed =
moving average of 1 / service time of returned items; ``true_speed`` (for oracles) is the truth.

Failures and stragglers (:mod:`hode.cluster.failover`): a ``failure_trace`` takes nodes down over
frame ranges. When frame ``start`` is submitted the node dies: items it had not finished are lost
and re-dispatched (``failure_detect_s`` later) to the up node that would finish them first, and
the node reports ``up: false`` (schedulers skip it) until frame ``end``, when it passes its health
check again with an empty queue. With ``failover.hedge`` an item past its deadline gets a copy on
another node at that virtual time; the first copy to finish is the result, the other one still
occupies its node (as live) and is dropped.
"""
from __future__ import annotations

import heapq
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from hode.cluster.failover import (FailoverPolicy, FailureTrace, FaultLog, Slowness, Tracker, events_list,
                                   item_units, pick_node)
from hode.cluster.queues import NodeQueues
from hode.cluster.topology import Topology
from hode.config import ROOT
from hode.detect.cache import DetectionCache
from hode.errors import HodeError, check
from hode.profiles import LoadTrace
from hode.settings import settings_of
from hode.types import Completion, NodeState, WorkItem

SAVE_EVERY = 1000  # new cache entries between saves, so a crash in a long run loses little detector time




@dataclass
class SimSettings:
    """Every setting of the simulator, written once; conf/runner/sim.yaml's ``backend`` block mirrors it."""

    seed: int = 0  # service-time noise: same seed, same run
    load_trace: Sequence[dict] = ()  # [{node, start, end, factor}]: node slowed `factor` times on frames [start, end)
    cache_dir: str | None = None  # detection cache; None: <root>/.cache/detections
    camera_overhead: Any = "none"  # none | measured (the camera's wall time runs the clock) | seconds per frame
    speed_alpha: float = 0.3  # moving average of the measured node speed the camera sees
    profiles_dir: str | None = None  # device profiles from here instead of conf/device
    failure_trace: Sequence[dict] = ()  # [{node, start, end}]: node down while frames [start, end) are submitted
    failover: dict | FailoverPolicy | None = None  # re-dispatch and hedging (hode.cluster.failover)
    failure_detect_s: float = 0.0  # virtual s from a node's death to the re-dispatch of its items
    batched_inference: bool = False  # a node's tiles of one frame run as one batch (skips fixed_ms after the first)


class SimBackend:
    """The Backend protocol on a virtual clock (see the module doc and docs/edge-cluster.md)."""

    def __init__(self, topology: Topology, detector=None, dataset: dict | str | None = None,
                 settings: SimSettings | Mapping | None = None, **fields: Any) -> None:
        """``detector`` and ``dataset`` name the detection cache; ``settings`` (or its fields as keywords:
        conf/runner/sim.yaml's ``backend`` keys, as Hydra passes them) say how the cluster behaves."""
        c = self.settings = settings_of(SimSettings, settings, fields, "runner.backend")
        seed, load_trace, cache_dir, camera_overhead, speed_alpha = c.seed, c.load_trace, c.cache_dir, c.camera_overhead, c.speed_alpha
        profiles_dir, failure_trace, failover, failure_detect_s = c.profiles_dir, c.failure_trace, c.failover, c.failure_detect_s
        batched_inference = c.batched_inference
        check(isinstance(seed, int), f"runner.backend.seed must be an integer, got {seed!r}")
        check(0 < speed_alpha <= 1, f"runner.backend.speed_alpha must be in (0, 1], got {speed_alpha!r}")
        check(camera_overhead in ("none", "measured") or (isinstance(camera_overhead, (int, float))
                                                          and not isinstance(camera_overhead, bool) and camera_overhead >= 0),
              f"runner.backend.camera_overhead must be none, measured or seconds >= 0, got {camera_overhead!r}")
        self.topology, self.seed, self.camera_overhead = topology, seed, camera_overhead
        trace = load_trace if isinstance(load_trace, LoadTrace) else LoadTrace(events_list(load_trace, "runner.load_trace"))
        trace.check_nodes([n.name for n in topology])
        self.core = NodeQueues(topology, seed, trace, speed_alpha, profiles_dir, batched_inference)
        self.cache = DetectionCache(Path(cache_dir) if cache_dir else ROOT / ".cache" / "detections", dataset, detector)
        self._measured = camera_overhead == "measured"
        self._fixed = 0.0 if camera_overhead in ("none", "measured") else float(camera_overhead)
        self._t = 0.0
        self._wall = None  # wall time when the camera last got control back (measured overhead)
        self._next_frame = 0
        self._misses = [0] * len(topology)
        self._unsaved = 0
        self.failures = FailureTrace(events_list(failure_trace, "runner.failure_trace"))
        self.failures.check_nodes([n.name for n in topology])
        self.policy = FailoverPolicy.from_config({"hedge": False, **dict(failover or {})}
                                                 if not isinstance(failover, FailoverPolicy) else failover)
        check(isinstance(failure_detect_s, (int, float)) and failure_detect_s >= 0,
              f"runner.backend.failure_detect_s must be a number >= 0, got {failure_detect_s!r}")
        self.failure_detect_s = float(failure_detect_s)
        self.hedging = self.policy.enabled and self.policy.hedge
        # Item tracking costs a little per item: only when failures or hedges can happen.
        self.tracking = self.policy.enabled and (bool(self.failures.events) or self.hedging)
        self.tracker = Tracker(self.policy)
        self.faults = FaultLog()
        self.slowness = Slowness(len(topology))
        self._pending = [0.0] * len(topology)  # camera-side expected work outstanding per node, in tiles
        self._units: dict[tuple[int, int, int], float] = {}  # (frame, item, node) -> that copy's units
        self._deadlines: list[tuple[float, int, int]] = []  # (deadline, frame_id, item_id) heap (hedging)

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

    @property
    def clock(self) -> float:
        """The virtual clock as it stands (no measured camera time added): the replay path reads it
        before its frames and sets it after them, so a later ``submit`` starts where they ended."""
        return self._t

    @clock.setter
    def clock(self, t: float) -> None:
        check(t >= self._t, f"the simulator's clock runs forward only: {t} < {self._t}", HodeError)
        self._t = float(t)

    # ----- Backend protocol -------------------------------------------------------------------

    def start(self) -> None:
        for model in {n.model for n in self.topology}:
            self.cache.store(model)  # read the cache files now, not on the first frame
        self._leave()

    def states(self) -> list[NodeState]:
        self._enter()
        self._failures_at(self._next_frame)
        out = self._camera_states(self._next_frame)
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
        self._hedge_until(self._t)
        self._failures_at(frame_id)
        if any(self.core.down[a] for a in by_node):  # the scheduler chose a node that is down: redirect
            by_node, assignment = self._redirect(items, assignment)
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
        if self.tracking:
            self._track(frame_id, items, [int(a) for a in assignment], self._t)
        self.core.enqueue(frame_id, [it.item_id for it in items], [int(a) for a in assignment],
                          [it.pixels for it in items], self._t, factors, dets, sent)
        self._next_frame = max(self._next_frame, frame_id + 1)
        self._leave()

    def poll(self, timeout: float | None = None) -> list[Completion]:
        """Move the clock to the next finish (at most ``timeout`` ahead) and return what finished."""
        self._enter()
        while True:
            nxt = self.core.next_finish()
            if nxt is None:  # nothing in flight: nothing to wait for
                self._leave()
                return []
            hedge_at = self._deadlines[0][0] if self._deadlines else None
            if hedge_at is not None and hedge_at < nxt and (timeout is None or hedge_at <= self._t + timeout):
                self._t = max(self._t, hedge_at)  # a deadline comes first: hedge, then look again
                self._hedge_until(self._t)
                continue
            break
        if timeout is not None and nxt > self._t + timeout:
            self._t += timeout
            self._leave()
            return []
        self._t = max(self._t, nxt)
        popped = self.core.pop_until(self._t)
        if self.tracking:
            done = []
            for i, e in popped:
                key = (e[3], e[4])
                unit_s = self._expected_s(i)
                self.slowness.observe(i, e[0], (e[0] - e[1]) / (self._gone(e[3], e[4], i) * unit_s), unit_s)
                verdict = self.tracker.resolve(key, i, ok=True)
                if verdict == "duplicate":
                    self.faults.count("duplicates")
                elif verdict != "pending":
                    done.append(Completion(e[3], e[4], i, e[5], e[2], e[1], e[0]))
                    f = self.tracker.get(key) if verdict == "first" else None
                    for j in list(f.live) if f is not None else ():  # first result wins: unstarted copies leave
                        if self.core.cancel(j, key[0], key[1], self._t):
                            self.tracker.resolve(key, j, ok=False)
                            self._gone(key[0], key[1], j)
        else:
            done = [Completion(e[3], e[4], i, e[5], e[2], e[1], e[0]) for i, e in popped]
        self._leave()
        return done

    # ----- failures and hedges (only when a failure trace or hedging is configured) ---------------

    def _camera_states(self, frame: int) -> list[NodeState]:
        """What the camera sees; with failover tracking on, speeds are divided by the slowness
        evidence (missed deadlines, slow replies), as the live runner does."""
        out = self.core.states(frame)
        if self.tracking:
            for i, s in enumerate(out):
                s.speed /= self.slowness.factor(i, self._t, self._expected_s(i))
        return out

    def _expected_s(self, i: int) -> float:
        """Expected service of one item on node ``i`` for deadlines: the measured moving average, but
        never slower than its device profile's tile time (a node that slowed 10x gets no 10x grace)."""
        core = self.core
        return min(1.0 / core.speed[i], core.tile_s[i]) if core.speed[i] > 0 else core.tile_s[i]

    def _sent(self, frame_id: int, item: WorkItem, i: int) -> float:
        """Count a copy as outstanding on node ``i``; returns the node's work ahead, this item included."""
        u = item_units(item.pixels)
        self._units[(frame_id, item.item_id, i)] = u
        self._pending[i] += u
        return self._pending[i]

    def _gone(self, frame_id: int, item_id: int, i: int) -> float:
        """A copy left node ``i`` (finished, cancelled, lost); returns its units."""
        u = self._units.pop((frame_id, item_id, i), 1.0)
        self._pending[i] = max(self._pending[i] - u, 0.0)
        return u

    def _track(self, frame_id: int, items: Sequence[WorkItem], nodes: Sequence[int], t: float) -> None:
        p = self.policy
        for it, i in zip(items, nodes):
            deadline = p.deadline(t, self._sent(frame_id, it, i), self._expected_s(i))
            self.tracker.add(frame_id, it, i, t, deadline)
            if self.hedging:
                heapq.heappush(self._deadlines, (deadline, frame_id, it.item_id))

    def _send_copy(self, key: tuple[int, int], node: int, ready: float, kind: str) -> None:
        """One more copy of a tracked item on ``node``, reaching it at ``ready``."""
        f = self.tracker.get(key)
        it = f.item
        det = self.cache.detections(self.topology.nodes[node].model, [(key[0], it.window)], [it.crop])[0]
        deadline = self.policy.deadline(ready, self._sent(key[0], it, node), self._expected_s(node))
        self.tracker.copy_sent(key, node, deadline)
        if self.hedging:
            heapq.heappush(self._deadlines, (deadline, key[0], key[1]))
        self.core.enqueue(key[0], [key[1]], [node], [it.pixels], f.submitted, self.core.factors(key[0]), [det], ready)
        self.faults.count(kind)

    def _hedge_until(self, t: float) -> None:
        """Hedge every tracked item whose deadline is at or before ``t`` and that is still unfinished."""
        p = self.policy
        while self._deadlines and self._deadlines[0][0] <= t:
            when, frame_id, item_id = heapq.heappop(self._deadlines)
            f = self.tracker.get((frame_id, item_id))
            if f is None or f.done or f.deadline > when or len(f.live) >= p.max_copies or len(f.tried) >= p.max_attempts:
                continue  # finished, superseded by a later copy's deadline, or out of copies
            for i in f.live:  # missed a deadline: slower than the schedulers think
                self.slowness.observe(i, when, p.deadline_k, self._expected_s(i))
            node = pick_node(self._camera_states(self._next_frame), exclude=f.live | set(f.tried))
            if node is not None:
                self._send_copy(f.key, node, when, "hedged")

    def _failures_at(self, frame: int) -> None:
        """Apply the failure trace as of the submission of ``frame`` (at the current virtual time)."""
        if not self.failures.events:
            return
        core, t = self.core, self._t
        for i, nd in enumerate(self.topology.nodes):
            want = self.failures.down(nd.name, frame)
            if want and not core.down[i]:
                self._fail(i, t, frame)
            elif not want and core.down[i]:
                core.down[i] = False
                core.free[i] = core.last_finish[i] = max(core.free[i], t)
                self.faults.count("readmitted")
                self.faults.event(t, nd.name, "up", f"frame {frame}")

    def _fail(self, i: int, t: float, frame: int) -> None:
        core = self.core
        if not self.tracking:
            raise HodeError(f"failure trace: edge node '{self.topology.nodes[i].name}' fails at frame {frame} and "
                            "runner.failover.enabled is false (nothing would re-dispatch its items)")
        q = core.queues[i]
        lost = [e for e in q if e[0] > t]  # in service or waiting: gone with the node
        core.queues[i] = deque(e for e in q if e[0] <= t)
        core.outstanding[i] -= len(lost)
        core.free[i] = core.last_finish[i] = t
        core.down[i] = True
        name = self.topology.nodes[i].name
        self.faults.count("nodes_down")
        self.faults.event(t, name, "down", f"frame {frame}: {len(lost)} items lost")
        for e in lost:
            key = (e[3], e[4])
            self._gone(e[3], e[4], i)
            if self.tracker.resolve(key, i, ok=False) != "lost":
                continue
            f = self.tracker.get(key)
            node = pick_node(self._camera_states(frame), exclude=f.live | set(f.tried)) if f else None
            if node is None and f is not None:
                node = pick_node(self._camera_states(frame), exclude=f.live)
            if node is None:
                raise HodeError(f"failure trace: no edge node is up to take the items of '{name}' at frame {frame}")
            self._send_copy(key, node, t + self.failure_detect_s, "redispatched")

    def _redirect(self, items: Sequence[WorkItem], assignment: Sequence[int]):
        """Items assigned to a down node go to the best up node instead (counted as re-dispatched)."""
        core = self.core
        states = self._camera_states(self._next_frame)
        new = list(assignment)
        for k, a in enumerate(assignment):
            if core.down[int(a)]:
                node = pick_node(states, exclude={i for i, d in enumerate(core.down) if d})
                if node is None:
                    raise HodeError("failure trace: no edge node is up to take the frame's items")
                new[k] = node
                states[node].queue += 1
                self.faults.count("redispatched")
        by_node: dict[int, list[int]] = {}
        for k, node in enumerate(new):
            by_node.setdefault(int(node), []).append(k)
        return by_node, new

    def stats(self) -> list[dict]:
        c = self.core
        return [{"name": nd.name, "model": nd.model, "device": nd.device, "items": c.items[i], "busy_s": c.busy[i],
                 "cache_misses": self._misses[i]} for i, nd in enumerate(self.topology)]

    def describe(self) -> dict:
        """How this run's times and detections were made (results.json ``runner``)."""
        return {"kind": "sim", "clock": "virtual", "seed": self.seed, "camera_overhead": self.camera_overhead,
                "load_trace": list(self.core.trace.events), "failure_trace": list(self.failures.events),
                "failover": {**{k: getattr(self.policy, k) for k in self.policy.__dataclass_fields__},
                             "failure_detect_s": self.failure_detect_s, **self.faults.summary()},
                "profiles": {nd.name: p.name for nd, p in zip(self.topology, self.core.profiles)},
                "cache": {"dir": str(self.cache.root), "hits": self.cache.hits, "misses": self.cache.misses,
                          "files": sorted(st.path.name for st in self.cache.stores())}}

    def close(self) -> None:
        self.cache.save()
