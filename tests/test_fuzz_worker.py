"""Fuzzing a real edge worker on loopback: thousands of random and mutated requests (bounded in
count and time), concurrent, among them valid ones whose callers give up (random deadlines,
client-side cancels, identical requests queued together). The worker must answer every one with a
status code that names the problem, never crash or hang, keep answering a valid request exactly as
before, and at the end answer a fresh request within its service time (nothing left in its line)."""
from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest

from hode.edge import worker_pb2 as pb
from hode.edge.codec import encode_tile

from support.edge import running

pytestmark = pytest.mark.slow  # a real edge worker process

REQUESTS = 5000
TIME_LIMIT_S = 90  # a hard stop for a very slow machine; about 10 s on a quiet 2-core one
REFERENCE_EVERY = 250
# Acceptable answers to a bad request; UNAVAILABLE (crash), DEADLINE_EXCEEDED (hang), UNKNOWN (an
# unhandled exception in the servicer) and INTERNAL (a failure inside the worker) are failures.
ALLOWED = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED,
           grpc.StatusCode.UNIMPLEMENTED}
# What a caller that gives up may see (only for the requests sent that way).
GIVEN_UP = {grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED}
FAST_SCALE = 0.01  # valid fuzzed tiles are paced at 1% of the profile: the device is never the bottleneck


def scene_tile(h: int = 48, w: int = 64) -> np.ndarray:
    from hode.data.synthetic import SyntheticCrowd

    image = next(iter(SyntheticCrowd(width=1024, height=768, frames=1, seed=3))).image
    return np.ascontiguousarray(image[400:400 + h, 300:300 + w])


def seeds(tile: np.ndarray) -> list[bytes]:
    """Valid requests in every encoding: what the mutations start from."""
    reqs = [pb.DetectRequest(frame_id=3, tiles=[encode_tile(tile, 1, enc)], time_scale=FAST_SCALE)
            for enc in ("raw", "jpeg", "png")]
    reqs.append(pb.DetectRequest(frame_id=4, tiles=[encode_tile(tile[:16, :16], k, "raw") for k in range(3)],
                                 time_scale=FAST_SCALE))
    return [r.SerializeToString() for r in reqs]


def mutate(data: bytes, rng: np.random.Generator) -> bytes:
    b = bytearray(data)
    for _ in range(int(rng.integers(1, 6))):
        op = int(rng.integers(0, 5))
        if op == 0 and b:  # flip bits
            i = int(rng.integers(0, len(b)))
            b[i] ^= 1 << int(rng.integers(0, 8))
        elif op == 1 and b:  # random byte
            b[int(rng.integers(0, len(b)))] = int(rng.integers(0, 256))
        elif op == 2 and b:  # truncate
            del b[int(rng.integers(0, len(b))):]
        elif op == 3:  # insert a random chunk
            i = int(rng.integers(0, len(b) + 1))
            b[i:i] = rng.bytes(int(rng.integers(1, 32)))
        elif op == 4 and b:  # duplicate a slice
            i = int(rng.integers(0, len(b)))
            b[i:i] = b[i:i + int(rng.integers(1, 64))]
    return bytes(b)


def structured(rng: np.random.Generator) -> bytes:
    """A well-formed message with hostile field values (sizes, encodings, dtypes, scales)."""
    tiles = []
    for k in range(int(rng.integers(0, 4))):
        sides = [0, 1, 2, 7, 33, 64, 9000, 2**32 - 1]
        h, w, c = int(rng.choice(sides)), int(rng.choice(sides)), int(rng.choice([0, 1, 3, 4, 255]))
        kind = int(rng.integers(0, 6))  # 3..5 are not in the enum
        if rng.random() < 0.1:  # a valid raw tile of a tiny or odd size: must run and answer
            h, w, c, kind = int(rng.integers(1, 48)), int(rng.integers(1, 48)), 3, pb.RAW
            data = rng.integers(0, 256, h * w * 3, dtype=np.uint8).tobytes()
            dtype = "uint8"
        else:
            data = rng.bytes(int(rng.integers(0, 300)))
            dtype = str(rng.choice(["uint8", "float32", "", "uint16", "\x00\xff"]))
        tiles.append(pb.Tile(item_id=int(rng.integers(-2**63, 2**63 - 1)) if rng.random() < 0.2 else k,
                             encoding=kind, data=data, height=h, width=w, channels=c, dtype=dtype))
    scale = float(rng.choice([math.nan, math.inf, -1.0, 0.0, 1e300, 2e4, FAST_SCALE, -0.0]))
    return pb.DetectRequest(frame_id=int(rng.integers(-2**63, 2**63 - 1)), tiles=tiles, time_scale=scale).SerializeToString()


def test_fuzz_worker_stays_up_and_keeps_answering_correctly(worker):
    proc, client = worker
    pid = client.status().pid
    tile = scene_tile()
    valid = pb.DetectRequest(frame_id=3, tiles=[encode_tile(tile, 1, "raw")], time_scale=FAST_SCALE)
    reference = client.stub.Detect(valid, timeout=60).results[0]
    target = f"127.0.0.1:{proc.port()}"
    channel = grpc.insecure_channel(target, options=[("grpc.max_send_message_length", 80 * 2**20),
                                                     ("grpc.enable_http_proxy", 0)])
    methods = {name: channel.unary_unary(f"/hode.edge.EdgeWorker/{name}") for name in ("Detect", "Status", "Nope")}
    methods["Health"] = channel.unary_unary("/grpc.health.v1.Health/Check")
    rng = np.random.default_rng(2024)
    pool = seeds(tile)
    codes: dict[str, int] = {}
    bad: list[str] = []

    def call(method: str, payload: bytes, timeout: float = 30.0, cancel_after: float | None = None) -> None:
        try:
            if cancel_after is None:
                methods[method](payload, timeout=timeout)
            else:  # the caller goes away on its own
                fut = methods[method].future(payload, timeout=timeout)
                time.sleep(cancel_after)
                fut.cancel()
                fut.result()
            code, detail = grpc.StatusCode.OK, ""
        except grpc.FutureCancelledError:
            code, detail = grpc.StatusCode.CANCELLED, ""
        except grpc.RpcError as e:
            code, detail = e.code(), e.details() or ""
        codes[code.name] = codes.get(code.name, 0) + 1
        # grpc's own health service answers garbage with INTERNAL "Exception deserializing request!"
        stock = method == "Health" and code == grpc.StatusCode.INTERNAL and "deserializ" in detail.lower()
        gave_up = (timeout < 30 or cancel_after is not None) and code in GIVEN_UP
        if code not in ALLOWED and not stock and not gave_up:
            bad.append(f"{method} {len(payload)} bytes: {code.name}: {detail[:200]}")

    def check_reference() -> None:
        got = client.stub.Detect(valid, timeout=20).results
        assert len(got) == 1 and got[0].item_id == 1
        np.testing.assert_allclose(np.asarray(got[0].boxes), np.asarray(reference.boxes), atol=1e-3)
        np.testing.assert_allclose(np.asarray(got[0].scores), np.asarray(reference.scores), atol=1e-4)
        assert client.serving()

    start = time.monotonic()
    sent = 0
    with ThreadPoolExecutor(max_workers=16) as ex:
        for payload in (bytes(66 * 2**20), seeds(tile)[0] + bytes(65 * 2**20)):  # over the 64 MB limit
            ex.submit(call, "Detect", payload)
        sent += 2
        while sent < REQUESTS and time.monotonic() - start < TIME_LIMIT_S:
            jobs = []
            for _ in range(REFERENCE_EVERY):
                r = rng.random()
                if r < 0.1:  # a valid request whose caller gives up: a deadline, or a cancel
                    valid_one = pool[int(rng.integers(0, len(pool)))]  # identical ones queue together
                    if rng.random() < 0.5:
                        jobs.append(("Detect", valid_one, float(rng.uniform(0.002, 0.3))))
                    else:
                        jobs.append(("Detect", valid_one, 30.0, float(rng.uniform(0.0, 0.2))))
                elif r < 0.55:
                    jobs.append(("Detect", rng.bytes(int(rng.integers(0, 512)))))
                elif r < 0.75:
                    jobs.append(("Detect", mutate(pool[int(rng.integers(0, len(pool)))], rng)))
                elif r < 0.95:
                    jobs.append(("Detect", structured(rng)))
                else:
                    jobs.append((str(rng.choice(["Status", "Nope", "Health"])), rng.bytes(int(rng.integers(0, 64)))))
            list(ex.map(lambda j: call(*j), jobs))
            sent += len(jobs)
            check_reference()
    elapsed = time.monotonic() - start
    print(f"fuzz: {sent} requests in {elapsed:.1f} s: {codes}")
    assert not bad, f"{len(bad)} unexpected answers, e.g. {bad[:5]}"
    assert sent >= REQUESTS, f"only {sent} requests in {elapsed:.0f} s"
    assert running(proc.pid) and client.status().pid == pid, "the worker restarted or died"
    assert codes.get("OK", 0) > 50 and codes.get("INVALID_ARGUMENT", 0) > 300, codes
    assert codes.get("RESOURCE_EXHAUSTED", 0) >= 2, codes
    assert codes.get("DEADLINE_EXCEEDED", 0) > 10 and codes.get("CANCELLED", 0) > 10, codes
    check_reference()
    channel.close()
    # Nothing left in the worker's line: the queue drains, and a fresh request waits for nobody.
    deadline = time.monotonic() + 30
    while client.status().queue and time.monotonic() < deadline:
        time.sleep(0.05)
    assert client.status().queue == 0, "tiles of callers that gave up are still counted as queued"
    t0 = time.perf_counter()
    fresh = client.stub.Detect(valid, timeout=30)
    wall = time.perf_counter() - t0
    assert wall < fresh.results[0].service_s + 1.0, (wall, fresh.results[0].service_s)
