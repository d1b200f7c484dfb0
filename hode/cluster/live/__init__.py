"""``runner=live``: every topology node is a real gRPC edge worker.

Nodes without a ``host`` get a local worker process each (127.0.0.1, a free port), emulating
their device kind's speed by pacing (:mod:`hode.edge.pacing`); nodes with ``host``/``port`` are
workers that already run somewhere (started by hand or by the remote launcher), used as they are.

Work goes out asynchronously: one sender thread per node encodes the tiles and issues Detect
calls as gRPC futures, so all nodes run in parallel and up to ``runner.in_flight`` frames can be
queued on the workers; replies land in one completion queue that ``poll`` drains. Times are
the wall clock of this process. Node state (queue, speed) is what the workers measured.

The parts, each in its module:

- :mod:`.backend`: :class:`LiveBackend`, the Backend seam (start/states/submit/poll/stats/close);
  it checks the settings and wires the parts below.
- :mod:`.settings`: one dataclass per ``runner.backend`` sub-block (``emulation``, ``transport``,
  ``workers``, ``health``).
- :mod:`.workers`: spawn, deploy, connect and restart the worker processes; ``chaos`` fault injection.
- :mod:`.transport`: per-node senders and reply handling; it reports up through callbacks and never
  imports the supervisor.
- :mod:`.supervisor` (+ :mod:`.watchdog`): health probes, mark-down and re-admission, re-dispatch,
  hedging, restarts, and the watchdog for nodes that say SERVING but answer no Detect.
- :mod:`.links`: one node's link, its load counters, health bookkeeping and stats row.

Failures (:mod:`hode.cluster.failover`, ``runner.failover``) and ``security``
(:mod:`hode.edge.security`, the token and TLS) are configured as for the other runners.
"""
from __future__ import annotations

import hode.edge  # noqa: F401  (before grpc: picks gRPC's I/O path, see hode/edge/grpc_io.py)

from hode.cluster.live.backend import LiveBackend
from hode.cluster.live.links import Link, LinkHealth, LinkLoad
from hode.cluster.live.settings import EmulationSettings, HealthSettings, TransportSettings, WorkerSettings

__all__ = ["LiveBackend", "Link", "LinkHealth", "LinkLoad", "EmulationSettings", "HealthSettings",
           "TransportSettings", "WorkerSettings"]
