"""One Triton server as the camera sees it: a ``tritonclient`` gRPC connection to one model, the
start-up checks that turn a wrong URL, a model that is not loaded or a tensor mismatch into one
clear line, asynchronous inference requests, health probes and the server's own statistics."""
from __future__ import annotations

import json
import re
import time
from typing import Callable, Sequence

import numpy as np

from hode.cluster.triton.wire import INPUT, INPUT_DTYPE, OUTPUT_DTYPES, OUTPUTS, tiles_tensor, unpack
from hode.errors import ConfigError, HodeError
from hode.types import Detections

# A padded 512 tile (the size the tiler sends most): the start-up probe and the speed estimate use it.
PROBE_TILE = (608, 704, 3)


class TritonError(HodeError):
    """A Triton server or model is unusable: unreachable, model not loaded, a tensor mismatch."""


def status_name(e: BaseException) -> str:
    """The gRPC status of a tritonclient error (``UNAVAILABLE``, ...), ``""`` if it has none."""
    s = getattr(e, "status", None)
    s = s() if callable(s) else s
    return str(s or "").replace("StatusCode.", "")


def message(e: BaseException) -> str:
    """The first sentence of a tritonclient error, without Triton's request-id prefix and advice."""
    m = getattr(e, "message", None)
    m = str((m() if callable(m) else m) or e).strip()
    if not m:
        return type(e).__name__
    m = re.sub(r"^\[request id: [^\]]*\]\s*", "", m.splitlines()[0])
    return m.split(". NOTE:")[0]


class TritonNode:
    """``url`` (``host:port``, gRPC) serving ``model``; ``name`` is the topology node's."""

    def __init__(self, name: str, url: str, model: str) -> None:
        import tritonclient.grpc as grpcclient

        self.name, self.url, self.model = name, url, model
        self._grpc = grpcclient
        self.detector: dict | None = None  # the served detector's settings, as its config.pbtxt says
        self.max_batch_size = 0
        try:
            self.client = grpcclient.InferenceServerClient(url=url)
        except Exception as e:  # a malformed url
            raise TritonError(f"triton node '{name}': bad url {url!r} ({message(e)})") from None

    def where(self) -> str:
        return f"triton node '{self.name}' ({self.url}, model '{self.model}')"

    def check(self, timeout: float) -> None:
        """Server live and ready, model loaded with the tensors of :mod:`.wire`: else one line."""
        try:
            live = self.client.is_server_live(client_timeout=timeout)
        except Exception as e:
            raise TritonError(f"{self.where()}: no Triton server answers there ({status_name(e) or message(e)}); "
                              "check the url and that the server is running") from None
        if not live:
            raise TritonError(f"{self.where()}: the server says it is not live")
        try:
            ready = self.client.is_model_ready(self.model, client_timeout=timeout)
        except Exception as e:
            raise TritonError(f"{self.where()}: model readiness check failed: {message(e)}") from None
        if not ready:
            raise TritonError(f"{self.where()}: model '{self.model}' is not loaded on the server "
                              f"(loaded: {', '.join(self.loaded_models(timeout)) or 'none'})")
        meta = self.client.get_model_metadata(self.model, as_json=True, client_timeout=timeout)
        self._check_tensors(meta)
        config = self.client.get_model_config(self.model, as_json=True, client_timeout=timeout).get("config", {})
        spec = config.get("parameters", {}).get("hode_detector", {}).get("string_value")
        self.detector = json.loads(spec) if spec else None  # None: not a model of hode.cluster.triton.repo
        self.max_batch_size = int(config.get("max_batch_size", 0))

    def loaded_models(self, timeout: float) -> list[str]:
        try:
            index = self.client.get_model_repository_index(as_json=True, client_timeout=timeout)
        except Exception:
            return []
        return sorted(m["name"] for m in index.get("models", []) if m.get("state") == "READY")

    def _check_tensors(self, meta: dict) -> None:
        ins = {t["name"]: t for t in meta.get("inputs", [])}
        outs = {t["name"]: t for t in meta.get("outputs", [])}
        want = f"{INPUT} {INPUT_DTYPE} [n, H, W, 3] -> {', '.join(OUTPUTS)}"
        have = ", ".join(f"{t['name']} {t['datatype']} {t.get('shape')}" for t in ins.values())
        t = ins.get(INPUT)
        shape = [int(x) for x in t.get("shape", [])] if t else []
        ok = (set(ins) == {INPUT} and t["datatype"] == INPUT_DTYPE and len(shape) == 4 and shape[-1] in (3, -1)
              and all(outs.get(n, {}).get("datatype") == d for n, d in OUTPUT_DTYPES.items()))
        if not ok:
            raise TritonError(f"{self.where()}: tensor mismatch: the model takes {have or 'no inputs'} and gives "
                              f"{', '.join(outs) or 'nothing'}; runner=triton sends {want} "
                              "(python -m hode.cluster.triton.repo writes such a model)")

    def infer(self, crops: Sequence[np.ndarray], timeout: float) -> list[Detections]:
        """Blocking inference (start-up probe and re-admission)."""
        result = self.client.infer(self.model, self._inputs(crops), outputs=self._outputs(), client_timeout=timeout)
        return unpack(*(result.as_numpy(n) for n in OUTPUTS))

    def probe(self, timeout: float) -> float:
        """One probe tile through the model; returns the round trip (s). Raises :class:`TritonError`
        naming the server's complaint (e.g. a model with a fixed input of another size)."""
        t = time.perf_counter()
        try:
            self.infer([np.zeros(PROBE_TILE, np.uint8)], timeout)
        except Exception as e:
            raise TritonError(f"{self.where()}: a {PROBE_TILE[0]}x{PROBE_TILE[1]} tile was refused: {message(e)}") from None
        return time.perf_counter() - t

    def infer_async(self, crops: Sequence[np.ndarray], done: Callable[[list[Detections] | None, BaseException | None], None],
                    timeout: float) -> None:
        """Send ``crops`` (one shape); ``done(detections, None)`` or ``done(None, error)`` runs on a gRPC thread."""
        def callback(result, error) -> None:
            if error is not None:
                done(None, error)
                return
            try:
                dets = unpack(*(result.as_numpy(n) for n in OUTPUTS))
            except Exception as e:
                done(None, e)
                return
            done(dets, None)

        self.client.async_infer(self.model, self._inputs(crops), callback, outputs=self._outputs(), client_timeout=timeout)

    def healthy(self, timeout: float) -> bool:
        try:
            return bool(self.client.is_server_live(client_timeout=timeout)
                        and self.client.is_model_ready(self.model, client_timeout=timeout))
        except Exception:
            return False

    def statistics(self, timeout: float = 5.0) -> dict:
        """Server-side request counts and times of the model (Triton's statistics endpoint)."""
        try:
            st = self.client.get_inference_statistics(self.model, as_json=True, client_timeout=timeout)
        except Exception:
            return {}
        s = (st.get("model_stats") or [{}])[0]
        inf = s.get("inference_stats", {})
        ms = lambda k: int(inf.get(k, {}).get("ns", 0)) / 1e6  # noqa: E731
        count = int(inf.get("success", {}).get("count", 0))
        batches = {int(b["batch_size"]): int(b.get("compute_infer", {}).get("count", 0)) for b in s.get("batch_stats", [])}
        return {"requests": count, "executions": int(s.get("execution_count", 0)),
                "request_ms": ms("success"), "queue_ms": ms("queue"), "compute_ms": ms("compute_infer"),
                "batch_sizes": batches}

    def _inputs(self, crops: Sequence[np.ndarray]) -> list:
        arr = tiles_tensor(crops)
        inp = self._grpc.InferInput(INPUT, list(arr.shape), INPUT_DTYPE)
        inp.set_data_from_numpy(arr)
        return [inp]

    def _outputs(self) -> list:
        return [self._grpc.InferRequestedOutput(n) for n in OUTPUTS]

    def close(self) -> None:
        try:
            self.client.close()
        except Exception:
            pass


def node_url(node, where: str) -> str:
    """A topology node's ``url`` (``host:port``; ``host``/``port`` also accepted)."""
    url = node.extra.get("url") or (f"{node.host}:{node.port}" if node.host and node.port else None)
    if not isinstance(url, str) or ":" not in url:
        raise ConfigError(f"{where}: topology node '{node.name}' needs url: host:port (a Triton gRPC endpoint), "
                          f"got {url!r}")
    return url.removeprefix("grpc://")
