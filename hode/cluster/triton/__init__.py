"""``runner=triton``: the camera's edge nodes are Triton Inference Servers spoken to over KServe v2
(the open inference protocol) on gRPC, with ``tritonclient`` (docs/triton.md).

- :mod:`.backend`: :class:`TritonBackend`, the Backend seam (requests, replies, node speed).
- :mod:`.health`: live/ready checks, mark-down, re-dispatch, hedging, re-admission
  (the policy of :mod:`hode.cluster.failover`, shared with ``runner=live``).
- :mod:`.client`: one server: start-up checks with one-line errors, async inference, statistics.
- :mod:`.settings`: :class:`TritonSettings` (``runner.backend``).
- :mod:`.wire`: the request and reply tensors.
- :mod:`.repo`: a model repository (config.pbtxt + Python-backend ``model.py``) for any Triton.
- :mod:`.model`: that ``model.py``: the harness's detector inside Triton, dynamic batching.
- :mod:`.serve`: a real server on this machine (the binary ``nvidia-pytriton`` bundles).
"""
from __future__ import annotations

__all__ = ["TritonBackend"]


def __getattr__(name: str):
    if name == "TritonBackend":  # lazily: the served model imports .wire without tritonclient
        from hode.cluster.triton.backend import TritonBackend

        return TritonBackend
    raise AttributeError(name)
