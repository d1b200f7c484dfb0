"""The Triton Python-backend model that serves the harness's detector (copied as ``model.py`` into
every model folder :mod:`hode.cluster.triton.repo` writes).

It runs inside Triton's Python-backend stub, which must be able to ``import hode`` (the stub's
interpreter has this project installed; :mod:`hode.cluster.triton.serve` arranges it for the bundled
server, docs/triton.md for a stock container or a Jetson). The detector is built from the
``hode_detector`` parameter of ``config.pbtxt`` (the settings of ``conf/detector/<model>.yaml`` and
the run's shared ones), so the server detects what ``runner=inline`` would with the same settings.

Every request Triton's dynamic batcher hands over in one ``execute`` is predicted in one call
(:meth:`YoloDetector.predict` groups crops by shape), then split back per request.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils  # provided by Triton's Python backend

from hode.cluster.triton.wire import INPUT, OUTPUTS, pack


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        from hode.config import build

        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        spec = json.loads(params["hode_detector"])
        here = Path(args["model_repository"]) / args["model_version"]
        if not os.path.isabs(spec["weights"]):  # weights shipped inside the model folder
            spec["weights"] = str(here / spec["weights"])
        threads = int(params.get("torch_threads", "0") or 0)
        if threads > 0:
            import torch

            torch.set_num_threads(threads)
        self.detector = build(spec)
        self.detector.warmup()

    def execute(self, requests: list) -> list:
        crops, sizes = [], []
        for request in requests:
            tiles = _numpy(pb_utils.get_input_tensor_by_name(request, INPUT))
            crops.extend(tiles)
            sizes.append(len(tiles))
        dets = self.detector.predict(crops)
        responses, k = [], 0
        for n in sizes:
            out = pack(dets[k:k + n])
            k += n
            responses.append(pb_utils.InferenceResponse(
                output_tensors=[_tensor(name, out[name]) for name in OUTPUTS]))
        return responses


# Tensors cross the stub through DLPack, not its numpy bridge: the stub's pybind11 reads numpy 1's
# array-descriptor layout, and with numpy 2 it sends outputs of zero bytes.
def _numpy(tensor) -> np.ndarray:
    return np.from_dlpack(tensor)


def _tensor(name: str, array: np.ndarray):
    return pb_utils.Tensor.from_dlpack(name, np.ascontiguousarray(array))
