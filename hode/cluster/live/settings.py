"""Settings of the live runner, one small dataclass per concern, each mirrored by a sub-block of
``runner.backend`` in ``conf/runner/live.yaml`` (:class:`hode.cluster.failover.FailoverPolicy`,
``runner.failover``, is the model). Each checks its values and refuses unknown keys in one line."""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, TypeVar

from hode.edge.codec import ENCODINGS
from hode.errors import check

S = TypeVar("S")


def _num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def from_config(cls: type[S], cfg: Any, where: str) -> S:
    """``cfg``: an instance of ``cls``, a mapping of its fields, or None (the defaults)."""
    if isinstance(cfg, cls):
        return cfg
    cfg = dict(cfg or {})
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(cfg) - known)
    check(not unknown, f"{where}: unknown key(s) {unknown} (known: {', '.join(sorted(known))})")
    return cls(**cfg)


@dataclass
class EmulationSettings:
    """``runner.backend.emulation``: local workers paced to their device profiles."""

    enabled: bool = True  # false: local workers run at this machine's real speed
    time_scale: float | str = "auto"  # wall s per emulated device s; auto: the smallest that fits this CPU
    auto_margin: float = 1.5  # head-room factor applied by time_scale=auto

    def __post_init__(self) -> None:
        check(isinstance(self.enabled, bool), f"runner.backend.emulation.enabled must be true or false, "
                                              f"got {self.enabled!r}")
        t = self.time_scale
        check(t == "auto" or (_num(t) and t > 0),
              f"runner.backend.emulation.time_scale must be 'auto' or a number > 0, got {t!r}")
        check(_num(self.auto_margin) and self.auto_margin >= 1,
              f"runner.backend.emulation.auto_margin must be >= 1, got {self.auto_margin!r}")
        self.auto_margin = float(self.auto_margin)


@dataclass
class TransportSettings:
    """``runner.backend.transport``: how tiles travel to the workers and how long a call may take."""

    encoding: str = "jpeg"  # tile payload: jpeg | png | raw
    jpeg_quality: int = 90
    batch: int = 1  # tiles per Detect request; 0: one request per frame and node (conf/runner/live.yaml: 0)
    rpc_timeout_s: float = 600.0
    max_message_mb: int = 64
    connect_timeout_s: float = 5.0  # a node with host/port not connected in this time fails the start

    def __post_init__(self) -> None:
        check(self.encoding in ENCODINGS, f"runner.backend.transport.encoding must be one of {sorted(ENCODINGS)}, "
                                          f"got {self.encoding!r}")
        check(_int(self.jpeg_quality) and 1 <= self.jpeg_quality <= 100,
              f"runner.backend.transport.jpeg_quality must be an integer in [1, 100], got {self.jpeg_quality!r}")
        check(_int(self.batch) and self.batch >= 0, f"runner.backend.transport.batch must be an integer >= 0 "
              f"(0: one request per frame and node), got {self.batch!r}")
        check(_num(self.rpc_timeout_s) and self.rpc_timeout_s > 0 and _num(self.connect_timeout_s)
              and self.connect_timeout_s > 0, "runner.backend.transport timeouts must be > 0")
        self.connect_timeout_s = float(self.connect_timeout_s)


@dataclass
class WorkerSettings:
    """``runner.backend.workers``: the local worker processes this runner starts."""

    bind: str = "127.0.0.1"  # beyond loopback: needs a token, or insecure
    insecure: bool = False  # true: local workers may listen beyond loopback without a token
    start_timeout_s: float = 180.0  # for every worker to load its detector and report healthy
    torch_threads: int = 1  # per local worker (n workers share this machine's cores)
    log_dir: str | None = None  # worker logs; None: <run dir>/workers
    seed: int = 0  # node i's worker gets seed + i

    def __post_init__(self) -> None:
        check(isinstance(self.insecure, bool),
              f"runner.backend.workers.insecure must be true or false, got {self.insecure!r}")
        check(_num(self.start_timeout_s) and self.start_timeout_s > 0,
              "runner.backend.workers.start_timeout_s must be > 0")


@dataclass
class HealthSettings:
    """``runner.backend.health``: health checks, the watchdog, restarts (docs/edge-cluster.md "Failures, stragglers
    and security"; the watchdog: :mod:`hode.cluster.live.supervisor`)."""

    probe_s: float = 1.0  # health check of every node this often (s)
    probe_timeout_s: float = 2.0
    fail_after: int = 3  # failed health checks in a row before a node is marked down
    restart: bool = True  # restart a local worker that died (it rejoins when healthy)
    max_restarts: int = 3  # per node
    all_down_timeout_s: float = 120.0  # every node down this long: the run fails
    watchdog_k: float = 20.0  # a Detect call not answered within k x its expected time
    watchdog_slack_s: float = 5.0  # + this many s marks the node down, whatever its health says

    def __post_init__(self) -> None:
        check(all(_num(x) and x > 0 for x in (self.probe_s, self.probe_timeout_s, self.all_down_timeout_s)),
              "runner.backend.health.probe_s, probe_timeout_s and all_down_timeout_s must be > 0")
        check(_int(self.fail_after) and self.fail_after >= 1,
              f"runner.backend.health.fail_after must be an integer >= 1, got {self.fail_after!r}")
        check(_int(self.max_restarts) and self.max_restarts >= 0,
              f"runner.backend.health.max_restarts must be an integer >= 0, got {self.max_restarts!r}")
        k, slack = self.watchdog_k, self.watchdog_slack_s
        check(_num(k) and _num(slack) and k >= 1 and slack > 0, f"runner.backend.health.watchdog_k must be a number "
              f">= 1 and watchdog_slack_s a number > 0, got {k!r} and {slack!r}")
        self.probe_s, self.probe_timeout_s = float(self.probe_s), float(self.probe_timeout_s)
        self.all_down_timeout_s, self.restart = float(self.all_down_timeout_s), bool(self.restart)
        self.watchdog_k, self.watchdog_slack_s = float(k), float(slack)
