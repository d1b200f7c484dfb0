"""Which I/O path gRPC uses in this process: the calling thread polls its sockets itself.

grpcio 1.85 runs network I/O on EventEngine threads by default: a reply (or request) wakes an
EventEngine poller, which hands the bytes to another EventEngine thread, which wakes the thread that
waits on the completion queue; waking idle threads costs time on every paced Detect call. With the
EventEngine client, listener and callback-queue experiments switched off (core's older iomgr path),
the thread that waits for the call polls the socket itself, which is faster per tile round trip
(``experiments/bench_transport.py``; figures in docs/history/edge.md).

It must be set before ``grpc`` is first imported (core reads GRPC_EXPERIMENTS once), so
``hode/edge/__init__.py`` calls :func:`prefer_direct_polling` and the modules that import grpc import
``hode.edge`` first; a worker spawned by the live runner does the same in its own process.
It is left alone when the user set GRPC_EXPERIMENTS (``GRPC_EXPERIMENTS=`` turns this off), when grpc
is already loaded, and on grpcio versions where it was not measured (the experiments are slated for
removal; an unknown name only makes core log an error line, but none is wanted).
"""
from __future__ import annotations

import os
import sys
from importlib import metadata

DIRECT_POLLING = "-event_engine_client,-event_engine_listener,-event_engine_for_all_other_endpoints,-event_engine_callback_cq"
MEASURED_ON = ("1.85.",)  # grpcio versions where these experiment names exist and the gain was measured


def prefer_direct_polling(environ: dict | None = None) -> bool:
    """Set GRPC_EXPERIMENTS for the direct-polling path if nothing speaks against it; True if set."""
    env = os.environ if environ is None else environ
    if "GRPC_EXPERIMENTS" in env or "grpc" in sys.modules:
        return False
    try:
        version = metadata.version("grpcio")
    except metadata.PackageNotFoundError:
        return False
    if not version.startswith(MEASURED_ON):
        return False
    env["GRPC_EXPERIMENTS"] = DIRECT_POLLING
    return True
