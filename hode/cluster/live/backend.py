"""``runner=live``: every topology node is a real gRPC edge worker (the package docstring says how
the parts fit). :class:`LiveBackend` is the :class:`hode.cluster.base.Backend` seam: it checks the
settings, wires workers, transport and supervisor, and answers start/states/submit/poll/stats/close."""
from __future__ import annotations

import logging
import queue
import signal
import threading
import time
import weakref
from dataclasses import asdict
from typing import Sequence

from omegaconf import DictConfig

from hode.cluster.failover import FailoverPolicy, by_node, events_list, item_units
from hode.cluster.live.links import Link
from hode.cluster.live.settings import (EmulationSettings, HealthSettings, TransportSettings, WorkerSettings,
                                        from_config)
from hode.cluster.live.supervisor import Supervisor
from hode.cluster.live.transport import Reports, Transport
from hode.cluster.live.workers import Workers, check_chaos
from hode.cluster.live_checks import emulation_report
from hode.profiles import LoadTrace
from hode.cluster.queues import drain
from hode.cluster.topology import Topology
from hode.edge.process import WorkerError
from hode.edge.security import EdgeSecurity
from hode.errors import check
from hode.types import Completion, NodeState, WorkItem

log = logging.getLogger(__name__)


class LiveBackend:
    """Settings: ``emulation``, ``transport``, ``workers``, ``health`` (the dataclasses of
    :mod:`hode.cluster.live.settings`, or mappings of their fields), ``failover``
    (:class:`FailoverPolicy`), ``security`` (:class:`EdgeSecurity`); ``chaos`` and ``load_trace`` are
    fault and load events, ``profiles_dir`` and ``batched_inference`` mean what they mean in sim."""

    def __init__(self, topology: Topology, detector: DictConfig | None = None,
                 emulation: dict | EmulationSettings | None = None, transport: dict | TransportSettings | None = None,
                 workers: dict | WorkerSettings | None = None, health: dict | HealthSettings | None = None,
                 failover: dict | FailoverPolicy | None = None, security: dict | EdgeSecurity | None = None,
                 chaos: list | None = None, load_trace: list | None = None, profiles_dir: str | None = None,
                 batched_inference: bool = False) -> None:
        check(isinstance(batched_inference, bool), f"runner.backend.batched_inference must be true or false, got {batched_inference!r}")
        self.emulation = from_config(EmulationSettings, emulation, "runner.backend.emulation")
        self.transport_cfg = from_config(TransportSettings, transport, "runner.backend.transport")
        self.workers_cfg = from_config(WorkerSettings, workers, "runner.backend.workers")
        self.health = from_config(HealthSettings, health, "runner.backend.health")
        self.topology, self.emulate = topology, self.emulation.enabled
        self.batch = self.transport_cfg.batch  # may be changed between frames (tests)
        trace = LoadTrace(events_list(load_trace, "runner.load_trace"))  # validated here; the workers apply it
        trace.check_nodes([n.name for n in topology])
        self.policy = FailoverPolicy.from_config(failover)
        self.security = EdgeSecurity.from_config(security)
        chaos = check_chaos(chaos, [n.name for n in topology])
        self._links = [Link(i, n) for i, n in enumerate(topology)]
        self._done: queue.Queue = queue.Queue()
        self._started = self._closed = False
        self._old_sigterm = None
        self.workers = Workers(self._links, topology, detector, self.workers_cfg, self.emulation, self.transport_cfg,
                               self.security, list(trace.events), chaos, profiles_dir, batched_inference)
        self._specs = self.workers.specs
        self.supervisor = Supervisor(self._links, self.policy, self.health, self.workers, self._done, self._send,
                                     self.emulate, self.transport_cfg.rpc_timeout_s)
        sup = self.supervisor
        self.faults = sup.faults
        self.transport = Transport(self._links, Reports(delivered=sup.delivered, lost=sup.lost, node_lost=sup.node_lost,
                                                        fatal=sup.fatal, call_timeout=sup.watchdog.call_timeout,
                                                        time_scale=sup.time_scale), self.policy.enabled)

    @property
    def time_scale(self) -> float:
        """Wall seconds per emulated device second the workers run at (resolved at start if auto)."""
        return self.workers.time_scale

    @property
    def probe_s(self) -> float:
        return self.health.probe_s

    def _send(self, link: Link, frame_id: int, items: list[WorkItem], submitted: float) -> None:
        self.transport.send(link, frame_id, items, submitted)

    # ----- the Backend seam --------------------------------------------------------------------

    def start(self) -> None:
        check(not self._started, "LiveBackend.start() called twice")
        self._started = True
        _close_at_exit(self)
        self._catch_sigterm()
        try:
            self.workers.start()
            self.transport.start()
            for link in self._links:
                link.load.base_speed = link.load.speed
            self.supervisor.start()
        except BaseException:
            self.close()
            raise
        log.info("live cluster up: %s", ", ".join(f"{l.node.name}@{l.target}" for l in self._links))

    def _catch_sigterm(self) -> None:
        """SIGTERM to the camera: unwind like Ctrl-C (finished frames written, workers stopped);
        the default action would kill the process before ``close`` could run."""
        if threading.current_thread() is not threading.main_thread():
            return
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            def on_term(signum, frame):
                raise KeyboardInterrupt

            self._old_sigterm = signal.signal(signal.SIGTERM, on_term)

    def now(self) -> float:
        return time.perf_counter()

    def states(self) -> list[NodeState]:
        """Node states; when every node is down, waits up to ``all_down_timeout_s`` for one to be
        re-admitted (restarted workers take a while), then fails in one line."""
        out = self.supervisor.node_states()
        if not self.policy.enabled or any(s.up for s in out) or not self._started or self._closed:
            return out
        wait_s = self.health.all_down_timeout_s
        deadline = time.monotonic() + wait_s
        log.warning("every edge node is down: waiting up to %.0f s for one to come back", wait_s)
        while time.monotonic() < deadline:
            self._raise_pending()
            time.sleep(0.1)
            out = self.supervisor.node_states()
            if any(s.up for s in out):
                return out
        raise WorkerError(f"every edge node has been down for {wait_s:.0f} s "
                          f"({', '.join(l.node.name for l in self._links)}); giving up")

    def submit(self, frame_id: int, items: Sequence[WorkItem], assignment: Sequence[int]) -> None:
        check(self._started and not self._closed, "LiveBackend.submit() before start() or after close()")
        t = self.now()
        for node, its in by_node(items, assignment, len(self._links)).items():
            link = self._links[node]
            unit_s, ahead = link.expected_s(), link.load.pending_units
            for it in its:
                ahead += item_units(it.pixels)
                self.supervisor.tracker.add(frame_id, it, node, t, self.policy.deadline(t, ahead, unit_s))
            size = self.batch or len(its)
            for k in range(0, len(its), size):
                self._send(link, frame_id, its[k:k + size], t)
        self.workers.inject(frame_id, self.supervisor.event)

    def poll(self, timeout: float | None = None) -> list[Completion]:
        """Finished items; waits up to ``timeout`` s for the first one. A run-ending failure raises."""
        out = drain(self._done, timeout)
        if not out and not self.policy.enabled:
            self.workers.check_alive()
        return out

    def _raise_pending(self) -> None:
        """A run-ending error the callbacks queued (used while waiting outside poll)."""
        try:
            got = self._done.get_nowait()
        except queue.Empty:
            return
        if isinstance(got, BaseException):
            raise got
        self._done.put(got)

    # ----- results and shutdown ----------------------------------------------------------------

    def describe(self) -> dict:
        """How the run's times were produced (results.json ``runner``): emulated or not, and the scale."""
        local = sum(l.proc is not None for l in self._links)
        overruns = sum(l.load.overruns for l in self._links)
        items = sum(l.load.items for l in self._links)
        emulation = emulation_report(self._links, self.emulate, self.time_scale)
        h, open_nodes = self.health, self.workers.open_nodes
        return {"name": "live", "clock": "wall", "emulated": emulation["emulated"],
                "emulated_nodes": emulation["emulated_nodes"], "time_scale": emulation["time_scale"],
                "time_scale_source": "auto" if self.emulation.time_scale == "auto" else "config",
                "overrun_fraction": overruns / items if items else 0.0, "encoding": self.transport_cfg.encoding,
                "jpeg_quality": self.transport_cfg.jpeg_quality if self.transport_cfg.encoding == "jpeg" else None,
                "workers": {"local_processes": local, "external": len(self._links) - local},
                "failover": {**asdict(self.policy), "probe_s": h.probe_s, "fail_after": h.fail_after,
                             "restart": h.restart, "watchdog_k": h.watchdog_k,
                             "watchdog_slack_s": h.watchdog_slack_s, **self.faults.summary()},
                "security": {**self.security.describe(),  # + the nodes that answered without our token, if any
                             **({"token_not_checked_by": list(open_nodes)} if open_nodes else {})},
                "note": emulation["note"]}

    def stats(self) -> list[dict]:
        return [l.stats(self.emulate, self.time_scale) for l in self._links]

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.transport.closed = True  # before the supervisor stops: replies from now on are not failures
        self.supervisor.close()
        self.transport.close()
        self.workers.close()
        if self._old_sigterm is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._old_sigterm)
            self._old_sigterm = None
        if self.emulate and any(l.load.items for l in self._links):
            frac = self.describe()["overrun_fraction"]
            if frac > 0.05:
                log.warning("%.0f%% of tiles ran slower than their emulated device (overruns): raise "
                            "runner.backend.emulation.time_scale above %.2f for a faithful emulation", 100 * frac,
                            self.time_scale)

    def pids(self) -> list[int]:
        """Process ids of the local workers (for checks that none survives)."""
        return self.workers.pids()


def _close_at_exit(backend: LiveBackend) -> None:
    """Close the backend at interpreter exit if nobody did (a weak reference: no leak)."""
    import atexit

    ref = weakref.ref(backend)

    def close() -> None:
        b = ref()
        if b is not None:
            b.close()

    atexit.register(close)
