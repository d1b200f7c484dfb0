"""Failed and slow nodes: per-item deadlines, hedged copies, re-dispatch; the first result wins.

Shared by the live runner (wall clock, callbacks on gRPC threads) and the simulator (virtual
clock). Every item sent to a node gets a deadline from what the camera expects of that node:

    deadline = sent + deadline_k x work ahead x expected tile time + deadline_slack_s

where the work ahead is what the node has been sent and has not returned, this item included, in
tile units (:func:`item_units`: a whole frame counts as many tiles), and the expected tile time is
1 / the node's measured speed (a moving average), but never slower than what the node was
expected to manage at start-up (its device profile). An
item past its deadline is *hedged*: a copy goes to the up node that would finish it first, and
whichever copy comes back first is the result; later copies are dropped (counted as duplicates).
An item whose every copy was lost (its node died, was marked down, or refused it) is
*re-dispatched* the same way. The pipeline above sees each item complete exactly once.
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from typing import Any, Sequence

from hode.errors import check
from hode.profiles import TILE_PIXELS
from hode.types import NodeState, WorkItem

Key = tuple[int, int]  # (frame_id, item_id)


def _num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


@dataclass
class FailoverPolicy:
    """``runner.failover``: how the runners react to nodes that fail or straggle."""

    enabled: bool = True  # false: a failed node fails the run (the old behaviour)
    hedge: bool = True  # re-send overdue items to another node
    deadline_k: float = 3.0  # x the expected service time of everything ahead in the node's queue
    deadline_slack_s: float = 0.5  # added to every deadline (backend clock seconds)
    max_copies: int = 2  # copies of one item in flight at once (the original and one hedge)
    max_attempts: int = 4  # copies ever sent for one item; beyond: the run fails naming the item

    def __post_init__(self) -> None:
        check(isinstance(self.enabled, bool) and isinstance(self.hedge, bool),
              "runner.failover.enabled and .hedge must be true or false")
        check(_num(self.deadline_k) and self.deadline_k >= 1,
              f"runner.failover.deadline_k must be a number >= 1, got {self.deadline_k!r}")
        check(_num(self.deadline_slack_s) and self.deadline_slack_s >= 0,
              f"runner.failover.deadline_slack_s must be a number >= 0, got {self.deadline_slack_s!r}")
        check(isinstance(self.max_copies, int) and not isinstance(self.max_copies, bool) and self.max_copies >= 1,
              f"runner.failover.max_copies must be an integer >= 1, got {self.max_copies!r}")
        check(isinstance(self.max_attempts, int) and not isinstance(self.max_attempts, bool) and self.max_attempts >= 1,
              f"runner.failover.max_attempts must be an integer >= 1, got {self.max_attempts!r}")

    @classmethod
    def from_config(cls, cfg: Any) -> "FailoverPolicy":
        if isinstance(cfg, FailoverPolicy):
            return cfg
        cfg = dict(cfg or {})
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(cfg) - known)
        check(not unknown, f"runner.failover: unknown key(s) {unknown} (known: {', '.join(sorted(known))})")
        return cls(**cfg)

    def deadline(self, sent: float, units: float, unit_s: float) -> float:
        """``units``: the node's expected work up to and including this item, in tiles
        (:func:`item_units`); ``unit_s``: its expected time for one tile."""
        return sent + self.deadline_k * max(units, 0.25) * max(unit_s, 0.0) + self.deadline_slack_s


def item_units(pixels: int) -> float:
    """An item's expected cost in tiles (a padded 512 tile, 704x608, is 1): deadlines and slowness
    compare service times with this times the node's expected tile time. Linear in pixels, as
    YOLO's cost is, and at least a quarter tile (fixed per-call costs dominate small crops)."""
    return max(pixels / TILE_PIXELS, 0.25)


def by_node(items: Sequence[WorkItem], assignment: Sequence[int], nodes: int) -> dict[int, list[WorkItem]]:
    """A scheduler's assignment as each node's items, in order; a node index outside the topology is
    a configuration mistake (a scheduler built for another topology)."""
    from hode.errors import ConfigError

    out: dict[int, list[WorkItem]] = {}
    for item, node in zip(items, assignment):
        check(0 <= node < nodes, f"assignment names node {node}, topology has {nodes}", ConfigError)
        out.setdefault(node, []).append(item)
    return out


def expected_service_s(state: NodeState) -> float:
    return 1.0 / max(state.speed, 1e-6)


def pick_node(states: Sequence[NodeState], exclude: set[int] | frozenset = frozenset()) -> int | None:
    """The up node, not in ``exclude``, that would finish one more item first: ``(queue + 1) / speed``."""
    best, best_t = None, math.inf
    for i, s in enumerate(states):
        if not s.up or i in exclude:
            continue
        t = (s.queue + 1) * expected_service_s(s)
        if t < best_t:
            best, best_t = i, t
    return best


class Slowness:
    """Camera-side evidence that a node is slower than its measured speed says: a factor >= 1 per
    node that divides the speed the schedulers see. A missed deadline sets it to at least
    ``deadline_k``, a reply whose service took ``r`` times the expected time to at least ``r`` (when
    ``r >= threshold``); it decays back to 1 with a half-life of ``half_life`` expected service times.
    Without it a straggler whose late copies are cancelled never looks slow (its speed is measured
    only from the items it finishes) and keeps getting work that then has to be hedged."""

    def __init__(self, n: int, half_life: float = 10.0, threshold: float = 2.0) -> None:
        self.half_life, self.threshold = half_life, threshold
        self._f = [1.0] * n
        self._t = [0.0] * n

    def factor(self, i: int, now: float, expected_s: float) -> float:
        f = self._f[i]
        if f <= 1.0:
            return 1.0
        return 1.0 + (f - 1.0) * 0.5 ** (max(now - self._t[i], 0.0) / max(self.half_life * expected_s, 1e-9))

    def observe(self, i: int, now: float, ratio: float, expected_s: float) -> None:
        if ratio >= self.threshold:
            self._f[i] = max(self.factor(i, now, expected_s), ratio)
            self._t[i] = now


@dataclass
class Flight:
    """One item the camera is waiting for, and where its copies are."""

    frame_id: int
    item: WorkItem
    submitted: float
    deadline: float
    live: set[int] = field(default_factory=set)  # nodes holding a copy not yet answered
    tried: list[int] = field(default_factory=list)  # every node a copy went to, in order
    done: bool = False

    @property
    def key(self) -> Key:
        return (self.frame_id, self.item.item_id)


class Tracker:
    """The items in flight; thread-safe. ``resolve`` says what one copy's outcome means."""

    def __init__(self, policy: FailoverPolicy) -> None:
        self.policy = policy
        self._f: dict[Key, Flight] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return sum(not f.done for f in self._f.values())

    def add(self, frame_id: int, item: WorkItem, node: int, submitted: float, deadline: float) -> Flight:
        with self._lock:
            f = Flight(frame_id, item, submitted, deadline, {node}, [node])
            self._f[f.key] = f
            return f

    def copy_sent(self, key: Key, node: int, deadline: float) -> None:
        with self._lock:
            f = self._f[key]
            f.live.add(node)
            f.tried.append(node)
            f.deadline = deadline

    def get(self, key: Key) -> Flight | None:
        with self._lock:
            return self._f.get(key)

    def resolve(self, key: Key, node: int, ok: bool) -> str:
        """One copy on ``node`` answered (``ok``) or was lost. Returns ``first`` (deliver it),
        ``duplicate`` (drop it), ``lost`` (no copy left: re-dispatch), ``pending`` (others remain)
        or ``unknown`` (not tracked)."""
        with self._lock:
            f = self._f.get(key)
            if f is None:
                return "unknown"
            f.live.discard(node)
            if f.done:
                out = "duplicate" if ok else "pending"
            elif ok:
                f.done, out = True, "first"
            else:
                out = "pending" if f.live else "lost"
            if f.done and not f.live:
                del self._f[key]  # every copy accounted for
            return out

    def overdue(self, now: float) -> list[Flight]:
        """Unfinished items past their deadline that may get another copy."""
        p = self.policy
        with self._lock:
            return [f for f in self._f.values() if not f.done and f.deadline <= now
                    and len(f.live) < p.max_copies and len(f.tried) < p.max_attempts]

    def late_nodes(self, now: float) -> set[int]:
        """Nodes holding a copy of an unfinished item past its deadline (the live watchdog probes them)."""
        with self._lock:
            return {i for f in self._f.values() if not f.done and f.deadline <= now for i in f.live}

    def postpone(self, key: Key, deadline: float) -> None:
        with self._lock:
            f = self._f.get(key)
            if f is not None:
                f.deadline = deadline

    def on(self, node: int) -> list[Flight]:
        """Unfinished items with a copy on ``node``."""
        with self._lock:
            return [f for f in self._f.values() if not f.done and node in f.live]


@dataclass
class FaultLog:
    """What happened, for results.json (``runner.failover``) and the benchmark."""

    redispatched: int = 0  # items re-sent because every copy was lost
    hedged: int = 0  # items re-sent because they were overdue
    duplicates: int = 0  # late copies dropped
    nodes_down: int = 0  # up -> down transitions
    readmitted: int = 0  # down -> up transitions
    restarts: int = 0  # local workers restarted
    watchdog: int = 0  # nodes marked down because a Detect call or liveness probe got no reply in time
    events: list[dict] = field(default_factory=list)  # {t, node, event, detail}
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count(self, what: str, n: int = 1) -> None:
        with self._lock:
            setattr(self, what, getattr(self, what) + n)

    def event(self, t: float, node: str, event: str, detail: str = "") -> None:
        with self._lock:
            self.events.append({"t": round(t, 4), "node": node, "event": event, "detail": detail})

    def summary(self) -> dict:
        with self._lock:
            return {"redispatched": self.redispatched, "hedged": self.hedged, "duplicates": self.duplicates,
                    "nodes_down": self.nodes_down, "readmitted": self.readmitted, "restarts": self.restarts,
                    "watchdog": self.watchdog, "events": [dict(e) for e in self.events]}


def events_list(events: Any, where: str) -> list:
    """A trace option as a list of events (a string or a mapping is a mistake, not a list of characters)."""
    if events is None:
        return []
    check(isinstance(events, (list, tuple)), f"{where} must be a list of events, got {type(events).__name__} {events!r}")
    return list(events)


@dataclass
class FailureTrace:
    """``runner.failure_trace: [{node, start, end}]``: ``node`` is down while frames ``start <= f < end``
    are submitted (end exclusive), as if its worker died at frame ``start`` and passed its health
    check again at frame ``end``."""

    events: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        check(isinstance(self.events, (list, tuple)), f"failure_trace must be a list of events, got {self.events!r}")
        self.events = [dict(e) if isinstance(e, dict) else e for e in self.events]
        for i, e in enumerate(self.events):
            check(isinstance(e, dict) and {"node", "start", "end"} <= set(e) and set(e) <= {"node", "start", "end"},
                  f"failure trace event {i} needs exactly node, start, end: {e}")
            ok = (isinstance(e["start"], int) and isinstance(e["end"], int) and not isinstance(e["start"], bool)
                  and e["end"] > e["start"] >= 0)
            check(ok, f"failure trace event {i} is invalid (integer frames 0 <= start < end): {e}")

    def check_nodes(self, names: list[str]) -> None:
        for i, e in enumerate(self.events):
            check(e["node"] in names, f"failure trace event {i} names node '{e['node']}', not in the topology "
                                      f"(nodes: {', '.join(names)})")
        for name in names:
            spans = sorted((e["start"], e["end"]) for e in self.events if e["node"] == name)
            check(all(a[1] <= b[0] for a, b in zip(spans, spans[1:])), f"failure trace: overlapping events for '{name}'")

    def down(self, node: str, frame: int) -> bool:
        return any(e["node"] == node and e["start"] <= frame < e["end"] for e in self.events)
