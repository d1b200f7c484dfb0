"""``runner=live``: every topology node is a real gRPC edge worker.

Nodes without a ``host`` get a local worker process each (127.0.0.1, a free port), emulating
their device kind's speed by pacing (:mod:`hode.edge.pacing`); nodes with ``host``/``port`` are
workers that already run somewhere (started by hand or by the remote launcher), used as they are.

Work goes out asynchronously: one sender thread per node encodes the tiles and issues Detect
calls as gRPC futures, so all nodes run in parallel and up to ``runner.in_flight`` frames can be
queued on the workers; replies land in one completion queue that :meth:`poll` drains. Times are
the wall clock of this process. Node state (queue, speed) is what the workers measured.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from omegaconf import DictConfig, OmegaConf

from hode.cluster.profiles import LoadTrace, profile_from_dict
from hode.cluster.topology import Node, Topology
from hode.detect.factory import detector_config
from hode.edge.client import EdgeClient, outcomes, server_time_s
from hode.edge.codec import check_encoding
from hode.edge.pacing import read_profile
from hode.edge.process import WorkerError, WorkerProcess
from hode.edge.server import WorkerSpec, address
from hode.errors import ConfigError, WeightsError, check
from hode.types import Completion, NodeState, WorkItem

log = logging.getLogger(__name__)


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
    speed: float = 0.0
    items: int = 0
    busy_s: float = 0.0
    compute_s: float = 0.0
    overruns: int = 0
    overhead_s: list[float] = field(default_factory=list)  # round trip minus time inside the worker
    status: dict = field(default_factory=dict)  # the worker's Status at start-up
    lock: threading.Lock = field(default_factory=threading.Lock)


class LiveBackend:
    def __init__(self, topology: Topology, detector: DictConfig | None = None, emulate: bool = True,
                 time_scale: float | str = "auto", auto_margin: float = 1.5, load_trace: list | None = None,
                 encoding: str = "jpeg", jpeg_quality: int = 90, batch: int = 1, bind: str = "127.0.0.1",
                 start_timeout_s: float = 180.0, rpc_timeout_s: float = 600.0, max_message_mb: int = 64,
                 torch_threads: int = 1, profiles_dir: str | None = None, log_dir: str | None = None,
                 seed: int = 0) -> None:
        check_encoding(encoding, jpeg_quality)
        check(time_scale == "auto" or (isinstance(time_scale, (int, float)) and time_scale > 0),
              f"runner.backend.time_scale must be 'auto' or a number > 0, got {time_scale!r}")
        check(isinstance(auto_margin, (int, float)) and auto_margin >= 1,
              f"runner.backend.auto_margin must be >= 1, got {auto_margin!r}")
        check(isinstance(batch, int) and batch >= 0, f"runner.backend.batch must be an integer >= 0 (0: one request "
              f"per frame and node), got {batch!r}")
        check(start_timeout_s > 0 and rpc_timeout_s > 0, "runner.backend timeouts must be > 0")
        self.topology, self.emulate, self.auto_margin = topology, bool(emulate), float(auto_margin)
        self.time_scale_cfg = time_scale
        self.time_scale = float(time_scale) if time_scale != "auto" else 1.0
        self.trace = LoadTrace(list(load_trace or []))  # validated here; the workers apply it
        self.trace.check_nodes([n.name for n in topology])
        self.encoding, self.quality, self.batch, self.bind = encoding, jpeg_quality, batch, bind
        self.start_timeout_s, self.rpc_timeout_s, self.max_message_mb = start_timeout_s, rpc_timeout_s, max_message_mb
        self.torch_threads, self.profiles_dir, self.seed = torch_threads, profiles_dir, seed
        self._detector_cfg = detector
        self._log_dir = Path(log_dir) if log_dir else None
        self._links = [_Link(i, n) for i, n in enumerate(topology)]
        self._done: queue.Queue = queue.Queue()
        self._started = self._closed = False
        self._old_sigterm = None
        self._launcher = None  # remote.launcher.Launcher for nodes with an ``ssh`` section (remote hosts)
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
                          time_scale=self.time_scale, load_trace=list(self.trace.events), host=self.bind, port=0,
                          max_message_mb=self.max_message_mb, torch_threads=self.torch_threads,
                          seed=self.seed + node_index(self.topology, node))

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
                self._wait_serving(link, deadline)
                link.status = _status_dict(link.client.status())
                link.speed = link.status["speed"]
            self._resolve_time_scale()
            for link in self._links:
                link.sendq = queue.Queue()
                link.thread = threading.Thread(target=self._sender, args=(link,), name=f"send-{link.node.name}", daemon=True)
                link.thread.start()
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
                                                   "load_trace": list(self.trace.events)})
        return self._launcher.deploy()

    def _connect(self, link: _Link, host: str, port: int) -> None:
        link.target = address(host, port)
        link.client = EdgeClient(link.target, self.max_message_mb, self.encoding, self.quality)

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

    def states(self) -> list[NodeState]:
        return [NodeState(l.node.name, l.node.model, l.node.rank, queue=l.outstanding, speed=l.speed or 1.0, up=l.up)
                for l in self._links]

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
            size = self.batch or len(its)
            with link.lock:
                link.outstanding += len(its)
            for k in range(0, len(its), size):
                link.sendq.put((frame_id, its[k:k + size], t))

    def poll(self, timeout: float | None = None) -> list[Completion]:
        """Finished items; waits up to ``timeout`` s for the first one. A failed node raises."""
        out: list[Completion] = []
        try:
            got = self._done.get(timeout=timeout) if timeout is None or timeout > 0 else self._done.get_nowait()
        except queue.Empty:
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

    def _check_alive(self) -> None:
        for l in self._links:
            if l.proc is not None and not l.proc.alive() and l.outstanding:
                l.up = False
                raise WorkerError(f"edge worker '{l.node.name}' died (code {l.proc.proc.returncode}) with "
                                  f"{l.outstanding} items outstanding: {l.proc.log_tail()} (log: {l.proc.log_path})")

    # ----- sending and receiving ---------------------------------------------------------------

    def _sender(self, link: _Link) -> None:
        while True:
            job = link.sendq.get()
            if job is None:
                return
            frame_id, items, submitted = job
            try:
                req = link.client.request(frame_id, [(it.item_id, it.crop) for it in items], self.time_scale)
            except Exception as e:
                self._fail(link, f"cannot encode frame {frame_id}: {e}")
                continue
            sent = self.now()
            fut = link.client.detect_future(req, timeout=self.rpc_timeout_s)
            fut.add_done_callback(lambda f, link=link, frame_id=frame_id, items=items, submitted=submitted, sent=sent:
                                  self._on_reply(f, link, frame_id, items, submitted, sent))

    def _on_reply(self, fut, link: _Link, frame_id: int, items: list[WorkItem], submitted: float, sent: float) -> None:
        received = self.now()
        try:
            reply = fut.result()
        except Exception as e:  # grpc.RpcError (or cancellation at close)
            if not self._closed:
                code = getattr(e, "code", lambda: None)()
                detail = getattr(e, "details", lambda: str(e))()
                self._fail(link, f"Detect for frame {frame_id} failed: {code.name if code else type(e).__name__}: {detail}")
            return
        results = outcomes(reply, received)
        done = []
        with link.lock:
            for r in results:
                done.append(Completion(frame_id, r.item_id, link.index, r.detections, submitted, r.started, r.finished))
                link.busy_s += r.service_s
                link.compute_s += r.compute_s
                link.overruns += int(r.overrun)
            link.items += len(results)
            link.outstanding -= len(results)
            link.speed = reply.speed or link.speed
            link.overhead_s.append(max((received - sent) - server_time_s(reply), 0.0))
        self._done.put(done)

    def _fail(self, link: _Link, why: str) -> None:
        link.up = False
        self._done.put(WorkerError(f"edge node '{link.node.name}' ({link.target}): {why}"))

    # ----- results and shutdown ----------------------------------------------------------------

    def describe(self) -> dict:
        """How the run's times were produced (results.json ``runner``): emulated or not, and the scale."""
        local = sum(l.proc is not None for l in self._links)
        overruns = sum(l.overruns for l in self._links)
        items = sum(l.items for l in self._links)
        return {"name": "live", "clock": "wall", "emulated": self.emulate, "time_scale": self.time_scale if self.emulate else 1.0,
                "time_scale_source": "auto" if self.time_scale_cfg == "auto" else "config",
                "overrun_fraction": overruns / items if items else 0.0, "encoding": self.encoding,
                "jpeg_quality": self.quality if self.encoding == "jpeg" else None,
                "workers": {"local_processes": local, "external": len(self._links) - local},
                "note": ("device speeds emulated on one machine: each tile's service time is paced to its node's "
                         "device profile times time_scale (wall s per device s); camera-side work and transport "
                         "are not scaled" if self.emulate else "real worker speeds, not emulated")}

    def stats(self) -> list[dict]:
        out = []
        for l in self._links:
            ov = np.asarray(l.overhead_s) * 1000
            out.append({"name": l.node.name, "model": l.node.model, "device": l.node.device, "items": l.items,
                        "busy_s": l.busy_s, "compute_s": l.compute_s, "emulated": self.emulate,
                        "time_scale": self.time_scale if self.emulate else 1.0, "overruns": l.overruns,
                        "overrun_fraction": l.overruns / l.items if l.items else 0.0,
                        "rpc_overhead_ms_p50": float(np.median(ov)) if len(ov) else None,
                        "worker": "local" if l.proc is not None else l.target,
                        "real_tile_ms": l.status.get("compute_tile_ms"), "profile_tile_ms": l.status.get("profile_tile_ms")})
        return out

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
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
