"""Settings of ``runner=triton`` (``runner.backend`` in ``conf/runner/triton.yaml``; failures are
``runner.failover``, :class:`hode.cluster.failover.FailoverPolicy`, as for ``runner=live``)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hode.errors import check


def _pos(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and x > 0


@dataclass
class TritonSettings:
    """How the camera talks to its Triton servers (KServe v2 over gRPC).

    A topology node is one server: ``url`` (``host:port`` of its gRPC endpoint) and optionally
    ``triton_model`` (the model's name on the server; default: the node's ``model``). A node without
    ``url`` gets a server started on this machine (``local_servers``), like ``runner=live``'s workers."""

    batch: int = 0  # tiles per inference request; 0: one request per frame, node and tile shape
    max_requests: int = 8  # requests in flight per node at once (more wait in the camera)
    connect_timeout_s: float = 10.0  # start: server live, model ready, one probe tile answered
    request_timeout_s: float = 120.0  # an inference request not answered in this time: the node is down
    probe_s: float = 1.0  # server live + model ready check of every node this often
    probe_timeout_s: float = 2.0
    fail_after: int = 2  # failed checks in a row before a node is marked down
    all_down_timeout_s: float = 60.0  # an item no node could take for this long: the run fails
    speed_alpha: float = 0.3  # weight of the newest round trip in a node's measured speed
    statistics: bool = True  # read each model's server-side statistics at the end (results.json)
    local_servers: bool = True  # nodes without url: a server on 127.0.0.1 each, started and stopped with the run
    start_timeout_s: float = 240.0  # for the local servers to load their detectors and report ready
    torch_threads: int = 1  # per local server's model (n servers share this machine's cores)
    log_dir: str | None = None  # local servers' logs and model repositories; None: <run dir>/triton

    def __post_init__(self) -> None:
        for name in ("batch", "max_requests", "fail_after", "torch_threads"):
            v = getattr(self, name)
            low = 0 if name == "batch" else 1
            check(isinstance(v, int) and not isinstance(v, bool) and v >= low,
                  f"runner.backend.{name} must be an integer >= {low}, got {v!r}")
        for name in ("connect_timeout_s", "request_timeout_s", "probe_s", "probe_timeout_s", "all_down_timeout_s",
                     "start_timeout_s"):
            v = getattr(self, name)
            check(_pos(v), f"runner.backend.{name} must be a number > 0, got {v!r}")
            setattr(self, name, float(v))
        check(_pos(self.speed_alpha) and self.speed_alpha <= 1,
              f"runner.backend.speed_alpha must be in (0, 1], got {self.speed_alpha!r}")
        for name in ("statistics", "local_servers"):
            check(isinstance(getattr(self, name), bool),
                  f"runner.backend.{name} must be true or false, got {getattr(self, name)!r}")
        check(self.log_dir is None or isinstance(self.log_dir, str),
              f"runner.backend.log_dir must be a folder or null, got {self.log_dir!r}")
