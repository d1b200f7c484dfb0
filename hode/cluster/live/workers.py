"""The live runner's worker processes: spawn the local ones (or deploy remote ones, or use workers
already running at host/port), connect, wait until they serve, restart a dead one, and inject
faults into them (``chaos``: SIGKILL/SIGSTOP/SIGCONT a local worker when a frame goes out)."""
from __future__ import annotations

import logging
import os
import signal
import tempfile
import time
from pathlib import Path
from typing import Callable, Sequence

from omegaconf import DictConfig, OmegaConf

from hode.cluster.live.links import Link, status_dict
from hode.cluster.live.settings import EmulationSettings, TransportSettings, WorkerSettings
from hode.cluster.live_checks import wait_connected, warn_ignored_token
from hode.profiles import profile_from_dict
from hode.cluster.topology import Node, Topology
from hode.detect.factory import detector_config
from hode.edge.client import EdgeClient
from hode.edge.pacing import read_profile
from hode.edge.process import WorkerError, WorkerProcess
from hode.edge.security import EdgeSecurity
from hode.edge.server import WorkerSpec, address
from hode.errors import ConfigError, WeightsError, check

log = logging.getLogger(__name__)

CHAOS_ACTIONS = {"kill": signal.SIGKILL, "stop": signal.SIGSTOP, "cont": signal.SIGCONT}


class Workers:
    """The workers of every node of ``links``; ``time_scale`` is the pace they run at (resolved
    once they report their real speed when ``emulation.time_scale`` is auto)."""

    def __init__(self, links: list[Link], topology: Topology, detector: DictConfig | None,
                 settings: WorkerSettings, emulation: EmulationSettings, transport: TransportSettings,
                 security: EdgeSecurity, load_trace: list, chaos: list[dict], profiles_dir: str | None,
                 batched_inference: bool) -> None:
        self.links, self.topology, self.detector_cfg = links, topology, detector
        self.settings, self.emulation, self.transport, self.security = settings, emulation, transport, security
        self.load_trace, self.chaos = load_trace, chaos
        self.profiles_dir, self.batched_inference = profiles_dir, batched_inference
        self.time_scale = float(emulation.time_scale) if emulation.time_scale != "auto" else 1.0
        self.launcher = None  # remote.launcher.Launcher for nodes with an ``ssh`` section (remote hosts)
        self.open_nodes: list[str] = []  # nodes that answered without our token (they check none)
        self._log_dir = Path(settings.log_dir) if settings.log_dir else None
        self.specs = [self._spec(link.node) for link in links if link.node.host is None and not remote(link.node)]

    # ----- start-up ----------------------------------------------------------------------------

    def _spec(self, node: Node) -> WorkerSpec:
        """What a local worker for ``node`` runs (profile and model checked now, not in the child)."""
        det = detector_config(node.model, self.detector_cfg)
        det = OmegaConf.to_container(det, resolve=True) if isinstance(det, DictConfig) else dict(det)
        weights = det.get("weights")
        if isinstance(weights, str) and not Path(weights).is_file():  # fail before five processes start
            raise WeightsError(f"topology node '{node.name}' ({node.model}): detector weights not found: {weights}")
        profile = None
        emulate = self.emulation.enabled
        if emulate:
            profile = read_profile(node.device, self.profiles_dir)
            profile_from_dict(profile, f"device profile '{node.device}'").timing(node.model)
        s, sec = self.settings, self.security
        return WorkerSpec(node=node.name, detector=det, device_kind=node.device, emulate=emulate, profile=profile,
                          time_scale=self.time_scale, batched_inference=self.batched_inference,
                          load_trace=list(self.load_trace), host=s.bind, port=0,
                          max_message_mb=self.transport.max_message_mb, torch_threads=s.torch_threads,
                          seed=s.seed + node_index(self.topology, node), token_env=sec.token_env,
                          token_file=sec.token_file, tls_cert=sec.tls_cert, tls_key=sec.tls_key,
                          tls_key_passphrase_env=sec.tls_key_passphrase_env, insecure=s.insecure)

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
        """Spawn, deploy or connect every node's worker, wait until all serve, read their Status."""
        remote_at = self._deploy_remote()
        specs = iter(self.specs)
        for link in self.links:  # spawn every local worker first: they load in parallel
            if link.node.name in remote_at:
                self.connect(link, *remote_at[link.node.name])
            elif link.node.host is None:
                link.proc = WorkerProcess(next(specs), self.log_dir(), self.settings.torch_threads)
                link.proc.spawn()
            else:
                check(link.node.port is not None, f"topology node '{link.node.name}' has a host but no port")
                self.connect(link, link.node.host, int(link.node.port))
        deadline = time.monotonic() + self.settings.start_timeout_s
        for link in self.links:
            if link.proc is None:  # a closed port fails in seconds, not after start_timeout_s
                wait_connected(link.node.name, link.target, link.client.channel, self.transport.connect_timeout_s)
            self._wait_serving(link, deadline)
            link.status = status_dict(link.client.status())
            link.load.speed = link.status["speed"]
        self.open_nodes = warn_ignored_token(self.links, self.security, self.transport.max_message_mb)
        self._resolve_time_scale()

    def _deploy_remote(self) -> dict[str, tuple[str, int]]:
        """Workers of nodes with an ``ssh`` section, deployed by the remote launcher (``remote/``):
        ``{node: (address, port)}``; ``close()`` tears down the ones it started."""
        if not any(remote(link.node) for link in self.links):
            return {}
        from remote.launcher import Launcher

        self.launcher = Launcher(self.topology, detector=self.detector_cfg, log_dir=self.log_dir(),
                                 worker_defaults={"max_message_mb": self.transport.max_message_mb,
                                                  "seed": self.settings.seed, "load_trace": list(self.load_trace)},
                                 client_security=self.security)
        triton = [w.name for w in self.launcher.workers if w.triton]
        if triton:  # a Triton server speaks KServe, not the edge worker's protocol
            raise ConfigError(f"topology node(s) {', '.join(triton)} have ssh.serve: triton: deploy them with "
                              "`python -m remote deploy` and run runner=triton with their url, not runner=live")
        return self.launcher.deploy()

    def connect(self, link: Link, host: str, port: int) -> None:
        t = self.transport
        link.target = address(host, port)
        link.client = EdgeClient(link.target, t.max_message_mb, t.encoding, t.jpeg_quality, self.security)

    def _wait_serving(self, link: Link, deadline: float) -> None:
        name = link.node.name
        while True:
            if link.proc is not None and not link.proc.alive():
                raise WorkerError(f"edge worker '{name}' exited during start-up (code {link.proc.proc.returncode}): "
                                  f"{link.proc.log_tail() or 'no output'} (log: {link.proc.log_path})")
            if link.client is None and link.proc is not None and (port := link.proc.port()):
                self.connect(link, self.settings.bind, port)
            if link.client is not None and link.client.serving(timeout=1.0):
                return
            if time.monotonic() > deadline:
                where = f"log: {link.proc.log_path}" if link.proc else f"at {link.target}"
                raise WorkerError(f"edge worker '{name}' not serving after {self.settings.start_timeout_s:.0f} s "
                                  f"({where})")
            time.sleep(0.2)

    def _resolve_time_scale(self) -> None:
        """``time_scale: auto``: the smallest scale at which every emulated node's real inference fits
        its paced time, with all local workers sharing this machine's cores, times ``auto_margin``."""
        if not self.emulation.enabled or self.emulation.time_scale != "auto":
            return
        local = [l for l in self.links if l.proc is not None and l.status.get("profile_tile_ms", 0) > 0]
        if not local:
            return
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        contention = max(1.0, len(local) * max(self.settings.torch_threads, 1) / cores)
        need = max(l.status["compute_tile_ms"] / l.status["profile_tile_ms"] for l in local)
        self.time_scale = max(1.0, round(need * contention * self.emulation.auto_margin, 2))
        for l in local:  # the workers' first speed guess assumed scale 1
            l.load.speed = 1000.0 / (l.status["profile_tile_ms"] * self.time_scale)
        log.info("time_scale auto: %.2f (slowest real/profile tile ratio %.2f, %d workers on %d cores, margin %.2f)",
                 self.time_scale, need, len(local), cores, self.emulation.auto_margin)

    # ----- while running -----------------------------------------------------------------------

    def respawn(self, link: Link) -> None:
        """Start ``link``'s dead local worker again; its client is reconnected once it has a port."""
        old, link.client = link.client, None
        if old is not None:
            old.close()
        link.proc.spawn()

    def reconnect(self, link: Link) -> None:
        """Connect to a respawned local worker once it reports its port."""
        if link.proc is not None and (port := link.proc.port()):
            self.connect(link, self.settings.bind, port)

    def check_alive(self) -> None:
        """Without failover: a local worker that died holding items fails the run."""
        for l in self.links:
            if l.proc is not None and not l.proc.alive() and l.load.outstanding:
                l.up = False
                raise WorkerError(f"edge worker '{l.node.name}' died (code {l.proc.proc.returncode}) with "
                                  f"{l.load.outstanding} items outstanding: {l.proc.log_tail()} "
                                  f"(log: {l.proc.log_path})")

    def inject(self, frame_id: int, event: Callable[[str, str, str], None]) -> None:
        """Fault injection: signal a local worker right after frame ``frame_id`` went out;
        ``event(node, kind, detail)`` records it."""
        for c in self.chaos:
            if c["frame"] != frame_id:
                continue
            link = next(l for l in self.links if l.node.name == c["node"])
            if link.proc is None or not link.proc.pid:
                log.warning("chaos: node '%s' has no local worker to %s", c["node"], c["action"])
                continue
            event(link.node.name, f"chaos-{c['action']}", f"frame {frame_id}")
            log.warning("chaos: %s the worker of '%s' (pid %d) at frame %d", c["action"], c["node"], link.proc.pid, frame_id)
            try:
                os.kill(link.proc.pid, CHAOS_ACTIONS[c["action"]])
            except ProcessLookupError:
                pass

    def close(self) -> None:
        for l in self.links:
            if l.client is not None:
                l.client.close()  # cancels calls still in flight
        for l in self.links:
            if l.proc is not None:
                l.proc.stop()
        if self.launcher is not None:
            self.launcher.close()  # stops the remote workers it started, fetches their logs

    def pids(self) -> list[int]:
        return [l.proc.pid for l in self.links if l.proc is not None and l.proc.pid]


def remote(node: Node) -> bool:
    return "ssh" in node.extra


def check_chaos(chaos: list | None, names: Sequence[str]) -> list[dict]:
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
