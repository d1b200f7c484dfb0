#!/usr/bin/env bash
# Regenerate the committed gRPC stubs from worker.proto (needs grpcio-tools: pip install -e .[dev]).
# Run from anywhere; the stubs import each other as hode.edge.worker_pb2.
# The generated code checks its runtime at import: it needs grpcio >= the grpcio-tools version
# used here and a protobuf runtime >= the protoc version named in worker_pb2.py's header
# (committed: grpcio-tools 1.85.1, protoc 7.35.1). Regenerate with older tools for older runtimes.
set -euo pipefail
cd "$(dirname "$0")/../.."
python -m grpc_tools.protoc -I. --python_out=. --pyi_out=. --grpc_python_out=. hode/edge/worker.proto
echo "regenerated hode/edge/worker_pb2.py, worker_pb2.pyi, worker_pb2_grpc.py"
