"""What one edge worker takes on at once: a budget of queued bytes and tiles, refused beyond.

Every Detect request the worker admits holds memory until its reply is sent: its protobuf message
(the payload bytes) and the decoded images of its tiles. Without a bound, a burst of large requests
from a client that does not wait for its replies grows the worker without limit (40 concurrent
59 MB requests took one to 6 GB). :class:`Admission` keeps the sum of the admitted requests' cost
(payload bytes + declared decoded bytes) under ``max_queued_mb`` and their tiles under
``max_queued_tiles``; a request that would go over is refused with RESOURCE_EXHAUSTED and a line
that says which limit and by how much. The check runs twice: on the raw size before the request is
even parsed (:meth:`Admission.precheck`, so a flood is refused without a protobuf copy of each
message), and atomically with the full cost once its tiles' headers are checked.

When the worker drains after holding a lot, :func:`trim_heap` hands freed heap memory back to the
operating system (glibc keeps it otherwise, and the process would stay at its peak for good).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading

from hode.edge import worker_pb2 as pb

log = logging.getLogger(__name__)

MB = 1 << 20
# Heap returned to the OS once the worker drains after admitting at least this much since the last trim.
TRIM_AFTER_BYTES = 64 * MB


def request_cost(request: pb.DetectRequest, size: int | None = None) -> int:
    """Bytes a request holds while admitted: its message (``size`` on the wire, when known) plus its
    tiles decoded (declared shapes, already checked against ``max_side``)."""
    size = request.ByteSize() if size is None else size
    return size + sum(int(t.height) * int(t.width) * int(t.channels) for t in request.tiles)


class Admission:
    """Thread-safe budget of the bytes and tiles of the requests admitted (waiting or running)."""

    def __init__(self, node: str, max_queued_mb: int, max_queued_tiles: int) -> None:
        self.node, self.max_bytes, self.max_tiles = node, int(max_queued_mb) * MB, int(max_queued_tiles)
        self.bytes = self.tiles = self.requests = 0
        self.refused = 0
        self._since_trim = 0
        self._lock = threading.Lock()

    def precheck(self, size: int) -> str | None:
        """Before parsing: why a message of ``size`` bytes cannot be admitted now (None: it may be)."""
        with self._lock:
            why = self._why(size, 0)
            self.refused += why is not None
            return why

    def admit(self, cost: int, tiles: int) -> str | None:
        """Reserve ``cost`` bytes and ``tiles``; the reason for refusing instead (nothing reserved)."""
        with self._lock:
            why = self._why(cost, tiles)
            if why is not None:
                self.refused += 1
                return why
            self.bytes += cost
            self.tiles += tiles
            self.requests += 1
            self._since_trim += cost
            return None

    def release(self, cost: int, tiles: int) -> None:
        with self._lock:
            self.bytes -= cost
            self.tiles -= tiles
            self.requests -= 1
            drained = self.requests == 0 and self._since_trim >= TRIM_AFTER_BYTES
            if drained:
                self._since_trim = 0
        if drained:
            trim_heap()

    def _why(self, cost: int, tiles: int) -> str | None:
        who = f"worker '{self.node}'"
        if cost > self.max_bytes:
            return (f"{who}: request needs {cost / MB:.1f} MB (payload + decoded tiles), more than max_queued_mb="
                    f"{self.max_bytes // MB} allows at once; send fewer or smaller tiles per request")
        if self.bytes + cost > self.max_bytes:
            return (f"{who} is full: {self.bytes / MB:.1f} MB of requests queued or running, this one needs "
                    f"{cost / MB:.1f} MB more, limit max_queued_mb={self.max_bytes // MB}; retry when earlier "
                    "requests have been answered")
        if tiles > self.max_tiles:
            return f"{who}: {tiles} tiles in one request, more than max_queued_tiles={self.max_tiles}"
        if self.tiles + tiles > self.max_tiles:
            return (f"{who} is full: {self.tiles} tiles queued or running, this request adds {tiles}, limit "
                    f"max_queued_tiles={self.max_tiles}; retry when earlier requests have been answered")
        return None


_libc = None


def trim_heap() -> bool:
    """Give freed heap memory back to the OS (glibc ``malloc_trim``); False where unavailable."""
    global _libc
    if _libc is None:
        try:
            _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            _libc.malloc_trim.argtypes = [ctypes.c_size_t]
        except (OSError, AttributeError):
            _libc = False
    if not _libc:
        return False
    return bool(_libc.malloc_trim(0))
