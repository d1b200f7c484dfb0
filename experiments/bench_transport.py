#!/usr/bin/env python
"""Transport on loopback: per-tile RPC overhead, and parallel throughput against standalone rates.

Real worker processes (``runner=live``'s LiveBackend, real yolov5n on real 704x608 tiles of a
synthetic crowd frame, JPEG by default), all paced to one benchmark device profile with no noise,
so a tile's service time is known and everything else is transport:

  overhead     sequential single-tile Detect calls on an idle worker (the worst case: nothing to
               overlap the tile's decode with); per call
               round trip - service time (the issue's definition: the worker's payload decode and
               everything else outside the tile's service counts as overhead), the same less the
               decode the worker reports (decode counted as the worker's per-tile work), and
               round trip - time inside the worker (wire and gRPC only); medians.
               Then ``--batch`` tiles a call, as the live runner sends a node's tiles of a frame:
               (round trip - their service) / tiles, the call's costs shared and all but the first
               tile's decode overlapped with the tiles before it.
  standalone   each worker alone, ``--tiles`` tiles queued at once through the backend: its rate.
  all busy     ``--tiles`` tiles on every worker at once: the aggregate rate, divided by the sum of
               the standalone rates (1.0 = the harness keeps every worker as busy as alone).

Overruns (real inference slower than the paced time; the emulation could not keep up) are counted
per phase: with overruns the "all busy" ratio measures this machine's CPU, not the transport.

    python experiments/bench_transport.py                       # 5 workers, JPEG q90
    python experiments/bench_transport.py --nodes 2 --encoding raw --tiles 10
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from datetime import datetime
from pathlib import Path

import numpy as np

from hode.cluster.live import LiveBackend  # first: it picks gRPC's I/O path before grpc loads
from hode.cluster.topology import Topology
from hode.config import ROOT
from hode.edge.client import outcomes, server_time_s
from hode.edge.grpc_io import DIRECT_POLLING
import grpc  # noqa: E402  (after hode.cluster.live, see above)
from hode.types import WorkItem


def tile_image() -> np.ndarray:
    from hode.data.synthetic import SyntheticCrowd

    frame = next(iter(SyntheticCrowd(width=1024, height=768, frames=1, seed=5)))
    return np.ascontiguousarray(frame.image[100:708, 200:904])  # 608 x 704: a padded 512 tile


def run_items(backend: LiveBackend, frame_id: int, per_node: dict[int, int], image: np.ndarray) -> float:
    """Queue ``per_node[i]`` tiles on node i at once; seconds until the last one is back."""
    items, assignment = [], []
    for node, n in per_node.items():
        for _ in range(n):
            items.append(WorkItem(frame_id, len(items), (0, 0, image.shape[1], image.shape[0]), image))
            assignment.append(node)
    t0 = time.perf_counter()
    backend.submit(frame_id, items, assignment)
    got = 0
    while got < len(items):
        got += len(backend.poll(timeout=5.0))
    return time.perf_counter() - t0


def overheads(backend: LiveBackend, image: np.ndarray, pings: int) -> dict:
    """Sequential single-tile calls straight through each node's client (no queueing anywhere)."""
    vs_service, vs_server, encode, decode, before, after, req_leg, reply_leg = [], [], [], [], [], [], [], []
    for link in backend._links:
        for k in range(pings + 1):
            t0 = time.perf_counter()
            req = link.client.request(10_000 + k, [(0, image)], backend.time_scale)
            encode.append(time.perf_counter() - t0)
            reply, sent, received = link.client.detect(req, timeout=120)
            if k == 0:
                continue  # the first call of a channel pays for connection set-up
            rtt = received - sent
            tile = reply.results[0]
            vs_service.append(rtt - tile.service_s)
            vs_server.append(rtt - server_time_s(reply))
            decode.append(tile.decode_s)
            before.append(tile.started - reply.received)  # in the worker, before the tile's service
            after.append(reply.sent - tile.finished)  # in the worker, after it (reply built)
            # The two legs apart: on one host the worker's clock (perf_counter = CLOCK_MONOTONIC) is ours.
            req_leg.append(reply.received - sent)  # send -> the worker's handler runs (gRPC both sides)
            reply_leg.append(received - reply.sent)  # reply built -> back in our hands (gRPC both sides)
    # The floors: an empty Status call (no payload, no device) back to back, and after the worker
    # sat idle as long as a paced tile: gRPC's own wake-up after idle, which every Detect above pays.
    status, status_idle = [], []
    idle_s = min(backend.time_scale * 0.02, 1.0)
    for link in backend._links:
        for _ in range(pings):
            t0 = time.perf_counter()
            link.client.status()
            status.append(time.perf_counter() - t0)
        for _ in range(3):
            time.sleep(idle_s)
            t0 = time.perf_counter()
            link.client.status()
            status_idle.append(time.perf_counter() - t0)
    ms = lambda a: float(np.median(a) * 1000)  # noqa: E731
    no_decode = np.asarray(vs_service) - np.asarray(decode)
    return {"rtt_minus_service_ms_p50": ms(vs_service), "rtt_minus_service_and_decode_ms_p50": ms(no_decode),
            "rtt_minus_worker_time_ms_p50": ms(vs_server), "decode_ms_p50": ms(decode),
            "worker_before_service_ms_p50": ms(before), "worker_after_service_ms_p50": ms(after),
            "request_leg_ms_p50": ms(req_leg), "reply_leg_ms_p50": ms(reply_leg),
            "status_rpc_ms_p50": ms(status), "status_rpc_after_idle_ms_p50": ms(status_idle),
            "rtt_minus_service_ms_p90": float(np.percentile(vs_service, 90) * 1000), "encode_ms_p50": ms(encode),
            "calls": len(vs_service), "payload_bytes": len(req.tiles[0].data)}


def batched_overhead(backend: LiveBackend, image: np.ndarray, per_call: int, pings: int) -> float:
    """Median per-tile overhead with ``per_call`` tiles in one Detect request (``runner.backend.transport.batch``):
    (round trip - the tiles' service times) / tiles, the call's fixed costs shared by its tiles."""
    out = []
    for link in backend._links:
        for k in range(pings + 1):
            req = link.client.request(20_000 + k, [(i, image) for i in range(per_call)], backend.time_scale)
            reply, sent, received = link.client.detect(req, timeout=600)
            if k:
                out.append((received - sent - sum(t.service_s for t in reply.results)) / per_call)
    return float(np.median(out) * 1000)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=5)
    ap.add_argument("--tiles", type=int, default=16, help="tiles per worker in the throughput phases")
    ap.add_argument("--pings", type=int, default=8, help="sequential calls per worker for the overhead")
    ap.add_argument("--tile-ms", type=float, default=20.0, help="emulated device time of one tile")
    ap.add_argument("--time-scale", default="auto", help="wall s per device s, or auto")
    ap.add_argument("--encoding", default="jpeg", choices=["jpeg", "png", "raw"])
    ap.add_argument("--quality", type=int, default=90)
    ap.add_argument("--batch", type=int, default=4, help="tiles per request for the batched overhead (0: skip)")
    ap.add_argument("--out", default=None, help="results dir (default outputs/bench_transport/<time>)")
    args = ap.parse_args()

    out = Path(args.out) if args.out else ROOT / "outputs" / "bench_transport" / datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    out.mkdir(parents=True, exist_ok=True)
    profiles = Path(tempfile.mkdtemp(prefix="bench-profiles-"))
    (profiles / "bench.yaml").write_text(
        "name: bench\nsource: benchmark constant\nmodels:\n"
        f"  yolov5n: {{tile_ms: {args.tile_ms}, frame4k_ms: {args.tile_ms * 20}, noise: 0.0}}\n")
    topo = Topology([{"name": f"w{i}", "model": "yolov5n", "device": "bench"} for i in range(args.nodes)], "bench")
    scale = args.time_scale if args.time_scale == "auto" else float(args.time_scale)
    backend = LiveBackend(topo, emulation={"enabled": True, "time_scale": scale},
                          transport={"encoding": args.encoding, "jpeg_quality": args.quality},
                          profiles_dir=str(profiles), workers={"log_dir": str(out / "workers")})
    image = tile_image()
    t_start = time.perf_counter()
    backend.start()
    print(f"{args.nodes} workers up in {time.perf_counter() - t_start:.1f} s; time_scale={backend.time_scale} "
          f"-> paced tile {args.tile_ms * backend.time_scale:.0f} ms wall", flush=True)
    print(f"grpcio {grpc.__version__}; GRPC_EXPERIMENTS={os.environ.get('GRPC_EXPERIMENTS', '')!r} "
          f"({'direct polling' if os.environ.get('GRPC_EXPERIMENTS') == DIRECT_POLLING else 'not the direct-polling set'}, "
          "see hode/edge/grpc_io.py)", flush=True)
    try:
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        over = overheads(backend, image, args.pings)
        if args.batch > 1:
            over["batched_per_tile_ms_p50"] = batched_overhead(backend, image, args.batch, max(args.pings // 4, 2))
            over["batched_tiles_per_call"] = args.batch
        ov0 = sum(s["overruns"] for s in backend.stats())
        standalone = []
        for i in range(args.nodes):
            standalone.append(args.tiles / run_items(backend, 100 + i, {i: args.tiles}, image))
        ov1 = sum(s["overruns"] for s in backend.stats())
        busy_s = run_items(backend, 200, {i: args.tiles for i in range(args.nodes)}, image)
        ov2 = sum(s["overruns"] for s in backend.stats())
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    finally:
        backend.close()
    aggregate = args.nodes * args.tiles / busy_s
    ideal = 1.0 / (args.tile_ms * backend.time_scale / 1000)
    results = {
        "bench": "transport", "nodes": args.nodes, "tiles_per_node": args.tiles, "encoding": args.encoding,
        "jpeg_quality": args.quality if args.encoding == "jpeg" else None, "tile": list(image.shape),
        "grpcio": grpc.__version__, "grpc_experiments": os.environ.get("GRPC_EXPERIMENTS", ""),
        "time_scale": backend.time_scale, "paced_tile_ms": args.tile_ms * backend.time_scale,
        "overhead": over,
        "standalone_tiles_per_s": standalone, "standalone_vs_paced_ideal": [r / ideal for r in standalone],
        "all_busy_tiles_per_s": aggregate, "all_busy_over_sum_standalone": aggregate / sum(standalone),
        "overruns": {"standalone": ov1 - ov0, "all_busy": ov2 - ov1},
        "camera_cpu_s": (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime),
    }
    (out / "results.json").write_text(json.dumps(results, indent=1))
    print(f"per-tile RPC overhead (median of {over['calls']} calls, {args.encoding}, {over['payload_bytes']} B):")
    print(f"  round trip - service time      {over['rtt_minus_service_ms_p50']:7.2f} ms   (target <= 2 ms; "
          f"ratio to target {over['rtt_minus_service_ms_p50'] / 2.0:.2f})")
    print(f"  round trip - service - decode  {over['rtt_minus_service_and_decode_ms_p50']:7.2f} ms   (the worker's "
          "decode counted as its work, not transport)")
    print(f"  round trip - time in worker    {over['rtt_minus_worker_time_ms_p50']:7.2f} ms   (wire and gRPC only)")
    print(f"  in the worker: decode {over['decode_ms_p50']:.2f} ms; before service {over['worker_before_service_ms_p50']:.2f} ms "
          f"(decode included), after {over['worker_after_service_ms_p50']:.2f} ms")
    print(f"  wire and gRPC, by leg          request {over['request_leg_ms_p50']:.2f} ms (send -> handler runs), "
          f"reply {over['reply_leg_ms_p50']:.2f} ms (reply built -> received)")
    if "batched_per_tile_ms_p50" in over:
        print(f"  per tile, {args.batch} tiles a call    {over['batched_per_tile_ms_p50']:7.2f} ms   "
              f"((round trip - their service) / {args.batch}; target <= 2 ms, ratio {over['batched_per_tile_ms_p50'] / 2.0:.2f}; "
              "how the runner sends: runner.backend.transport.batch=0, a node's tiles of a frame in one call)")
    print(f"  an empty Status call (floor)   {over['status_rpc_ms_p50']:7.2f} ms   back to back; "
          f"{over['status_rpc_after_idle_ms_p50']:.2f} ms after the worker sat idle")
    print(f"  camera-side encode             {over['encode_ms_p50']:7.2f} ms (not in the round trip)")
    print(f"throughput, {args.tiles} tiles per worker, paced tile {results['paced_tile_ms']:.0f} ms:")
    print(f"  sum of standalone rates        {sum(standalone):7.2f} tiles/s  ({', '.join(f'{r:.2f}' for r in standalone)})")
    print(f"  all {args.nodes} busy at once            {aggregate:7.2f} tiles/s")
    print(f"  all busy / sum standalone      {results['all_busy_over_sum_standalone']:7.3f}   (target >= 0.90)")
    print(f"  overruns standalone/all busy   {ov1 - ov0}/{ov2 - ov1}")
    print(f"results: {out / 'results.json'}")


if __name__ == "__main__":
    main()
