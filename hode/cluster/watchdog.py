"""The live runner's watchdog: a node that stops answering Detect is down, whatever its health says.

A worker's gRPC health service answers from its own thread; a worker whose device is held (a
wedged queue, another client's huge request, a hung driver) keeps saying SERVING while it never
answers a Detect again. The health check alone cannot see that, so the runner also watches the
work itself:

- **Per call.** Every Detect call carries a gRPC deadline of ``watchdog_k`` x the expected time of
  the node's work up to and including the call (tile units x expected tile time, as for hedging
  deadlines) + ``watchdog_slack_s``, capped by ``rpc_timeout_s``. Its expiry (DEADLINE_EXCEEDED)
  marks the node down like any lost call; its items are re-dispatched.
- **Per node.** Calls of one item are cancelled when another copy wins (hedging), so on a hedged
  node their deadlines may never expire. Whenever an item is overdue on a node, the runner sends
  that node a one-tile *liveness probe* (a real Detect, one at a time per node) with the same kind
  of deadline; if it does not come back, the node is marked down.
- **Re-admission** of a down node needs that probe to pass too, not only its health check: a
  wedged worker that says SERVING stays down.

The deadlines are generous (default 20 x + 5 s): slowness is what hedging is for; the watchdog is
for a node that answers nothing.
"""
from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

import numpy as np

from hode.edge import worker_pb2 as pb
from hode.edge.codec import encode_tile
from hode.errors import check

if TYPE_CHECKING:  # pragma: no cover
    from hode.cluster.live import _Link

log = logging.getLogger(__name__)

PROBE_FRAME = -1  # frame id of a liveness probe: no load-trace event covers it
PROBE_UNITS = 0.25  # a 32x32 tile costs the minimum item cost (failover.item_units)
_PROBE_TILE = encode_tile(np.full((32, 32, 3), 114, np.uint8), 0, "raw")


def check_watchdog(k: float, slack_s: float) -> tuple[float, float]:
    ok = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (k, slack_s))
    check(ok and k >= 1 and slack_s > 0, f"runner.backend.watchdog_k must be a number >= 1 and watchdog_slack_s "
                                         f"a number > 0, got {k!r} and {slack_s!r}")
    return float(k), float(slack_s)


class WatchdogMixin:
    """The watchdog half of :class:`hode.cluster.live.LiveBackend` (it supplies ``_links``,
    ``policy``, ``rpc_timeout_s``, ``probe_timeout_s``, ``time_scale``, ``tracker``, ``faults``,
    ``_mark_down``, ``now``, ``_t0`` and ``_closed``)."""

    watchdog_k: float = 20.0
    watchdog_slack_s: float = 5.0

    def watchdog_s(self, link: "_Link", units: float) -> float:
        """Longest wait for a reply from ``link`` with ``units`` tiles of work ahead, this call's included."""
        return min(self.watchdog_k * max(units, PROBE_UNITS) * link.expected_s() + self.watchdog_slack_s,
                   self.rpc_timeout_s)

    def call_timeout(self, link: "_Link") -> float:
        """gRPC deadline of a Detect call to ``link`` (its items are already counted in ``pending_units``)."""
        return self.watchdog_s(link, link.pending_units) if self.policy.enabled else self.rpc_timeout_s

    def watchdog_reason(self, link: "_Link", timeout: float) -> str:
        return (f"watchdog: no reply to a Detect call within {timeout:.1f} s "
                f"({self.watchdog_k:g} x its expected time + {self.watchdog_slack_s:g} s), whatever its health says")

    # ----- liveness probes ---------------------------------------------------------------------

    def probe_late_nodes(self, now: float) -> None:
        """Send a liveness probe to every up node holding an overdue item (one probe per node at a time)."""
        for i in self.tracker.late_nodes(now):
            link = self._links[i]
            if link.up and link.client is not None:
                self._liveness_probe(link)

    def _probe_request(self) -> pb.DetectRequest:
        return pb.DetectRequest(frame_id=PROBE_FRAME, tiles=[_PROBE_TILE], time_scale=self.time_scale)

    def _liveness_probe(self, link: "_Link") -> None:
        with link.lock:
            if link.liveness_probe:
                return
            link.liveness_probe = True
            units = link.pending_units + PROBE_UNITS
        client, timeout = link.client, self.watchdog_s(link, units)
        try:
            fut = client.detect_future(self._probe_request(), timeout=timeout)
        except Exception:  # the channel was closed under us (restart, close)
            link.liveness_probe = False
            return
        fut.add_done_callback(lambda f: self._on_liveness(f, link, client, timeout))

    def _on_liveness(self, fut, link: "_Link", client, timeout: float) -> None:
        import grpc

        link.liveness_probe = False
        if self._closed or client is not link.client or fut.cancelled():
            return
        try:
            fut.result()
            return
        except grpc.RpcError as e:
            code = e.code()
        except Exception:  # pragma: no cover - cancelled between the checks
            return
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            self.faults.count("watchdog")
            self._mark_down(link, f"watchdog: a one-tile liveness probe got no reply within {timeout:.1f} s "
                                  "while the node held overdue items")
        elif code == grpc.StatusCode.UNAVAILABLE:
            self._mark_down(link, f"liveness probe failed: {code.name}")

    def answers_detect(self, link: "_Link") -> bool:
        """Blocking: does ``link`` answer a one-tile Detect in time? (re-admission)"""
        timeout = max(self.watchdog_s(link, PROBE_UNITS), self.probe_timeout_s)
        try:
            link.client.detect(self._probe_request(), timeout=timeout)
            return True
        except Exception as e:
            log.info("edge node '%s' answers its health check but not a one-tile Detect within %.1f s (%s): "
                     "not re-admitted", link.node.name, timeout, getattr(e, "code", lambda: type(e).__name__)())
            return False


def start_readmit(link: "_Link", target) -> None:
    """Run ``target(link)`` on its own thread unless one is running for ``link`` already."""
    with link.lock:
        if link.readmitting:
            return
        link.readmitting = True

    def run() -> None:
        try:
            target(link)
        finally:
            link.readmitting = False

    threading.Thread(target=run, name=f"readmit-{link.node.name}", daemon=True).start()
