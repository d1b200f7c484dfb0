"""Client side of one edge worker: requests from crops, replies to detections, health, status.

Times a worker reports are on *its* clock; :func:`completions_times` maps them onto the caller's
clock through the reply's send time, so the same code works for a worker on another host.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Sequence

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from hode.edge import worker_pb2 as pb
from hode.edge import worker_pb2_grpc as pb_grpc
from hode.edge.codec import check_encoding, encode_tile
from hode.edge.security import EdgeSecurity, client_channel
from hode.edge.server import SERVICE, channel_options
from hode.errors import HodeError
from hode.types import Detections


class AuthError(HodeError):
    """A worker refused this client's token (or asked for one it does not have)."""


@dataclass
class TileOutcome:
    """One tile's result on the caller's clock."""

    item_id: int
    detections: Detections  # tile (crop) coordinates
    started: float
    finished: float
    service_s: float
    compute_s: float
    overrun: bool
    decode_s: float = 0.0  # the worker's payload decode (before its turn; not in service_s)


class EdgeClient:
    def __init__(self, target: str, max_message_mb: int = 64, encoding: str = "jpeg", jpeg_quality: int = 90,
                 security: EdgeSecurity | None = None) -> None:
        check_encoding(encoding, jpeg_quality)
        self.target, self.encoding, self.quality = target, encoding, jpeg_quality
        # Never route loopback or LAN worker traffic through an HTTP proxy from the environment.
        self.channel = client_channel(target, channel_options(max_message_mb) + [("grpc.enable_http_proxy", 0)], security)
        self.stub = pb_grpc.EdgeWorkerStub(self.channel)
        self._health = health_pb2_grpc.HealthStub(self.channel)

    def request(self, frame_id: int, items: Sequence[tuple[int, np.ndarray]], time_scale: float = 0.0) -> pb.DetectRequest:
        """A Detect request for ``(item_id, crop)`` pairs, encoded as configured."""
        tiles = [encode_tile(crop, item_id, self.encoding, self.quality) for item_id, crop in items]
        return pb.DetectRequest(frame_id=frame_id, tiles=tiles, time_scale=time_scale)

    def detect(self, request: pb.DetectRequest, timeout: float | None = None) -> tuple[pb.DetectReply, float, float]:
        """Blocking Detect; returns the reply and the send and receive times (caller's clock)."""
        sent = time.perf_counter()
        reply = self.stub.Detect(request, timeout=timeout)
        return reply, sent, time.perf_counter()

    def detect_future(self, request: pb.DetectRequest, timeout: float | None = None) -> grpc.Future:
        return self.stub.Detect.future(request, timeout=timeout)

    def status(self, timeout: float = 5.0) -> pb.StatusReply:
        return self.stub.Status(pb.StatusRequest(), timeout=timeout)

    def serving(self, timeout: float = 2.0) -> bool:
        """One health check: True when the worker's detector is loaded and it takes work.
        A worker that refuses our token raises :class:`AuthError` (waiting would not help)."""
        try:
            r = self._health.Check(health_pb2.HealthCheckRequest(service=SERVICE), timeout=timeout)
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.UNAUTHENTICATED:
                raise AuthError(f"edge worker at {self.target} refused the request: {e.details()} "
                                "(set the same token for the camera and the worker)") from None
            return False
        return r.status == health_pb2.HealthCheckResponse.SERVING

    def serving_future(self, timeout: float = 2.0) -> grpc.Future:
        """A health check in flight (for probing many workers at once)."""
        return self._health.Check.future(health_pb2.HealthCheckRequest(service=SERVICE), timeout=timeout)

    def close(self) -> None:
        self.channel.close()


def outcomes(reply: pb.DetectReply, received: float) -> list[TileOutcome]:
    """Per-tile results with worker times moved onto the caller's clock (``received`` = reply arrival)."""
    out = []
    for r in reply.results:
        finished = received - max(reply.sent - r.finished, 0.0)
        started = finished - r.service_s
        dets = Detections(np.asarray(r.boxes, np.float32).reshape(-1, 4), np.asarray(r.scores, np.float32))
        out.append(TileOutcome(r.item_id, dets, started, finished, r.service_s, r.compute_s, r.overrun, r.decode_s))
    return out


def server_time_s(reply: pb.DetectReply) -> float:
    """Time the request spent inside the worker (decode, queue, service, reply build)."""
    return max(reply.sent - reply.received, 0.0)
