"""gRPC's I/O path (hode/edge/grpc_io.py): chosen before grpc loads, left alone when it cannot or
should not be, and real calls work on it. Each case runs in a fresh interpreter (core reads
GRPC_EXPERIMENTS once per process)."""
from __future__ import annotations

import os
import subprocess
import sys
from importlib import metadata

from hode.edge.grpc_io import DIRECT_POLLING, MEASURED_ON, prefer_direct_polling

MEASURED = metadata.version("grpcio").startswith(MEASURED_ON)

# A health check over loopback with client and server in this process, both on whatever path the
# process picked; prints the path and the answer.
ROUND_TRIP = """
import os
import hode.edge.server  # first, as a worker does
from concurrent import futures
import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
port = server.add_insecure_port("127.0.0.1:0")
server.start()
with grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.enable_http_proxy", 0)]) as ch:
    reply = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=10)
server.stop(0)
print(repr(os.environ.get("GRPC_EXPERIMENTS")), health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))
"""


def run_python(code: str, **env_changes: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "GRPC_EXPERIMENTS"}
    env.update({k: v for k, v in env_changes.items() if v is not None})
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)


def test_a_fresh_process_takes_the_direct_path_and_calls_work():
    out = run_python(ROUND_TRIP)
    assert out.returncode == 0, out.stderr
    expected = repr(DIRECT_POLLING) if MEASURED else "None"
    assert out.stdout.split() == [expected, "SERVING"]
    assert "Unknown experiment" not in out.stderr  # every name exists in this grpcio


def test_the_users_setting_wins_even_an_empty_one():
    out = run_python(ROUND_TRIP, GRPC_EXPERIMENTS="")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["''", "SERVING"]
    env = {"GRPC_EXPERIMENTS": "-something"}
    assert prefer_direct_polling(env) is False and env == {"GRPC_EXPERIMENTS": "-something"}


def test_too_late_once_grpc_is_loaded():
    out = run_python("import grpc, os, hode.edge.client; print(repr(os.environ.get('GRPC_EXPERIMENTS')))")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "None"
    import grpc  # noqa: F401  (loaded in this test process now, if it was not already)

    env: dict = {}
    assert prefer_direct_polling(env) is False and env == {}
