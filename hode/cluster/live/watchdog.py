"""The live runner's watchdog (part of its supervisor, :mod:`hode.cluster.live.supervisor`): a node that stops answering Detect is down, whatever its health says.

A worker's gRPC health service answers from its own thread; a worker whose device is held (a
wedged queue, another client's huge request, a hung driver) keeps saying SERVING while it never
answers a Detect again. The health check alone cannot see that, so the runner also watches the
work itself:

- **Per call.** Every Detect call carries a gRPC deadline of ``health.watchdog_k`` x the expected time of
  the node's work up to and including the call (tile units x expected tile time, as for hedging
  deadlines) + ``health.watchdog_slack_s``, capped by ``transport.rpc_timeout_s``. Its expiry (DEADLINE_EXCEEDED)
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
from typing import TYPE_CHECKING

import numpy as np

from hode.edge import worker_pb2 as pb
from hode.edge.codec import encode_tile

if TYPE_CHECKING:  # pragma: no cover
    from hode.cluster.live.links import Link
    from hode.cluster.live.supervisor import Supervisor

log = logging.getLogger(__name__)

PROBE_FRAME = -1  # frame id of a liveness probe: no load-trace event covers it
PROBE_UNITS = 0.25  # a 32x32 tile costs the minimum item cost (failover.item_units)
_PROBE_TILE = encode_tile(np.full((32, 32, 3), 114, np.uint8), 0, "raw")


class Watchdog:
    """The watchdog of ``sup`` (its links, health settings, policy, tracker, faults, ``mark_down``)."""

    def __init__(self, sup: "Supervisor", rpc_timeout_s: float) -> None:
        self.sup, self.rpc_timeout_s = sup, rpc_timeout_s
        self.k, self.slack_s = sup.health.watchdog_k, sup.health.watchdog_slack_s

    def watchdog_s(self, link: "Link", units: float) -> float:
        """Longest wait for a reply from ``link`` with ``units`` tiles of work ahead, this call's included."""
        return min(self.k * max(units, PROBE_UNITS) * link.expected_s() + self.slack_s, self.rpc_timeout_s)

    def call_timeout(self, link: "Link") -> float:
        """gRPC deadline of a Detect call to ``link`` (its items are already counted in ``pending_units``)."""
        return self.watchdog_s(link, link.load.pending_units) if self.sup.policy.enabled else self.rpc_timeout_s

    def reason(self, link: "Link", timeout: float) -> str:
        return (f"watchdog: no reply to a Detect call within {timeout:.1f} s "
                f"({self.k:g} x its expected time + {self.slack_s:g} s), whatever its health says")

    # ----- liveness probes ---------------------------------------------------------------------

    def probe_late_nodes(self, now: float) -> None:
        """Send a liveness probe to every up node holding an overdue item (one probe per node at a time)."""
        for i in self.sup.tracker.late_nodes(now):
            link = self.sup.links[i]
            if link.up and link.client is not None:
                self._liveness_probe(link)

    def _probe_request(self) -> pb.DetectRequest:
        return pb.DetectRequest(frame_id=PROBE_FRAME, tiles=[_PROBE_TILE], time_scale=self.sup.time_scale())

    def _liveness_probe(self, link: "Link") -> None:
        with link.lock:
            if link.health.liveness_probe:
                return
            link.health.liveness_probe = True
            units = link.load.pending_units + PROBE_UNITS
        client, timeout = link.client, self.watchdog_s(link, units)
        try:
            fut = client.detect_future(self._probe_request(), timeout=timeout)
        except Exception:  # the channel was closed under us (restart, close)
            link.health.liveness_probe = False
            return
        fut.add_done_callback(lambda f: self._on_liveness(f, link, client, timeout))

    def _on_liveness(self, fut, link: "Link", client, timeout: float) -> None:
        import grpc

        link.health.liveness_probe = False
        if self.sup.closed or client is not link.client or fut.cancelled():
            return
        try:
            fut.result()
            return
        except grpc.RpcError as e:
            code = e.code()
        except Exception:  # pragma: no cover - cancelled between the checks
            return
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            self.sup.faults.count("watchdog")
            self.sup.mark_down(link, f"watchdog: a one-tile liveness probe got no reply within {timeout:.1f} s "
                                     "while the node held overdue items")
        elif code == grpc.StatusCode.UNAVAILABLE:
            self.sup.mark_down(link, f"liveness probe failed: {code.name}")

    def answers_detect(self, link: "Link") -> bool:
        """Blocking: does ``link`` answer a one-tile Detect in time? (re-admission)"""
        timeout = max(self.watchdog_s(link, PROBE_UNITS), self.sup.health.probe_timeout_s)
        try:
            link.client.detect(self._probe_request(), timeout=timeout)
            return True
        except Exception as e:
            log.info("edge node '%s' answers its health check but not a one-tile Detect within %.1f s (%s): "
                     "not re-admitted", link.node.name, timeout, getattr(e, "code", lambda: type(e).__name__)())
            return False
