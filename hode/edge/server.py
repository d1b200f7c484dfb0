"""The edge worker's gRPC server: Detect, Status and the standard gRPC health service.

Started by ``python run.py task=serve ...`` (a person, or the remote launcher) or by the live runner
as ``python -m hode.edge.server --spec SPEC.json`` (one process per topology node). Health reports
NOT_SERVING until the detector is loaded and warmed up, then SERVING.

A spawned worker watches its parent: when the parent process goes away (killed, crashed) the
worker exits within half a second, so a dead camera never leaves workers behind.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import signal
import sys
import threading
import time
from concurrent import futures
from dataclasses import asdict, dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from hode.edge import worker_pb2 as pb
from hode.edge import worker_pb2_grpc as pb_grpc
from hode.edge.codec import MAX_SIDE, PayloadError, check_tile, decode_tile
from hode.edge.device import DeviceLoop, TileJob
from hode.edge.limits import Admission, request_cost
from hode.edge.pacing import Pacer, read_profile
from hode.edge.security import EdgeSecurity, TokenAuth, is_loopback, server_credentials, warn_if_open
from hode.errors import HodeError, check
from hode.profiles import profile_from_dict

log = logging.getLogger("hode.edge.server")
SERVICE = "hode.edge.EdgeWorker"
# A request's time_scale beyond this would hold the device for hours on one tile (a
# denial of service found by fuzzing); real runs use 1 to a few hundred.
MAX_TIME_SCALE = 10_000.0


def address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def channel_options(max_message_mb: int) -> list[tuple[str, int]]:
    """Message limits set explicitly on both sides (gRPC's default receive limit is 4 MB)."""
    n = int(max_message_mb) * 1024 * 1024
    return [("grpc.max_send_message_length", n), ("grpc.max_receive_message_length", n)]


@dataclass
class WorkerSpec:
    """Everything one worker needs; the live runner writes it as JSON for the process it spawns."""

    node: str
    detector: dict  # a detector option (with _target_), the run's shared settings already applied
    device_kind: str = "cpu"
    emulate: bool = False  # pace tiles to the device profile of device_kind
    profile: dict | None = None  # profile content; None: read conf/device/<device_kind>.yaml
    profiles_dir: str | None = None
    time_scale: float = 1.0  # default when a request carries none
    batched_inference: bool = False  # pace a request's tiles as one batch (emulated devices)
    load_trace: list = field(default_factory=list)
    host: str = "127.0.0.1"
    port: int = 0  # 0: any free port, reported through port_file
    port_file: str | None = None
    parent_pid: int | None = None  # exit when this process is no longer our parent
    max_message_mb: int = 64
    max_side: int = MAX_SIDE
    max_tiles: int = 512  # per request
    # At once, over every request waiting or running (hode.edge.limits): beyond, RESOURCE_EXHAUSTED.
    max_queued_mb: int = 256  # payload bytes + decoded tiles
    max_queued_tiles: int = 2048
    torch_threads: int = 0  # 0: torch's default
    rpc_threads: int = 64
    seed: int = 0
    # Security (hode.edge.security): where the token and the TLS files are, never their values.
    token_env: str | None = None
    token_file: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_key_passphrase_env: str | None = None
    insecure: bool = False  # true: listening beyond loopback without a token is accepted

    def __post_init__(self) -> None:
        check(isinstance(self.node, str) and self.node, "worker node name must be a non-empty string")
        check(isinstance(self.port, int) and 0 <= self.port < 65536, f"worker port must be in [0, 65535], got {self.port!r}")
        check(isinstance(self.max_message_mb, int) and self.max_message_mb > 0,
              f"max_message_mb must be a positive integer, got {self.max_message_mb!r}")
        for key in ("max_queued_mb", "max_queued_tiles", "max_tiles", "rpc_threads"):
            v = getattr(self, key)
            check(isinstance(v, int) and not isinstance(v, bool) and v > 0, f"{key} must be a positive integer, got {v!r}")
        check(isinstance(self.time_scale, (int, float)) and self.time_scale > 0,
              f"time_scale must be a number > 0, got {self.time_scale!r}")
        check(isinstance(self.batched_inference, bool),
              f"batched_inference must be true or false, got {self.batched_inference!r}")
        sec = self.security()  # a bad or literal-secret setting fails here, before anything loads
        check(isinstance(self.insecure, bool), f"insecure must be true or false, got {self.insecure!r}")
        # The safe choice by default: a worker anyone on the network could use is refused, not just logged.
        check(is_loopback(self.host) or sec.wants_token or self.insecure,
              f"worker '{self.node}': refusing to listen on {self.host} without a token (anyone who can reach it "
              "could use it); set token_env or token_file (and tls_cert/tls_key), bind 127.0.0.1, or set "
              "insecure: true to accept an open worker")

    def security(self) -> EdgeSecurity:
        return EdgeSecurity(token_env=self.token_env, token_file=self.token_file, tls_cert=self.tls_cert,
                            tls_key=self.tls_key, tls_key_passphrase_env=self.tls_key_passphrase_env)

    def pacer(self) -> Pacer:
        from hode.profiles import LoadTrace

        profile = None
        if self.emulate:
            content = self.profile if self.profile is not None else read_profile(self.device_kind, self.profiles_dir)
            profile = profile_from_dict(content, f"device profile '{self.device_kind}'")
        model = str(self.detector.get("name", "?"))
        return Pacer(self.node, model, profile, LoadTrace(list(self.load_trace)), float(self.time_scale), self.seed,
                     self.batched_inference)


@dataclass
class Sized:
    """A parsed request and its size on the wire (upb's ByteSize() re-serializes: ~2 ms per MB)."""

    message: object
    size: int


class Refused:
    """A request turned away before parsing: the worker's queue budget is spent (hode.edge.limits)."""

    def __init__(self, why: str) -> None:
        self.why = why

    def abort(self, context: grpc.ServicerContext) -> None:
        context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, self.why)


class Unparsable:
    """A request whose bytes are not the protobuf message the method takes (see :func:`add_servicer`)."""

    def __init__(self, size: int, message: str) -> None:
        self.size, self.message = size, message

    def abort(self, context: grpc.ServicerContext) -> None:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                      f"request is not a valid {self.message}: {self.size} bytes that do not parse as protobuf")


def _lenient(message_cls, precheck=None):
    """A deserializer that hands garbage to the servicer as :class:`Unparsable` instead of failing
    inside gRPC (which would answer INTERNAL "Exception deserializing request!"). With
    ``precheck(size)``, a message may be refused before it is parsed (:class:`Refused`) and one
    that is not comes as :class:`Sized`."""

    def parse(data: bytes):
        if precheck is not None and (why := precheck(len(data))):
            return Refused(why)
        try:
            message = message_cls.FromString(data)
            return Sized(message, len(data)) if precheck is not None else message
        except Exception:  # google.protobuf.message.DecodeError and kin
            return Unparsable(len(data), message_cls.__name__)

    return parse


def add_servicer(servicer: "EdgeWorkerServicer", server: grpc.Server) -> None:
    """``worker_pb2_grpc.add_EdgeWorkerServicer_to_server`` with lenient request parsing."""
    handlers = {
        "Detect": grpc.unary_unary_rpc_method_handler(servicer.Detect,
                                                      request_deserializer=_lenient(pb.DetectRequest, servicer.admission.precheck),
                                                      response_serializer=pb.DetectReply.SerializeToString),
        "Status": grpc.unary_unary_rpc_method_handler(servicer.Status, request_deserializer=_lenient(pb.StatusRequest),
                                                      response_serializer=pb.StatusReply.SerializeToString),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_registered_method_handlers(SERVICE, handlers)


def _timed_decode(tile: pb.Tile) -> tuple:
    t0 = time.perf_counter()
    image = decode_tile(tile, checked=True)
    return image, time.perf_counter() - t0


class EdgeWorkerServicer(pb_grpc.EdgeWorkerServicer):
    def __init__(self, spec: WorkerSpec, loop: DeviceLoop, device: str) -> None:
        self.spec, self.loop, self.device = spec, loop, device
        self.ready = False
        self.admission = Admission(spec.node, spec.max_queued_mb, spec.max_queued_tiles)
        self._decoder = futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="decode")

    def close(self) -> None:
        self._decoder.shutdown(wait=False, cancel_futures=True)

    def _first(self, frame_id: int, tile: pb.Tile, scale: float) -> TileJob:
        """A request's first tile, decoded on the RPC's own thread: nothing runs before it to hide
        its decode behind, and a hand-off to the decoder thread would only add a wake-up."""
        image, decode_s = _timed_decode(tile)
        return TileJob(frame_id, tile.item_id, image, scale, decode_s=decode_s)

    def Detect(self, request: pb.DetectRequest, context: grpc.ServicerContext) -> pb.DetectReply:
        received = time.perf_counter()
        if isinstance(request, (Unparsable, Refused)):
            request.abort(context)
        size = request.size if isinstance(request, Sized) else None
        request = request.message if isinstance(request, Sized) else request
        n = len(request.tiles)
        if n > self.spec.max_tiles:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{n} tiles in one request, the limit is {self.spec.max_tiles}")
        scale = request.time_scale
        if not math.isfinite(scale) or scale < 0 or scale > MAX_TIME_SCALE:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"time_scale must be in [0, {MAX_TIME_SCALE:g}], got {scale}")
        ids = [t.item_id for t in request.tiles]
        if len(set(ids)) != len(ids):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "item_id values repeat within the request")
        try:  # every tile's header first: a bad request fails before any of its tiles is queued
            for t in request.tiles:
                check_tile(t, self.spec.max_side)
        except PayloadError as e:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        cost = request_cost(request, size)  # the declared sizes are checked: this is what it will hold
        if why := self.admission.admit(cost, n):
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, why)
        try:
            return self._detect(request, context, received, scale)
        finally:
            self.admission.release(cost, n)

    def _detect(self, request: pb.DetectRequest, context: grpc.ServicerContext, received: float,
                scale: float) -> pb.DetectReply:
        try:
            jobs = [self._first(request.frame_id, request.tiles[0], scale)] if request.tiles else []
        except PayloadError as e:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        # The rest decode on the decoder thread while the tiles before them run (cv2 releases the
        # GIL): a request of n tiles waits for one decode, not n.
        jobs += [TileJob(request.frame_id, t.item_id, None, scale, pending=self._decoder.submit(_timed_decode, t))
                 for t in request.tiles[1:]]

        def cancel() -> None:  # runs when the RPC ends; only unstarted tiles are skipped
            for j in jobs:
                j.cancelled = True
                if j.pending is not None:
                    j.pending.cancel()

        context.add_callback(cancel)
        # This thread runs the tiles itself when their turn comes (FIFO across requests): no
        # hand-off to a device thread and back on the way.
        if not self.loop.run(jobs, context.is_active):
            if context.is_active():  # the worker is stopping
                context.abort(grpc.StatusCode.UNAVAILABLE, f"worker '{self.spec.node}' is stopping")
            return pb.DetectReply()
        bad = [j for j in jobs if j.bad_payload]
        if bad:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, bad[0].error)
        failed = [j for j in jobs if j.error]
        if failed:
            context.abort(grpc.StatusCode.INTERNAL, f"detector failed on tile {failed[0].item_id}: {failed[0].error}")
        if any(not j.finished for j in jobs):  # cancelled part-way (the caller is gone) or stopping
            context.abort(grpc.StatusCode.UNAVAILABLE, f"worker '{self.spec.node}' stopped before the request finished")
        results = [pb.TileResult(item_id=j.item_id, boxes=j.detections.boxes.reshape(-1).tolist(),
                                 scores=j.detections.scores.tolist(), service_s=j.service_s, compute_s=j.compute_s,
                                 started=j.started, finished=j.finished, overrun=j.overrun, decode_s=j.decode_s)
                   for j in jobs]
        return pb.DetectReply(results=results, received=received, sent=time.perf_counter(),
                              queue=self.loop.queue_len, speed=self.loop.speed)

    def Status(self, request: pb.StatusRequest, context: grpc.ServicerContext) -> pb.StatusReply:
        if isinstance(request, Unparsable):
            request.abort(context)
        loop, pacer = self.loop, self.loop.pacer
        return pb.StatusReply(node=self.spec.node, model=pacer.model, device=self.device,
                              device_kind=self.spec.device_kind if pacer.emulated else "", emulated=pacer.emulated,
                              time_scale=loop.last_scale if pacer.emulated else 1.0, queue=loop.queue_len,
                              speed=loop.speed, processed=loop.processed, busy_s=loop.busy_s, overruns=loop.overruns,
                              compute_tile_ms=loop.compute_tile_ms, profile_tile_ms=pacer.profile_tile_s() * 1000,
                              pid=os.getpid(), ready=self.ready)


def watch_parent(parent_pid: int, interval_s: float = 0.5) -> None:
    """Exit the process as soon as ``parent_pid`` is no longer its parent (the parent died)."""

    def run() -> None:
        while True:
            if os.getppid() != parent_pid:
                log.warning("parent process %d is gone: exiting", parent_pid)
                logging.shutdown()
                os._exit(3)
            time.sleep(interval_s)

    if os.getppid() != parent_pid:  # died before we even got here
        os._exit(3)
    threading.Thread(target=run, name="parent-watch", daemon=True).start()


def serve(spec: WorkerSpec, stop: threading.Event | None = None) -> None:
    """Run one worker until SIGTERM/SIGINT, ``stop`` being set, or the parent's death."""
    if spec.parent_pid:
        watch_parent(spec.parent_pid)
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    from hode.config import build

    pacer = spec.pacer()  # a missing profile or model fails here, before anything listens
    sec = spec.security()
    token = sec.token()  # read now: a missing variable or file fails before anything listens
    creds = server_credentials(sec)
    detector = build(spec.detector)  # checks its settings before torch is even imported
    if spec.torch_threads > 0:
        import torch

        torch.set_num_threads(spec.torch_threads)
    loop = DeviceLoop(detector, pacer)
    servicer = EdgeWorkerServicer(spec, loop, getattr(detector, "device", "?"))
    health_servicer = health.HealthServicer()
    for name in ("", SERVICE):
        health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=spec.rpc_threads, thread_name_prefix="rpc"),
                         options=channel_options(spec.max_message_mb),
                         interceptors=[TokenAuth(token)] if token else None)
    add_servicer(servicer, server)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    where = address(spec.host, spec.port)
    warn_if_open(spec.host, sec, f"worker '{spec.node}'")
    try:
        port = server.add_secure_port(where, creds) if creds is not None else server.add_insecure_port(where)
    except RuntimeError as e:
        raise HodeError(f"worker '{spec.node}': cannot listen on {where} ({e})") from None
    if not port:
        raise HodeError(f"worker '{spec.node}': cannot listen on {where}")
    server.start()
    if spec.port_file:  # atomic: the parent never reads half a number
        tmp = Path(spec.port_file + ".tmp")
        tmp.write_text(str(port))
        tmp.replace(spec.port_file)
    log.info("worker '%s' (%s) listening on %s (%s, %s), loading the detector", spec.node, pacer.model,
             address(spec.host, port), "TLS" if creds is not None else "plaintext",
             "token required" if token else "no token")
    ms = loop.calibrate()
    servicer.ready = True
    for name in ("", SERVICE):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info("worker '%s' ready: %s on %s, real tile %.1f ms, %s", spec.node, pacer.model, servicer.device, ms,
             f"emulating {spec.device_kind} ({pacer.profile_tile_s() * 1000:.1f} ms/tile x scale)" if pacer.emulated
             else "not emulated")
    print(f"serving {spec.node} ({pacer.model}) on {address(spec.host, port)}", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        health_servicer.enter_graceful_shutdown()
        server.stop(grace=1.0).wait(2.0)
        loop.stop()
        servicer.close()
        log.info("worker '%s' stopped after %d tiles", spec.node, loop.processed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="one HODE edge worker (the live runner starts these)")
    parser.add_argument("--spec", required=True, help="JSON file with the WorkerSpec fields")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("ultralytics").setLevel(logging.WARNING)
    try:
        spec = WorkerSpec(**json.loads(Path(args.spec).read_text()))
        serve(spec)
    except (HodeError, TypeError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 2
    exit_now(0)


def exit_now(code: int) -> None:
    """Leave at once after a clean stop: gRPC's and torch's native teardown at interpreter exit can
    hang for seconds (seen here), and a stopped worker has nothing left to clean up."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def spec_json(spec: WorkerSpec) -> str:
    return json.dumps(asdict(spec))


if __name__ == "__main__":
    sys.exit(main())
