#!/usr/bin/env python
"""runner=live against runner=triton on loopback, side by side in one run, same model (yolov5n),
same real 704x608 tiles of a synthetic crowd frame, every node at this machine's real speed with
one torch thread (no device emulation):

  overhead     sequential single-tile requests on an idle node: mean round trip, mean compute
               (live: the worker's inference time per tile; triton: the model's execution time
               from Triton's statistics endpoint) and their difference, the per-tile overhead.
  batching     ``k`` tiles in one request (k = 1, 4, 16), one request at a time: ms per tile and
               the gain over k = 1. Triton's model predicts a request's tiles as one batch; the
               live worker runs them one by one. Triton also with ``k`` single-tile requests in
               flight at once, merged by its dynamic batcher (the batch sizes it formed are listed).
  all busy     ``--tiles`` tiles on every node at once through each runner's Backend (one request
               per node, ``batch: 0`` as both runners' configs default): aggregate tiles/s; then
               Triton again with ``batch: 1`` (one tile per request, ``max_requests`` in flight).

    python experiments/bench_triton.py                    # 2 nodes per runner; about 4 min here
    python experiments/bench_triton.py --nodes 1 --reps 3
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import numpy as np

from hode.cluster.live import LiveBackend  # first: it picks gRPC's I/O path before grpc loads
from hode.cluster.topology import Topology
from hode.cluster.triton.backend import TritonBackend
from hode.cluster.triton.client import TritonNode
from hode.cluster.triton.serve import free_port
from hode.config import ROOT
from hode.tasks.profile import cpu_name
from hode.types import WorkItem


def tile_image() -> np.ndarray:
    from hode.data.synthetic import SyntheticCrowd

    frame = next(iter(SyntheticCrowd(width=1024, height=768, frames=1, seed=5)))
    return np.ascontiguousarray(frame.image[100:708, 200:904])  # 608 x 704: a padded 512 tile


def start_servers(n: int, work: Path, threads: int, max_batch: int) -> list[tuple[subprocess.Popen, str]]:
    out = []
    for i in range(n):
        port = free_port()
        log = open(work / f"triton-{i}.log", "w")
        proc = subprocess.Popen([sys.executable, "-m", "hode.cluster.triton.serve", "--grpc-port", str(port),
                                 "--workdir", str(work / f"server-{i}"), "--model", "yolov5n",
                                 "--torch-threads", str(threads), "--max-batch-size", str(max_batch)],
                                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        out.append((proc, f"127.0.0.1:{port}"))
    return out


def wait_ready(servers, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    for proc, url in servers:
        node = TritonNode("bench", url, "yolov5n")
        while not node.healthy(1.0):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"tritonserver at {url} did not come up")
            time.sleep(0.5)


def run_items(backend, frame_id: int, per_node: int, nodes: int, image: np.ndarray) -> float:
    """``per_node`` tiles on every node at once; seconds until the last one is back."""
    items = [WorkItem(frame_id, k, (0, 0, image.shape[1], image.shape[0]), image) for k in range(per_node * nodes)]
    t0 = time.perf_counter()
    backend.submit(frame_id, items, [k % nodes for k in range(len(items))])
    got = 0
    while got < len(items):
        got += len(backend.poll(timeout=5.0))
    return time.perf_counter() - t0


def live_requests(client, image: np.ndarray, k: int, reps: int) -> tuple[list[float], list[float]]:
    """``reps`` Detect calls of ``k`` tiles, one at a time: round trips and compute per call (s)."""
    rtt, compute = [], []
    for r in range(reps):
        req = client.request(50_000 + r, [(i, image) for i in range(k)])
        reply, sent, received = client.detect(req, timeout=600)
        rtt.append(received - sent)
        compute.append(sum(t.compute_s for t in reply.results))
    return rtt, compute


def triton_requests(node: TritonNode, image: np.ndarray, k: int, reps: int) -> tuple[list[float], float]:
    """``reps`` requests of ``k`` tiles, one at a time: round trips (s), and the model's mean
    execution time per request from the statistics endpoint (s)."""
    before = node.statistics()
    rtt = []
    for _ in range(reps):
        t0 = time.perf_counter()
        node.infer([image] * k, timeout=600)
        rtt.append(time.perf_counter() - t0)
    after = node.statistics()
    return rtt, (after["compute_ms"] - before["compute_ms"]) / 1000 / max(after["requests"] - before["requests"], 1)


def triton_concurrent(node: TritonNode, image: np.ndarray, k: int) -> tuple[float, dict]:
    """``k`` single-tile requests in flight at once: seconds for all, and the batch sizes Triton formed."""
    import threading

    before = node.statistics()
    left, done = [k], threading.Event()

    def cb(dets, err) -> None:
        left[0] -= 1
        if err is not None or left[0] == 0:
            done.set()

    t0 = time.perf_counter()
    for _ in range(k):
        node.infer_async([image], cb, timeout=600)
    done.wait(600)
    wall = time.perf_counter() - t0
    after = node.statistics()
    formed = {b: n - before["batch_sizes"].get(b, 0) for b, n in after["batch_sizes"].items()
              if n - before["batch_sizes"].get(b, 0)}
    return wall, formed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=2, help="nodes per runner (all-busy phase)")
    ap.add_argument("--pings", type=int, default=8, help="sequential single-tile requests for the overhead")
    ap.add_argument("--reps", type=int, default=3, help="requests per batch size")
    ap.add_argument("--tiles", type=int, default=16, help="tiles per node in the all-busy phase")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per node")
    ap.add_argument("--encoding", default="jpeg", choices=["jpeg", "png", "raw"], help="live's tile payload")
    ap.add_argument("--out", default=None, help="results dir (default outputs/bench_triton/<time>)")
    args = ap.parse_args()
    out = Path(args.out) if args.out else ROOT / "outputs" / "bench_triton" / datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench-triton-"))
    image = tile_image()
    n, ks = args.nodes, (1, 4, 16)

    servers = start_servers(n, work, args.threads, max(ks))
    topo = Topology([{"name": f"w{i}", "model": "yolov5n"} for i in range(n)], "bench")
    live = LiveBackend(topo, emulation={"enabled": False}, transport={"encoding": args.encoding, "batch": 0},
                       workers={"torch_threads": args.threads, "log_dir": str(out / "workers")})
    tri = TritonBackend(Topology([{"name": f"t{i}", "model": "yolov5n", "url": url} for i, (_, url) in enumerate(servers)]),
                        batch=0)
    res: dict = {"machine": f"{cpu_name()}, {os.cpu_count()} CPUs (shared with other jobs), no GPU",
                 "nodes": n, "torch_threads": args.threads, "tile": list(image.shape), "live_encoding": args.encoding}
    try:
        live.start()
        wait_ready(servers)
        tri.start()
        lc, tn = live._links[0].client, tri.links[0].client
        live_requests(lc, image, 1, 2)  # warm both paths
        triton_requests(tn, image, 1, 2)
        # overhead
        rtt, comp = live_requests(lc, image, 1, args.pings)
        res["live_overhead"] = {"rtt_ms": 1000 * np.mean(rtt), "compute_ms": 1000 * np.mean(comp),
                                "overhead_ms": 1000 * (np.mean(rtt) - np.mean(comp))}
        rtt, comp_t = triton_requests(tn, image, 1, args.pings)
        res["triton_overhead"] = {"rtt_ms": 1000 * np.mean(rtt), "compute_ms": 1000 * comp_t,
                                  "overhead_ms": 1000 * (np.mean(rtt) - comp_t)}
        # batching
        res["batching"] = {}
        for k in ks:
            l_rtt, _ = live_requests(lc, image, k, args.reps)
            t_rtt, _ = triton_requests(tn, image, k, args.reps)
            wall, formed = triton_concurrent(tn, image, k)
            res["batching"][k] = {"live_ms_per_tile": 1000 * np.mean(l_rtt) / k,
                                  "triton_ms_per_tile": 1000 * np.mean(t_rtt) / k,
                                  "triton_concurrent_ms_per_tile": 1000 * wall / k, "triton_batches_formed": formed}
            print(f"k={k}: {res['batching'][k]}", flush=True)
        # all busy
        res["all_busy_tiles_per_s"] = {"live": n * args.tiles / run_items(live, 90_000, args.tiles, n, image),
                                       "triton": n * args.tiles / run_items(tri, 90_000, args.tiles, n, image)}
        tri.settings.batch = 1  # one tile per request, max_requests in flight: the batcher merges what it finds
        res["all_busy_tiles_per_s"]["triton_batch1"] = n * args.tiles / run_items(tri, 90_001, args.tiles, n, image)
    finally:
        tri.close()
        live.close()
        for proc, _ in servers:
            proc.terminate()
        for proc, _ in servers:
            proc.wait(timeout=60)
    b1 = res["batching"][1]
    for k in ks:
        b = res["batching"][k]
        b["live_gain"] = b1["live_ms_per_tile"] / b["live_ms_per_tile"]
        b["triton_gain"] = b1["triton_ms_per_tile"] / b["triton_ms_per_tile"]
        b["triton_concurrent_gain"] = b1["triton_ms_per_tile"] / b["triton_concurrent_ms_per_tile"]
    (out / "results.json").write_text(json.dumps(res, indent=1, default=float))
    lo, to = res["live_overhead"], res["triton_overhead"]
    print(f"\nmachine: {res['machine']}; {n} node(s) per runner, {args.threads} torch thread(s) each; "
          f"live tiles as {args.encoding}, triton as raw UINT8")
    print("| | runner=live | runner=triton |\n|---|---|---|")
    print(f"| one tile: round trip (ms) | {lo['rtt_ms']:.1f} | {to['rtt_ms']:.1f} |")
    print(f"| one tile: compute (ms) | {lo['compute_ms']:.1f} | {to['compute_ms']:.1f} |")
    print(f"| one tile: overhead = round trip - compute (ms) | {lo['overhead_ms']:.1f} | {to['overhead_ms']:.1f} |")
    for k in ks:
        b = res["batching"][k]
        print(f"| {k} tile(s) per request: ms/tile (gain vs 1) | {b['live_ms_per_tile']:.0f} ({b['live_gain']:.2f}x) | "
              f"{b['triton_ms_per_tile']:.0f} ({b['triton_gain']:.2f}x) |")
    for k in ks[1:]:
        b = res["batching"][k]
        print(f"| triton, {k} one-tile requests at once: ms/tile (gain; batches formed) | | "
              f"{b['triton_concurrent_ms_per_tile']:.0f} ({b['triton_concurrent_gain']:.2f}x; {b['triton_batches_formed']}) |")
    a = res["all_busy_tiles_per_s"]
    print(f"| all {n} nodes busy, {args.tiles} tiles each (one request per node): tiles/s | {a['live']:.2f} | "
          f"{a['triton']:.2f} |")
    print(f"| the same, triton with batch: 1 (one tile per request, up to 8 in flight): tiles/s | | "
          f"{a['triton_batch1']:.2f} |")
    print(f"results: {out / 'results.json'}")


if __name__ == "__main__":
    main()
