"""Start-up checks and reporting of the live runner that say what is true about its workers.

- :func:`wait_connected`: a node with ``host``/``port`` whose port is closed fails in seconds with
  one line naming node and address (it used to wait out ``start_timeout_s``, 180 s).
- :func:`warn_ignored_token`: with a token configured, a worker that answers a call *without* it
  checks no token at all; the camera says so (its token protects nothing there).
- :func:`emulation_report`: results.json's ``emulated`` from what each worker reports (a remote or
  external worker runs at its own real speed unless it was itself started to emulate a profile).
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Sequence

import hode.edge  # noqa: F401  (before grpc: picks gRPC's I/O path, see hode/edge/grpc_io.py)
import grpc

from hode.edge.process import WorkerError
from hode.edge.security import EdgeSecurity, client_channel
from hode.edge.server import SERVICE, channel_options

if TYPE_CHECKING:  # pragma: no cover
    from hode.cluster.live import _Link

log = logging.getLogger(__name__)


def wait_connected(node: str, target: str, channel: grpc.Channel, timeout_s: float) -> None:
    """Block until ``channel`` connects; one-line :class:`WorkerError` after ``timeout_s``."""
    try:
        grpc.channel_ready_future(channel).result(timeout=timeout_s)
    except grpc.FutureTimeoutError:
        raise WorkerError(f"edge node '{node}': cannot connect to {target} within {timeout_s:g} s (nothing "
                          "listening there, a firewall, a wrong host or port, or a TLS mismatch)") from None


def warn_ignored_token(links: Sequence["_Link"], security: EdgeSecurity, max_message_mb: int) -> list[str]:
    """Names of the nodes that answer a health check without the token (none when no token is set)."""
    if not security.wants_token:
        return []
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    bare = EdgeSecurity(tls_ca=security.tls_ca, tls_server_name=security.tls_server_name)  # same TLS, no token
    open_nodes = []
    for link in links:
        channel = client_channel(link.target, channel_options(max_message_mb) + [("grpc.enable_http_proxy", 0)], bare)
        try:
            health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=SERVICE), timeout=5.0)
            open_nodes.append(link.node.name)
            log.warning("edge node '%s' at %s answered a call without the token: it checks no token, so anyone who "
                        "can reach it can use it (start it with token_env or token_file)", link.node.name, link.target)
        except grpc.RpcError:  # UNAUTHENTICATED: it checks the token
            pass
        finally:
            channel.close()
    return open_nodes


def node_emulated(link: "_Link", emulate: bool) -> bool:
    """Whether ``link``'s worker paces tiles to a device profile (what its Status says)."""
    return bool(link.status.get("emulated", emulate and link.proc is not None))


def emulation_report(links: Sequence["_Link"], emulate: bool, time_scale: float) -> dict:
    """results.json ``runner`` fields on emulation: ``emulated`` is true only when every node's worker
    paces to a profile; ``emulated_nodes`` names those that do."""
    paced = [l.node.name for l in links if node_emulated(l, emulate)]
    every, some = len(paced) == len(links), bool(paced)
    if every:
        note = ("device speeds emulated on one machine: each tile's service time is paced to its node's device "
                "profile times time_scale (wall s per device s); camera-side work and transport are not scaled")
    elif some:
        note = (f"mixed: {', '.join(paced)} paced to device profiles x time_scale, the other nodes at their "
                "workers' real speed")
    else:
        note = "real worker speeds, not emulated"
    return {"emulated": every, "emulated_nodes": paced, "time_scale": time_scale if some else 1.0, "note": note}
