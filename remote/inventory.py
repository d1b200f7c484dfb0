"""The host inventory: the ``ssh`` section of a topology node, validated into plain dataclasses.

A topology node that has an ``ssh`` section runs on a remote host (see ``conf/topology/lab_gtx_jetson.yaml``)::

    - name: gtx1070
      model: yolov5s          # detector option the worker runs
      device: gtx1070         # timing-profile key, as for every node
      port: 50051             # the worker's gRPC port on the host
      ssh: {host: 192.168.1.20, user: hode, key_file: ~/.ssh/hode_ed25519, torch_device: "cuda:0"}

Secrets never live in a config: a key *path* (or the SSH agent) authenticates, and any
password-like key is refused here, before anything connects.
"""
from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from typing import Any

from hode.cluster.topology import Node, Topology
from hode.edge.server import WorkerSpec as EdgeWorkerSpec
from hode.errors import ConfigError, check

DEFAULT_WORKER_PORT = 50051

# Connection and installation: one set per SSH target (shared by every node on that host).
HOST_KEYS = {"host", "port", "user", "key_file", "known_hosts", "trust_on_first_use", "python", "venv",
             "work_dir", "connect_timeout"}
# The worker process of one node.
WORKER_KEYS = {"torch_device", "env", "listen", "tunnel", "start_timeout", "worker", "serve", "insecure"}
# What a node's host process is: the project's gRPC edge worker, or a Triton server serving its model.
SERVES = ("worker", "triton")
# ssh.worker keys a Triton node takes (the rest are edge-worker settings it has no use for).
TRITON_WORKER_KEYS = {"torch_threads"}
# WorkerSpec fields the launcher itself sets (hode.edge.server.WorkerSpec); the rest may go in ssh.worker.
LAUNCHER_SETS = {"node", "detector", "host", "port", "port_file", "parent_pid"}
SECRET_WORDS = re.compile(r"(password|passwd|passphrase|secret|token|api_?key)", re.I)
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class HostSpec:
    """How to reach and prepare one SSH target."""

    host: str
    port: int = 22
    user: str | None = None  # None: the local user name, as ssh does
    key_file: str | None = None  # None: the SSH agent and ~/.ssh default keys
    known_hosts: str = "~/.ssh/known_hosts"
    trust_on_first_use: bool = False
    python: str = "python3"  # interpreter on the host (creates the venv, or runs the worker if venv: false)
    venv: bool = True  # per-project venv with --system-site-packages (reuses e.g. JetPack's torch)
    work_dir: str = "~/hode-edge"
    connect_timeout: float = 10.0

    @property
    def label(self) -> str:
        return f"{self.user + '@' if self.user else ''}{self.host}:{self.port}"

    @property
    def known_hosts_path(self) -> str:
        return os.path.expanduser(self.known_hosts)

    @property
    def key_path(self) -> str | None:
        return os.path.expanduser(self.key_file) if self.key_file else None


@dataclass
class WorkerSpec:
    """One edge worker: a topology node placed on a host."""

    name: str
    model: str
    port: int  # gRPC port on the host
    host: HostSpec
    torch_device: str | None = None  # "cuda:0", "cpu"; None: the detector option's own default
    env: dict[str, str] = field(default_factory=dict)
    listen: str | None = None  # address the worker binds on the host; None: 127.0.0.1 if tunnel else 0.0.0.0
    tunnel: bool = False  # reach the worker through the SSH connection instead of directly
    start_timeout: float = 180.0  # seconds until its gRPC health check must answer SERVING
    worker: dict[str, Any] = field(default_factory=dict)  # extra hode.edge.server.WorkerSpec fields
    serve: str = "worker"  # "triton": a Triton server (hode.cluster.triton.serve) instead of the edge worker
    insecure: bool = False  # triton: accept listening beyond loopback (Triton has no token of ours)

    @property
    def triton(self) -> bool:
        return self.serve == "triton"

    @property
    def bind(self) -> str:
        return self.listen or ("127.0.0.1" if self.tunnel or self.triton else "0.0.0.0")

    @property
    def via_tunnel(self) -> bool:
        """Reached through the SSH connection: asked for, or a Triton server on the host's loopback."""
        from hode.edge.security import is_loopback

        return self.tunnel or (self.triton and is_loopback(self.bind))

    @property
    def label(self) -> str:
        return f"host {self.name} ({self.host.label})"


def _typed(where: str, key: str, value: Any, kind: type | tuple[type, ...]) -> Any:
    what = "a number" if isinstance(kind, tuple) else kind.__name__
    check(isinstance(value, kind) and not (kind is not bool and isinstance(value, bool)),
          f"{where}.{key} must be {what}, got {value!r}")
    return value


def _port(where: str, key: str, value: Any) -> int:
    _typed(where, key, value, int)
    check(0 < value < 65536, f"{where}.{key} must be a TCP port (1-65535), got {value}")
    return value


def _host_spec(where: str, ssh: dict) -> HostSpec:
    kw: dict[str, Any] = {k: ssh[k] for k in HOST_KEYS if k in ssh and ssh[k] is not None}
    check("host" in kw and isinstance(kw["host"], str) and kw["host"].strip(), f"{where}.host is required (the host's address)")
    if "port" in kw:
        _port(where, "port", kw["port"])
    for key in ("user", "key_file", "known_hosts", "python", "work_dir"):
        if key in kw:
            check(isinstance(kw[key], str) and kw[key].strip(), f"{where}.{key} must be a non-empty string, got {kw[key]!r}")
    for key in ("trust_on_first_use", "venv"):
        if key in kw:
            _typed(where, key, kw[key], bool)
    if "connect_timeout" in kw:
        _typed(where, "connect_timeout", kw["connect_timeout"], (int, float))
        check(kw["connect_timeout"] > 0, f"{where}.connect_timeout must be > 0, got {kw['connect_timeout']}")
    return HostSpec(**kw)  # the key file itself is checked when connecting (it lives on this machine only then)


def _worker_spec(where: str, node: Node, ssh: dict, host: HostSpec) -> WorkerSpec:
    kw: dict[str, Any] = {k: ssh[k] for k in WORKER_KEYS if k in ssh and ssh[k] is not None}
    env = kw.get("env", {})
    check(isinstance(env, dict), f"{where}.env must be a mapping NAME: value, got {env!r}")
    for name, value in env.items():
        check(isinstance(name, str) and ENV_NAME.match(name) is not None, f"{where}.env: {name!r} is not a variable name")
        check(not SECRET_WORDS.search(name), f"{where}.env.{name}: secrets are not accepted in configs; "
                                             "set it in the host's own environment instead")
        check(isinstance(value, (str, int, float, bool)), f"{where}.env.{name} must be a string or number, got {value!r}")
    kw["env"] = {k: str(v) for k, v in env.items()}
    extra = kw.get("worker", {})
    check(isinstance(extra, dict), f"{where}.worker must be a mapping of worker settings, got {extra!r}")
    allowed = {f.name for f in dataclasses.fields(EdgeWorkerSpec)} - LAUNCHER_SETS
    bad = sorted(set(extra) - allowed)
    check(not bad, f"{where}.worker: unknown or launcher-owned key(s) {bad} (allowed: {', '.join(sorted(allowed))})")
    for key in ("torch_device", "listen"):
        if key in kw:
            _typed(where, key, kw[key], str)
    for key in ("tunnel", "insecure"):
        if key in kw:
            _typed(where, key, kw[key], bool)
    serve = kw.get("serve", "worker")
    check(serve in SERVES, f"{where}.serve must be one of {', '.join(SERVES)}, got {serve!r}")
    if serve == "worker":
        check("insecure" not in kw, f"{where}.insecure is for serve: triton; an edge worker takes worker.insecure")
    else:
        from hode.edge.security import is_loopback

        bad = sorted(set(extra) - TRITON_WORKER_KEYS)
        check(not bad, f"{where}.worker: {bad} are edge-worker settings; serve: triton takes only "
                       f"{', '.join(sorted(TRITON_WORKER_KEYS))}")
        bind = kw.get("listen") or "127.0.0.1"
        # Triton checks no token of ours: anyone who reaches the port can use it, so loopback unless told.
        check(is_loopback(bind) or kw.get("insecure", False),
              f"topology node {node.name}: refusing to start Triton on {bind}: it has no token, anyone who can reach "
              "it could use it; leave listen unset (the host's loopback, reached through SSH) or set insecure: true")
    if "start_timeout" in kw:
        _typed(where, "start_timeout", kw["start_timeout"], (int, float))
        check(kw["start_timeout"] > 0, f"{where}.start_timeout must be > 0, got {kw['start_timeout']}")
    port = DEFAULT_WORKER_PORT if node.port is None else _port(f"topology node {node.name}", "port", node.port)
    return WorkerSpec(name=node.name, model=node.model, port=port, host=host, **kw)


def worker_spec(node: Node) -> WorkerSpec | None:
    """The remote worker of ``node``, or None when the node has no ``ssh`` section."""
    ssh = node.extra.get("ssh")
    if ssh is None:
        return None
    where = f"topology node {node.name}: ssh"
    check(isinstance(ssh, dict), f"{where} must be a mapping, got {type(ssh).__name__}")
    for key in ssh:
        if SECRET_WORDS.search(str(key)):
            raise ConfigError(f"{where}.{key}: passwords and other secrets are not accepted in configs; "
                              "use key_file (a path) or an SSH agent")
    unknown = sorted(set(ssh) - HOST_KEYS - WORKER_KEYS)
    check(not unknown, f"{where}: unknown key(s) {unknown} (known: {', '.join(sorted(HOST_KEYS | WORKER_KEYS))})")
    return _worker_spec(where, node, ssh, _host_spec(where, ssh))


def remote_workers(topology: Topology) -> list[WorkerSpec]:
    """The remote workers of a topology, checked for clashes (one host, two workers on one port)."""
    workers = [w for w in (worker_spec(n) for n in topology) if w is not None]
    by_target: dict[tuple, HostSpec] = {}
    ports: dict[tuple, str] = {}
    for w in workers:
        target = (w.host.host, w.host.port, w.host.user, w.host.work_dir)
        other = by_target.setdefault(target, w.host)
        check(other == w.host, f"topology node {w.name}: nodes on {w.host.label} must share the same ssh host settings "
                               f"(python, venv, key_file, known_hosts, ...)")
        where = (w.host.host, w.port)
        check(where not in ports, f"topology nodes {ports.get(where)} and {w.name} both use port {w.port} on {w.host.host}")
        ports[where] = w.name
    return workers


def by_host(workers: list[WorkerSpec]) -> dict[HostSpec, list[WorkerSpec]]:
    """Workers grouped by SSH target: one connection and one installation per host."""
    groups: dict[HostSpec, list[WorkerSpec]] = {}
    for w in workers:
        groups.setdefault(w.host, []).append(w)
    return groups
