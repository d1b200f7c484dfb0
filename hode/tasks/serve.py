"""``task=serve``: run one edge worker in the foreground until Ctrl-C (or SIGTERM)."""
from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from hode.edge.server import WorkerSpec, exit_now, serve

# Where the token and TLS files are (hode/edge/security.py); never the secrets themselves.
SECURITY_KEYS = ("token_env", "token_file", "tls_cert", "tls_key", "tls_key_passphrase_env")


def spec_from_config(cfg: DictConfig) -> WorkerSpec:
    """The worker described by ``cfg.task`` running the run's ``cfg.detector``."""
    t = cfg.task
    return WorkerSpec(node=str(t.node), detector=OmegaConf.to_container(cfg.detector, resolve=True),
                      device_kind=str(t.device_kind), emulate=bool(t.emulate), time_scale=float(t.time_scale),
                      batched_inference=t.get("batched_inference", False),
                      load_trace=OmegaConf.to_container(t.load_trace, resolve=True), host=str(t.host), port=int(t.port),
                      max_message_mb=int(t.max_message_mb), max_side=int(t.max_side), torch_threads=int(t.torch_threads),
                      seed=int(cfg.get("seed", 0)), insecure=t.get("insecure", False),
                      max_queued_mb=t.get("max_queued_mb", 256), max_queued_tiles=t.get("max_queued_tiles", 2048),
                      **{k: t.get(k) for k in SECURITY_KEYS})


def main(cfg: DictConfig) -> None:
    serve(spec_from_config(cfg))
    exit_now(0)  # stopped cleanly (Ctrl-C, SIGTERM); skip the slow native teardown
