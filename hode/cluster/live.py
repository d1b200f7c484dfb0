"""``runner=live``: every topology node is a real gRPC edge worker.

Nodes without a ``host`` get a local worker process each (127.0.0.1, a free port), emulating
their device kind's speed by pacing (:mod:`hode.edge.pacing`); nodes with ``host``/``port`` are
workers that already run somewhere (started by hand or by the remote launcher), used as they are.

Work goes out asynchronously: one sender thread per node encodes the tiles and issues Detect
calls as gRPC futures, so all nodes run in parallel and up to ``runner.in_flight`` frames can be
queued on the workers; replies land in one completion queue that :meth:`poll` drains. Times are
the wall clock of this process. Node state (queue, speed) is what the workers measured.

Failures (:mod:`hode.cluster.failover`, ``runner.failover``): a supervisor thread watches every
node (local process alive, gRPC health check every ``probe_s``); a node whose calls fail, whose
process exits or whose health check fails ``fail_after`` times is marked down (``NodeState.up``
false, so schedulers give it nothing) and its items in flight are re-dispatched to the other nodes;
items past their deadline are hedged. A down node is re-admitted when its health check passes
again; a local worker that died is restarted (``restart``, at most ``max_restarts`` times).
``chaos`` injects faults for tests and benchmarks (SIGKILL/SIGSTOP/SIGCONT a local worker when a
frame is submitted). ``security`` (:mod:`hode.edge.security`) sets the token and TLS.
"""
from __future__ import annotations

import logging
import os
import queue
import signal
import tempfile
import threading
import time
import weakref
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from omegaconf import DictConfig, OmegaConf

import hode.edge  # noqa: F401  (before grpc: picks gRPC's I/O path, see hode/edge/grpc_io.py)
import grpc

from hode.cluster.failover import (FailoverPolicy, FaultLog, Flight, Slowness, Tracker, events_list, item_units,
                                   pick_node)
from hode.profiles import LoadTrace, profile_from_dict
from hode.cluster.topology import Node, Topology
from hode.cluster.watchdog import WatchdogMixin, check_watchdog, start_readmit
from hode.cluster.live_checks import emulation_report, node_emulated, wait_connected, warn_ignored_token
from hode.detect.factory import detector_config
from hode.edge.client import EdgeClient, outcomes, server_time_s
from hode.edge.codec import check_encoding
from hode.edge.pacing import read_profile
from hode.edge.process import WorkerError, WorkerProcess
from hode.edge.security import EdgeSecurity
from hode.edge.server import WorkerSpec, address
from hode.errors import ConfigError, WeightsError, check
from hode.types import Completion, NodeState, WorkItem

log = logging.getLogger(__name__)

# gRPC codes that say "this node is gone or not answering": mark it down, re-dispatch its items.
NODE_LOST = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED,
             grpc.StatusCode.UNKNOWN, grpc.StatusCode.ABORTED}
# Codes that say "the request is wrong" (our bug or a config mismatch): retrying elsewhere cannot help.
FATAL = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAUTHENTICATED,
         grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNIMPLEMENTED}
CHAOS_ACTIONS = {"kill": signal.SIGKILL, "stop": signal.SIGSTOP, "cont": signal.SIGCONT}


@dataclass
class _Link:
    """One node as this backend sees it: its worker (process or address), client and counters."""

    index: int
    node: Node
    proc: WorkerProcess | None = None
    client: EdgeClient | None = None
    target: str = ""
    sendq: "queue.Queue | None" = None
    thread: threading.Thread | None = None
    up: bool = True
    outstanding: int = 0
    pending_units: float = 0.0  # the outstanding items' expected cost in tiles (failover.item_units)
    speed: float = 0.0
    items: int = 0
    busy_s: float = 0.0
    compute_s: float = 0.0
    overruns: int = 0
    overhead_s: list[float] = field(default_factory=list)  # round trip minus time inside the worker
    status: dict = field(default_factory=dict)  # the worker's Status at start-up
    lock: threading.Lock = field(default_factory=threading.Lock)
    calls: set = field(default_factory=set)  # Detect futures in flight (cancelled when the node goes down)
    down_since: float = 0.0
    probe_failures: int = 0
    probing: bool = False
    restarts: int = 0
    down_events: int = 0
    base_speed: float = 0.0  # items/s the node is expected to manage (start-up): deadlines use it
    liveness_probe: bool = False  # a watchdog probe is in flight (hode.cluster.watchdog)
    readmitting: bool = False

    def expected_s(self) -> float:
        """Expected service time of one item for deadlines: the measured moving average, but never
        slower than the node's start-up expectation (a node that slowed 10x gets no 10x grace)."""
        return 1.0 / max(self.speed, self.base_speed, 1e-6)


class LiveBackend(WatchdogMixin):
    def __init__(self, topology: Topology, detector: DictConfig | None = None, emulate: bool = True,
                 time_scale: float | str = "auto", auto_margin: float = 1.5, load_trace: list | None = None,
                 encoding: str = "jpeg", jpeg_quality: int = 90, batch: int = 1, bind: str = "127.0.0.1",
                 start_timeout_s: float = 180.0, rpc_timeout_s: float = 600.0, max_message_mb: int = 64,
                 torch_threads: int = 1, profiles_dir: str | None = None, log_dir: str | None = None,
                 seed: int = 0, failover: dict | FailoverPolicy | None = None, probe_s: float = 1.0,
                 probe_timeout_s: float = 2.0, fail_after: int = 3, restart: bool = True, max_restarts: int = 3,
                 all_down_timeout_s: float = 120.0, security: dict | EdgeSecurity | None = None,
                 chaos: list | None = None, batched_inference: bool = False, watchdog_k: float = 20.0,
                 watchdog_slack_s: float = 5.0, insecure: bool = False, connect_timeout_s: float = 5.0) -> None:
        check_encoding(encoding, jpeg_quality)
        check(isinstance(batched_inference, bool), f"runner.backend.batched_inference must be true or false, got {batched_inference!r}")
        self.batched_inference = batched_inference
        check(time_scale == "auto" or (isinstance(time_scale, (int, float)) and time_scale > 0),
              f"runner.backend.time_scale must be 'auto' or a number > 0, got {time_scale!r}")
        check(isinstance(auto_margin, (int, float)) and auto_margin >= 1,
              f"runner.backend.auto_margin must be >= 1, got {auto_margin!r}")
        check(isinstance(batch, int) and batch >= 0, f"runner.backend.batch must be an integer >= 0 (0: one request "
              f"per frame and node), got {batch!r}")
        check(start_timeout_s > 0 and rpc_timeout_s > 0 and connect_timeout_s > 0, "runner.backend timeouts must be > 0")
        check(isinstance(insecure, bool), f"runner.backend.insecure must be true or false, got {insecure!r}")
        self.insecure, self.connect_timeout_s = insecure, float(connect_timeout_s)
        self.topology, self.emulate, self.auto_margin = topology, bool(emulate), float(auto_margin)
        self.time_scale_cfg = time_scale
        self.time_scale = float(time_scale) if time_scale != "auto" else 1.0
        self.trace = LoadTrace(events_list(load_trace, "runner.load_trace"))  # validated here; the workers apply it
        self.trace.check_nodes([n.name for n in topology])
        self.encoding, self.quality, self.batch, self.bind = encoding, jpeg_quality, batch, bind
        self.start_timeout_s, self.rpc_timeout_s, self.max_message_mb = start_timeout_s, rpc_timeout_s, max_message_mb
        self.torch_threads, self.profiles_dir, self.seed = torch_threads, profiles_dir, seed
        self.policy = FailoverPolicy.from_config(failover)
        check(probe_s > 0 and probe_timeout_s > 0 and all_down_timeout_s > 0,
              "runner.backend.probe_s, probe_timeout_s and all_down_timeout_s must be > 0")
        check(isinstance(fail_after, int) and fail_after >= 1, f"runner.backend.fail_after must be an integer >= 1, "
                                                               f"got {fail_after!r}")
        check(isinstance(max_restarts, int) and max_restarts >= 0,
              f"runner.backend.max_restarts must be an integer >= 0, got {max_restarts!r}")
        self.probe_s, self.probe_timeout_s, self.fail_after = float(probe_s), float(probe_timeout_s), fail_after
        self.restart, self.max_restarts, self.all_down_timeout_s = bool(restart), max_restarts, float(all_down_timeout_s)
        self.security = EdgeSecurity.from_config(security)
        self.watchdog_k, self.watchdog_slack_s = check_watchdog(watchdog_k, watchdog_slack_s)
        self.chaos = _check_chaos(chaos, [n.name for n in topology])
        self.tracker = Tracker(self.policy)
        self.faults = FaultLog()
        self.slowness = Slowness(len(topology))
        self._parked: dict[tuple[int, int], float] = {}  # items no node could take yet -> since when
        self._calls: dict[tuple[int, int], dict[int, grpc.Future]] = {}  # one-item Detect calls, by item and node
        self._calls_lock = threading.Lock()
        self._supervisor: threading.Thread | None = None
        self._stop = threading.Event()
        self._t0 = time.perf_counter()
        self._detector_cfg = detector
        self._log_dir = Path(log_dir) if log_dir else None
        self._links = [_Link(i, n) for i, n in enumerate(topology)]
        self._done: queue.Queue = queue.Queue()
        self._started = self._closed = False
        self._old_sigterm = None
        self._launcher = None  # remote.launcher.Launcher for nodes with an ``ssh`` section (remote hosts)
        self._open_nodes: list[str] = []  # nodes that answered without our token (they check none)
        self._specs = [self._spec(link.node) for link in self._links if link.node.host is None and not _remote(link.node)]

    # ----- start-up ----------------------------------------------------------------------------

    def _spec(self, node: Node) -> WorkerSpec:
        """What a local worker for ``node`` runs (profile and model checked now, not in the child)."""
        det = detector_config(node.model, self._detector_cfg)
        det = OmegaConf.to_container(det, resolve=True) if isinstance(det, DictConfig) else dict(det)
        weights = det.get("weights")
        if isinstance(weights, str) and not Path(weights).is_file():  # fail before five processes start
            raise WeightsError(f"topology node '{node.name}' ({node.model}): detector weights not found: {weights}")
        profile = None
        if self.emulate:
            profile = read_profile(node.device, self.profiles_dir)
            profile_from_dict(profile, f"device profile '{node.device}'").timing(node.model)
        return WorkerSpec(node=node.name, detector=det, device_kind=node.device, emulate=self.emulate, profile=profile,
                          time_scale=self.time_scale, batched_inference=self.batched_inference,
                          load_trace=list(self.trace.events), host=self.bind, port=0,
                          max_message_mb=self.max_message_mb, torch_threads=self.torch_threads,
                          seed=self.seed + node_index(self.topology, node), token_env=self.security.token_env,
                          token_file=self.security.token_file, tls_cert=self.security.tls_cert,
                          tls_key=self.security.tls_key, tls_key_passphrase_env=self.security.tls_key_passphrase_env,
                          insecure=self.insecure)

    def log_dir(self) -> Path:
        """Where worker logs go: ``<run dir>/workers`` inside a Hydra run, else a temp dir."""
        if self._log_dir is None:
            try:
                from hydra.core.hydra_config import HydraConfig

                self._log_dir = Path(HydraConfig.get().runtime.output_dir) / "workers"
            except Exception:
                self._log_dir = Path(tempfile.mkdtemp(prefix="hode-workers-"))
        return self._log_dir

    def start(self) -> None:
        check(not self._started, "LiveBackend.start() called twice")
        self._started = True
        _close_at_exit(self)
        self._catch_sigterm()
        try:
            remote = self._deploy_remote()
            specs = iter(self._specs)
            for link in self._links:  # spawn every local worker first: they load in parallel
                if link.node.name in remote:
                    self._connect(link, *remote[link.node.name])
                elif link.node.host is None:
                    link.proc = WorkerProcess(next(specs), self.log_dir(), self.torch_threads)
                    link.proc.spawn()
                else:
                    check(link.node.port is not None, f"topology node '{link.node.name}' has a host but no port")
                    self._connect(link, link.node.host, int(link.node.port))
            deadline = time.monotonic() + self.start_timeout_s
            for link in self._links:
                if link.proc is None:  # a closed port fails in seconds, not after start_timeout_s
                    wait_connected(link.node.name, link.target, link.client.channel, self.connect_timeout_s)
                self._wait_serving(link, deadline)
                link.status = _status_dict(link.client.status())
                link.speed = link.status["speed"]
            self._open_nodes = warn_ignored_token(self._links, self.security, self.max_message_mb)
            self._resolve_time_scale()
            for link in self._links:
                link.sendq = queue.Queue()
                link.thread = threading.Thread(target=self._sender, args=(link,), name=f"send-{link.node.name}", daemon=True)
                link.thread.start()
            self._t0 = self.now()
            for link in self._links:
                link.base_speed = link.speed
            if self.policy.enabled:
                self._supervisor = threading.Thread(target=self._supervise, name="live-supervisor", daemon=True)
                self._supervisor.start()
        except BaseException:
            self.close()
            raise
        log.info("live cluster up: %s", ", ".join(f"{l.node.name}@{l.target}" for l in self._links))

    def _deploy_remote(self) -> dict[str, tuple[str, int]]:
        """Workers of nodes with an ``ssh`` section, deployed by the remote launcher (``remote/``):
        ``{node: (address, port)}``; ``close()`` tears down the ones it started."""
        if not any(_remote(link.node) for link in self._links):
            return {}
        from remote.launcher import Launcher

        self._launcher = Launcher(self.topology, detector=self._detector_cfg, log_dir=self.log_dir(),
                                  worker_defaults={"max_message_mb": self.max_message_mb, "seed": self.seed,
                                                   "load_trace": list(self.trace.events)},
                                  client_security=self.security)
        return self._launcher.deploy()

    def _connect(self, link: _Link, host: str, port: int) -> None:
        link.target = address(host, port)
        link.client = EdgeClient(link.target, self.max_message_mb, self.encoding, self.quality, self.security)

    def _wait_serving(self, link: _Link, deadline: float) -> None:
        name = link.node.name
        while True:
            if link.proc is not None and not link.proc.alive():
                raise WorkerError(f"edge worker '{name}' exited during start-up (code {link.proc.proc.returncode}): "
                                  f"{link.proc.log_tail() or 'no output'} (log: {link.proc.log_path})")
            if link.client is None and link.proc is not None and (port := link.proc.port()):
                self._connect(link, self.bind, port)
            if link.client is not None and link.client.serving(timeout=1.0):
                return
            if time.monotonic() > deadline:
                where = f"log: {link.proc.log_path}" if link.proc else f"at {link.target}"
                raise WorkerError(f"edge worker '{name}' not serving after {self.start_timeout_s:.0f} s ({where})")
            time.sleep(0.2)

    def _resolve_time_scale(self) -> None:
        """``time_scale: auto``: the smallest scale at which every emulated node's real inference fits
        its paced time, with all local workers sharing this machine's cores, times ``auto_margin``."""
        if not self.emulate or self.time_scale_cfg != "auto":
            return
        local = [l for l in self._links if l.proc is not None and l.status.get("profile_tile_ms", 0) > 0]
        if not local:
            return
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        contention = max(1.0, len(local) * max(self.torch_threads, 1) / cores)
        need = max(l.status["compute_tile_ms"] / l.status["profile_tile_ms"] for l in local)
        self.time_scale = max(1.0, round(need * contention * self.auto_margin, 2))
        for l in local:  # the workers' first speed guess assumed scale 1
            l.speed = 1000.0 / (l.status["profile_tile_ms"] * self.time_scale)
        log.info("time_scale auto: %.2f (slowest real/profile tile ratio %.2f, %d workers on %d cores, margin %.2f)",
                 self.time_scale, need, len(local), cores, self.auto_margin)

    def _catch_sigterm(self) -> None:
        """SIGTERM to the camera: unwind like Ctrl-C (finished frames written, workers stopped);
        the default action would kill the process before ``close`` could run."""
        if threading.current_thread() is not threading.main_thread():
            return
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            def on_term(signum, frame):
                raise KeyboardInterrupt

            self._old_sigterm = signal.signal(signal.SIGTERM, on_term)

    # ----- the Backend seam --------------------------------------------------------------------

    def now(self) -> float:
        return time.perf_counter()

    def _states(self) -> list[NodeState]:
        now = self.now()
        return [NodeState(l.node.name, l.node.model, l.node.rank, queue=l.outstanding, up=l.up,
                          speed=(l.speed or 1.0) / self.slowness.factor(l.index, now, l.expected_s()),
                          measured=bool(l.speed))
                for l in self._links]

    def states(self) -> list[NodeState]:
        """Node states; when every node is down, waits up to ``all_down_timeout_s`` for one to be
        re-admitted (restarted workers take a while), then fails in one line."""
        out = self._states()
        if not self.policy.enabled or any(s.up for s in out) or not self._started or self._closed:
            return out
        deadline = time.monotonic() + self.all_down_timeout_s
        log.warning("every edge node is down: waiting up to %.0f s for one to come back", self.all_down_timeout_s)
        while time.monotonic() < deadline:
            self._raise_pending()
            time.sleep(0.1)
            out = self._states()
            if any(s.up for s in out):
                return out
        raise WorkerError(f"every edge node has been down for {self.all_down_timeout_s:.0f} s "
                          f"({', '.join(l.node.name for l in self._links)}); giving up")

    def submit(self, frame_id: int, items: Sequence[WorkItem], assignment: Sequence[int]) -> None:
        check(self._started and not self._closed, "LiveBackend.submit() before start() or after close()")
        t = self.now()
        per_node: dict[int, list[WorkItem]] = {}
        for item, node in zip(items, assignment):
            check(0 <= node < len(self._links), f"assignment names node {node}, topology has {len(self._links)}",
                  ConfigError)
            per_node.setdefault(node, []).append(item)
        for node, its in per_node.items():
            link = self._links[node]
            unit_s, ahead = link.expected_s(), link.pending_units
            for it in its:
                ahead += item_units(it.pixels)
                self.tracker.add(frame_id, it, node, t, self.policy.deadline(t, ahead, unit_s))
            size = self.batch or len(its)
            for k in range(0, len(its), size):
                self._send(link, frame_id, its[k:k + size], t)
        self._chaos(frame_id)

    def poll(self, timeout: float | None = None) -> list[Completion]:
        """Finished items; waits up to ``timeout`` s for the first one. A run-ending failure raises."""
        out: list[Completion] = []
        try:
            got = self._done.get(timeout=timeout) if timeout is None or timeout > 0 else self._done.get_nowait()
        except queue.Empty:
            if not self.policy.enabled:
                self._check_alive()
            return out
        while True:
            if isinstance(got, BaseException):
                raise got
            out.extend(got)
            try:
                got = self._done.get_nowait()
            except queue.Empty:
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

    def _check_alive(self) -> None:
        for l in self._links:
            if l.proc is not None and not l.proc.alive() and l.outstanding:
                l.up = False
                raise WorkerError(f"edge worker '{l.node.name}' died (code {l.proc.proc.returncode}) with "
                                  f"{l.outstanding} items outstanding: {l.proc.log_tail()} (log: {l.proc.log_path})")

    # ----- sending and receiving ---------------------------------------------------------------

    def _send(self, link: _Link, frame_id: int, items: list[WorkItem], submitted: float) -> None:
        with link.lock:
            link.outstanding += len(items)
            link.pending_units += sum(item_units(it.pixels) for it in items)
        link.sendq.put((frame_id, items, submitted))

    @staticmethod
    def _settle(link: _Link, items: list[WorkItem]) -> None:
        """``items`` left ``link`` (answered, failed, cancelled, or never sent); call under ``link.lock``."""
        link.outstanding -= len(items)
        link.pending_units = max(link.pending_units - sum(item_units(it.pixels) for it in items), 0.0)

    def _sender(self, link: _Link) -> None:
        while True:
            job = link.sendq.get()
            if job is None:
                return
            frame_id, items, submitted = job
            client = link.client
            if self.policy.enabled and (not link.up or client is None):  # went down after the items were queued
                with link.lock:
                    self._settle(link, items)
                self._lost(link, frame_id, items)
                continue
            try:
                req = client.request(frame_id, [(it.item_id, it.crop) for it in items], self.time_scale)
            except Exception as e:
                with link.lock:
                    self._settle(link, items)
                self._fatal(link, f"cannot encode frame {frame_id}: {e}")
                continue
            sent = self.now()
            timeout = self.call_timeout(link)
            try:
                fut = client.detect_future(req, timeout=timeout)
            except Exception as e:  # the channel was closed under us (node restarted or closing)
                with link.lock:
                    self._settle(link, items)
                if not self._closed:
                    self._lost(link, frame_id, items)
                continue
            with link.lock:
                link.calls.add(fut)
            if len(items) == 1:  # a lone item's call can be cancelled once another copy wins
                with self._calls_lock:
                    self._calls.setdefault((frame_id, items[0].item_id), {})[link.index] = fut
            fut.add_done_callback(lambda f, link=link, client=client, frame_id=frame_id, items=items, submitted=submitted,
                                  sent=sent, timeout=timeout: self._on_reply(f, link, client, frame_id, items, submitted,
                                                                             sent, timeout))

    def _on_reply(self, fut, link: _Link, client: EdgeClient, frame_id: int, items: list[WorkItem], submitted: float,
                  sent: float, timeout: float = 0.0) -> None:
        received = self.now()
        if len(items) == 1:
            with self._calls_lock:
                calls = self._calls.get((frame_id, items[0].item_id))
                if calls is not None and calls.get(link.index) is fut:
                    del calls[link.index]
                    if not calls:
                        del self._calls[(frame_id, items[0].item_id)]
        try:
            reply = fut.result()
        except Exception as e:  # grpc.RpcError, or cancellation (node marked down, a copy won, or close)
            with link.lock:
                self._settle(link, items)
                link.calls.discard(fut)
            if self._closed:
                return
            code = e.code() if isinstance(e, grpc.RpcError) else grpc.StatusCode.CANCELLED
            detail = e.details() if isinstance(e, grpc.RpcError) else "cancelled"
            why = f"Detect for frame {frame_id} failed: {code.name}: {detail}"
            if not self.policy.enabled or code in FATAL:
                self._fatal(link, why)
                return
            # Our own cancels (a copy won, the node was marked down) and a stale client's calls say
            # nothing about the node now.
            if code in NODE_LOST and not fut.cancelled() and client is link.client:
                if code == grpc.StatusCode.DEADLINE_EXCEEDED and link.up:
                    self.faults.count("watchdog")
                    why = f"{self.watchdog_reason(link, timeout)} (frame {frame_id})"
                self._mark_down(link, why)
            self._lost(link, frame_id, items, why)
            return
        results = outcomes(reply, received)
        done = []
        with link.lock:
            link.calls.discard(fut)
            for r in results:
                link.busy_s += r.service_s
                link.compute_s += r.compute_s
                link.overruns += int(r.overrun)
            link.items += len(results)
            self._settle(link, items)
            link.speed = reply.speed or link.speed
            link.overhead_s.append(max((received - sent) - server_time_s(reply), 0.0))
        losers = []
        if self.policy.enabled:  # a reply far slower than expected for its size is evidence too
            unit_s, size = link.expected_s(), {it.item_id: item_units(it.pixels) for it in items}
            for r in results:
                self.slowness.observe(link.index, received, r.service_s / (size.get(r.item_id, 1.0) * unit_s), unit_s)
        for r in results:
            verdict = self.tracker.resolve((frame_id, r.item_id), link.index, ok=True)
            if verdict == "duplicate":
                self.faults.count("duplicates")
            elif verdict in ("first", "unknown"):
                done.append(Completion(frame_id, r.item_id, link.index, r.detections, submitted, r.started, r.finished))
                if verdict == "first" and (f := self.tracker.get((frame_id, r.item_id))) is not None and f.live:
                    losers.append((frame_id, r.item_id))
        if done:
            self._done.put(done)
        for key in losers:  # first result wins: the other copies leave their nodes' queues
            with self._calls_lock:
                futs = list(self._calls.get(key, {}).values())
            for other in futs:
                other.cancel()

    def _fatal(self, link: _Link, why: str) -> None:
        self._done.put(WorkerError(f"edge node '{link.node.name}' ({link.target}): {why}"))

    # ----- failures: down, re-dispatch, hedge, re-admit, restart -------------------------------

    def _lost(self, link: _Link, frame_id: int, items: list[WorkItem], why: str = "node down") -> None:
        """Copies of ``items`` on ``link`` will not come back: re-dispatch those left without a copy."""
        for it in items:
            if self.tracker.resolve((frame_id, it.item_id), link.index, ok=False) == "lost":
                f = self.tracker.get((frame_id, it.item_id))
                if f is not None:
                    self._redispatch(f, why)

    def _redispatch(self, f: Flight, why: str, hedge: bool = False) -> bool:
        """Send one more copy of ``f`` to the best up node without one (a node not tried before if
        possible). Parks it when no node can take it; fails the run after ``max_attempts`` copies."""
        if len(f.tried) >= self.policy.max_attempts:
            self._done.put(WorkerError(f"item {f.item.item_id} of frame {f.frame_id} was sent {len(f.tried)} times "
                                       f"(nodes {', '.join(self._links[i].node.name for i in f.tried)}) and never "
                                       f"came back; last: {why}"))
            return False
        states = self._states()
        node = pick_node(states, exclude=f.live | set(f.tried))
        if node is None and not hedge:
            node = pick_node(states, exclude=f.live)  # a node tried before that is up again
        if node is None:
            if not hedge:
                self._parked.setdefault(f.key, self.now())
            return False
        self._parked.pop(f.key, None)
        link = self._links[node]
        t = self.now()
        self.tracker.copy_sent(f.key, node, self.policy.deadline(t, link.pending_units + item_units(f.item.pixels),
                                                                 link.expected_s()))
        self.faults.count("hedged" if hedge else "redispatched")
        self._send(link, f.frame_id, [f.item], f.submitted)
        return True

    def _mark_down(self, link: _Link, why: str) -> None:
        with link.lock:
            if not link.up:
                return
            link.up = False
            link.down_since = self.now()
            link.down_events += 1
            calls = list(link.calls)
        self.faults.count("nodes_down")
        self.faults.event(self.now() - self._t0, link.node.name, "down", why)
        log.warning("edge node '%s' is down (%s): re-dispatching its items", link.node.name, why)
        for fut in calls:  # their callbacks re-dispatch the items
            fut.cancel()

    def _readmit(self, link: _Link) -> None:
        if not self.answers_detect(link):  # health can say SERVING while the device is held
            return
        try:
            st = link.client.status(timeout=self.probe_timeout_s)
            speed = st.speed
        except Exception:  # answered health, not Status: try again next round
            return
        with link.lock:
            if self.emulate and link.proc is not None and link.status.get("profile_tile_ms"):
                speed = 1000.0 / (link.status["profile_tile_ms"] * self.time_scale)  # a fresh worker assumed scale 1
            link.speed = speed or link.speed
            link.base_speed = max(link.base_speed, link.speed)
            link.probe_failures = 0
            link.up = True
        self.faults.count("readmitted")
        self.faults.event(self.now() - self._t0, link.node.name, "up", "health check passed")
        log.warning("edge node '%s' passed its health check: re-admitted", link.node.name)

    def _supervise(self) -> None:
        """Every 50 ms: hedge overdue items, retry parked ones; every ``probe_s``: check each node."""
        next_probe = 0.0
        while not self._stop.wait(0.05):
            try:
                now = self.now()
                self.probe_late_nodes(now)  # before hedging moves the overdue items' deadlines on
                if self.policy.hedge:
                    for f in self.tracker.overdue(now):
                        for i in list(f.live):  # missed a deadline: slower than the schedulers think
                            self.slowness.observe(i, now, self.policy.deadline_k, self._links[i].expected_s())
                        if not self._redispatch(f, "overdue", hedge=True):  # no other node: look again later
                            self.tracker.postpone(f.key, now + self.policy.deadline_slack_s + 0.05)
                for key, since in list(self._parked.items()):
                    f = self.tracker.get(key)
                    if f is None or f.done or f.live:
                        self._parked.pop(key, None)
                    elif self._redispatch(f, "no node was up"):
                        pass
                    elif now - since > self.all_down_timeout_s:
                        self._done.put(WorkerError(f"item {key[1]} of frame {key[0]}: no edge node up for "
                                                   f"{self.all_down_timeout_s:.0f} s"))
                        self._parked.pop(key, None)
                if now >= next_probe:
                    next_probe = now + self.probe_s
                    for link in self._links:
                        self._check_node(link)
            except Exception:  # the supervisor must never die silently
                log.exception("live supervisor")

    def _check_node(self, link: _Link) -> None:
        proc = link.proc
        if proc is not None and proc.proc is not None and not proc.alive():
            if link.up:
                self._mark_down(link, f"worker process exited (code {proc.proc.returncode})")
            if self.restart and link.restarts < self.max_restarts:
                link.restarts += 1
                self.faults.count("restarts")
                self.faults.event(self.now() - self._t0, link.node.name, "restart", f"restart {link.restarts}")
                log.warning("restarting the worker of edge node '%s' (%d/%d)", link.node.name, link.restarts,
                            self.max_restarts)
                old, link.client = link.client, None
                if old is not None:
                    old.close()
                proc.spawn()
            return
        if link.client is None:
            if proc is not None and (port := proc.port()):
                self._connect(link, self.bind, port)
            return
        if link.probing:
            return
        link.probing = True
        client = link.client
        fut = client.serving_future(timeout=self.probe_timeout_s)
        fut.add_done_callback(lambda f, link=link, client=client: self._on_probe(f, link, client))

    def _on_probe(self, fut, link: _Link, client: EdgeClient) -> None:
        from grpc_health.v1 import health_pb2

        link.probing = False
        if self._closed or client is not link.client:
            return
        try:
            ok = fut.result().status == health_pb2.HealthCheckResponse.SERVING
        except Exception:
            ok = False
        if ok:
            link.probe_failures = 0
            if not link.up:
                start_readmit(link, self._readmit)
            return
        link.probe_failures += 1
        if link.up and link.probe_failures >= self.fail_after:
            self._mark_down(link, f"health check failed {link.probe_failures} times")

    def _chaos(self, frame_id: int) -> None:
        """Fault injection: signal a local worker right after frame ``frame_id`` went out."""
        for c in self.chaos:
            if c["frame"] != frame_id:
                continue
            link = next(l for l in self._links if l.node.name == c["node"])
            if link.proc is None or not link.proc.pid:
                log.warning("chaos: node '%s' has no local worker to %s", c["node"], c["action"])
                continue
            self.faults.event(self.now() - self._t0, link.node.name, f"chaos-{c['action']}", f"frame {frame_id}")
            log.warning("chaos: %s the worker of '%s' (pid %d) at frame %d", c["action"], c["node"], link.proc.pid, frame_id)
            try:
                os.kill(link.proc.pid, CHAOS_ACTIONS[c["action"]])
            except ProcessLookupError:
                pass

    # ----- results and shutdown ----------------------------------------------------------------

    def describe(self) -> dict:
        """How the run's times were produced (results.json ``runner``): emulated or not, and the scale."""
        local = sum(l.proc is not None for l in self._links)
        overruns = sum(l.overruns for l in self._links)
        items = sum(l.items for l in self._links)
        emulation = emulation_report(self._links, self.emulate, self.time_scale)
        return {"name": "live", "clock": "wall", "emulated": emulation["emulated"],
                "emulated_nodes": emulation["emulated_nodes"], "time_scale": emulation["time_scale"],
                "time_scale_source": "auto" if self.time_scale_cfg == "auto" else "config",
                "overrun_fraction": overruns / items if items else 0.0, "encoding": self.encoding,
                "jpeg_quality": self.quality if self.encoding == "jpeg" else None,
                "workers": {"local_processes": local, "external": len(self._links) - local},
                "failover": {**asdict(self.policy), "probe_s": self.probe_s, "fail_after": self.fail_after,
                             "restart": self.restart, "watchdog_k": self.watchdog_k,
                             "watchdog_slack_s": self.watchdog_slack_s, **self.faults.summary()},
                "security": {**self.security.describe(),  # + the nodes that answered without our token, if any
                             **({"token_not_checked_by": list(self._open_nodes)} if self._open_nodes else {})},
                "note": emulation["note"]}

    def stats(self) -> list[dict]:
        out = []
        for l in self._links:
            ov = np.asarray(l.overhead_s) * 1000
            paced = node_emulated(l, self.emulate)
            out.append({"name": l.node.name, "model": l.node.model, "device": l.node.device, "items": l.items,
                        "busy_s": l.busy_s, "compute_s": l.compute_s, "emulated": paced,
                        "time_scale": self.time_scale if paced else 1.0, "overruns": l.overruns,
                        "overrun_fraction": l.overruns / l.items if l.items else 0.0,
                        "rpc_overhead_ms_p50": float(np.median(ov)) if len(ov) else None,
                        "worker": "local" if l.proc is not None else l.target,
                        "up": l.up, "down_events": l.down_events, "restarts": l.restarts,
                        "real_tile_ms": l.status.get("compute_tile_ms"), "profile_tile_ms": l.status.get("profile_tile_ms")})
        return out

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._supervisor is not None and self._supervisor is not threading.current_thread():
            self._supervisor.join(timeout=2.0)
        for l in self._links:
            if l.sendq is not None:
                l.sendq.put(None)
        for l in self._links:
            if l.client is not None:
                l.client.close()  # cancels calls still in flight
        for l in self._links:
            if l.proc is not None:
                l.proc.stop()
        if self._launcher is not None:
            self._launcher.close()  # stops the remote workers it started, fetches their logs
        if self._old_sigterm is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._old_sigterm)
            self._old_sigterm = None
        if self.emulate and any(l.items for l in self._links):
            frac = self.describe()["overrun_fraction"]
            if frac > 0.05:
                log.warning("%.0f%% of tiles ran slower than their emulated device (overruns): raise "
                            "runner.backend.time_scale above %.2f for a faithful emulation", 100 * frac, self.time_scale)

    def pids(self) -> list[int]:
        """Process ids of the local workers (for checks that none survives)."""
        return [l.proc.pid for l in self._links if l.proc is not None and l.proc.pid]


def _remote(node: Node) -> bool:
    return "ssh" in node.extra


def _check_chaos(chaos: list | None, names: list[str]) -> list[dict]:
    """``chaos: [{node, frame, action}]`` (action: kill | stop | cont), checked against the topology."""
    out = []
    for i, c in enumerate(list(chaos or [])):
        c = dict(c) if isinstance(c, dict) else c
        check(isinstance(c, dict) and set(c) == {"node", "frame", "action"},
              f"runner.backend.chaos[{i}] needs exactly node, frame, action: {c}")
        check(c["node"] in names, f"runner.backend.chaos[{i}] names node '{c['node']}', not in the topology "
                                  f"(nodes: {', '.join(names)})")
        check(isinstance(c["frame"], int) and not isinstance(c["frame"], bool) and c["frame"] >= 0,
              f"runner.backend.chaos[{i}].frame must be an integer >= 0, got {c['frame']!r}")
        check(c["action"] in CHAOS_ACTIONS, f"runner.backend.chaos[{i}].action must be one of "
                                            f"{sorted(CHAOS_ACTIONS)}, got {c['action']!r}")
        out.append(c)
    return out


def node_index(topology: Topology, node: Node) -> int:
    return next(i for i, n in enumerate(topology) if n is node)


def _status_dict(s) -> dict:
    return {"speed": s.speed, "compute_tile_ms": s.compute_tile_ms, "profile_tile_ms": s.profile_tile_ms,
            "model": s.model, "device": s.device, "emulated": s.emulated, "pid": s.pid}


def _close_at_exit(backend: LiveBackend) -> None:
    """Close the backend at interpreter exit if nobody did (a weak reference: no leak)."""
    import atexit

    ref = weakref.ref(backend)

    def close() -> None:
        b = ref()
        if b is not None:
            b.close()

    atexit.register(close)
