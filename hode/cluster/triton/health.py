"""Health and failover of ``runner=triton``: a thread that checks every server's ``live`` and the
model's ``ready`` endpoints each ``probe_s``, hedges overdue items and retries parked ones, with the
policy and bookkeeping of :mod:`hode.cluster.failover` (the same as ``runner=live``'s supervisor).
A node marked down gets nothing from the schedulers and its items in flight go to other nodes;
it is re-admitted when its checks and a probe tile pass again."""
from __future__ import annotations

import logging
import threading
import time

from hode.cluster.failover import Flight, item_units, pick_node
from hode.cluster.triton.client import TritonError

log = logging.getLogger(__name__)


class Supervisor:
    """Failures of ``backend.links`` (a :class:`~hode.cluster.triton.backend.TritonBackend`)."""

    def __init__(self, backend) -> None:
        self.b = backend
        self._parked: dict[tuple[int, int], float] = {}  # items no node could take yet -> since when
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._probing: set[int] = set()
        self._lock = threading.Lock()
        self.t0 = time.perf_counter()

    def start(self) -> None:
        self.t0 = time.perf_counter()
        if self.b.policy.enabled:
            self._thread = threading.Thread(target=self._run, name="triton-supervisor", daemon=True)
            self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)

    def event(self, node: str, kind: str, detail: str) -> None:
        self.b.faults.event(time.perf_counter() - self.t0, node, kind, detail)

    def mark_down(self, link, why: str) -> None:
        """``link`` takes no more work; every item with a copy on it gets one elsewhere."""
        with link.lock:
            if not link.up:
                return
            link.up = False
            link.down_events += 1
        self.b.faults.count("nodes_down")
        self.event(link.node.name, "down", why)
        log.warning("triton node '%s' is down (%s): re-dispatching its items", link.node.name, why)
        for f in self.b.tracker.on(link.index):
            if self.b.tracker.resolve(f.key, link.index, ok=False) == "lost":
                self.redispatch(f, why)
        self.b._pump(link)  # drops what waited for it (re-dispatched above)

    def redispatch(self, f: Flight, why: str, hedge: bool = False) -> bool:
        """One more copy of ``f`` to the up node that would finish it first (one not tried before
        if possible); parked when none is up; the run fails after ``max_attempts`` copies."""
        b = self.b
        if len(f.tried) >= b.policy.max_attempts:
            b.fail(TritonError(f"item {f.item.item_id} of frame {f.frame_id} was sent {len(f.tried)} times "
                               f"(nodes {', '.join(b.links[i].node.name for i in f.tried)}) and never came back; "
                               f"last: {why}"))
            return False
        states = b.states()
        node = pick_node(states, exclude=f.live | set(f.tried))
        if node is None and not hedge:
            node = pick_node(states, exclude=f.live)
        if node is None:
            if not hedge:
                with self._lock:
                    self._parked.setdefault(f.key, time.perf_counter())
            return False
        with self._lock:
            self._parked.pop(f.key, None)
        link, t = b.links[node], time.perf_counter()
        b.tracker.copy_sent(f.key, node, b.policy.deadline(t, link.pending_units + item_units(f.item.pixels),
                                                           link.expected_s()))
        b.faults.count("hedged" if hedge else "redispatched")
        b.send(link, f.frame_id, [f.item], f.submitted)
        return True

    def _run(self) -> None:
        next_probe = 0.0
        while not self._stop.wait(0.05):
            try:
                now = time.perf_counter()
                if self.b.policy.hedge:
                    for f in self.b.tracker.overdue(now):
                        for i in list(f.live):
                            self.b.slowness.observe(i, now, self.b.policy.deadline_k, self.b.links[i].expected_s())
                        if not self.redispatch(f, "overdue", hedge=True):
                            self.b.tracker.postpone(f.key, now + self.b.policy.deadline_slack_s + 0.05)
                self._retry_parked(now)
                if now >= next_probe:
                    next_probe = now + self.b.settings.probe_s
                    for link in self.b.links:
                        self._probe(link)
            except Exception:  # the supervisor must never die silently
                log.exception("triton supervisor")

    def _retry_parked(self, now: float) -> None:
        with self._lock:
            parked = list(self._parked.items())
        for key, since in parked:
            f = self.b.tracker.get(key)
            if f is None or f.done or f.live:
                with self._lock:
                    self._parked.pop(key, None)
            elif not self.redispatch(f, "no node was up") and now - since > self.b.settings.all_down_timeout_s:
                self.b.fail(TritonError(f"item {key[1]} of frame {key[0]}: no Triton node up for "
                                        f"{self.b.settings.all_down_timeout_s:.0f} s"))
                with self._lock:
                    self._parked.pop(key, None)

    def _probe(self, link) -> None:
        """Check ``link`` on its own thread (a hung server must not stall hedging)."""
        with self._lock:
            if link.index in self._probing:
                return
            self._probing.add(link.index)

        def run() -> None:
            try:
                s = self.b.settings
                ok = link.client.healthy(s.probe_timeout_s)
                if ok and not link.up:  # ready again: one probe tile must pass before it gets work
                    try:
                        link.client.probe(s.probe_timeout_s + 5 / max(link.base_speed, 1e-3))
                    except TritonError:
                        return
                    with link.lock:
                        link.up, link.probe_failures, link.last_done = True, 0, 0.0
                    self.b.faults.count("readmitted")
                    self.event(link.node.name, "up", "live, ready and a probe tile answered")
                    log.warning("triton node '%s' answers again: re-admitted", link.node.name)
                elif ok:
                    link.probe_failures = 0
                elif link.up:
                    link.probe_failures += 1
                    if link.probe_failures >= s.fail_after:
                        self.mark_down(link, f"live/ready check failed {link.probe_failures} times")
            finally:
                with self._lock:
                    self._probing.discard(link.index)

        threading.Thread(target=run, name=f"probe-{link.node.name}", daemon=True).start()
