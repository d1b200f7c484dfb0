"""``hydra/launcher=ray``: each job of a multirun is a Ray task, on this machine or on a Ray cluster.

The project's own launcher instead of ``hydra-ray-launcher`` (1.2.2): that package caps
``cloudpickle<3`` (for its AWS launcher's pickles) while joblib 1.6, behind the joblib launcher the
experiments use, needs ``cloudpickle>=3``, so the two cannot be installed together. Its local launcher
does what this module does; the settings are in ``conf/hydra/launcher/ray.yaml``.

Jobs on other machines write where a job on this one would: the sweep dir is made absolute here and
each job runs in this process's working directory, so the code checkout, ``multirun/`` (or
``outputs/``) and the detection cache must be on a filesystem every node mounts at the same path
(docs/experiments.md, Sweeps across machines).
"""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any, Sequence

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, configure_log, filter_overrides, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, open_dict

log = logging.getLogger(__name__)
LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def _run_job(hydra_context: HydraContext, sweep_config: DictConfig, task_function: TaskFunction,
             singleton_state: dict, cwd: str) -> tuple[str, int, JobReturn]:
    """One job, in a Ray worker: Hydra's state as the driver had it, the driver's working directory.
    Returns where it ran (node address, worker pid) with its result, for the driver's log."""
    from hydra.core.hydra_config import HydraConfig

    setup_globals()
    Singleton.set_state(singleton_state)
    HydraConfig.instance().set_config(sweep_config)
    if os.path.isdir(cwd):  # relative paths in the config mean what they mean on the driver
        os.chdir(cwd)
    import ray

    ret = run_job(hydra_context=hydra_context, task_function=task_function, config=sweep_config,
                  job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")
    return ray.util.get_node_ip_address(), os.getpid(), ret


class RayLauncher(Launcher):
    """Settings (``hydra.launcher.*``): ``address`` (None: start a Ray instance on this machine for the
    sweep, with ``init``'s ``ray.init`` keywords, listening on 127.0.0.1 only unless ``local_only`` is
    false; ``auto`` or ``HOST:PORT``: join that cluster), ``runtime_env`` (Ray's, for either),
    ``remote`` (``ray.remote`` options of each job: CPUs, GPUs, retries)."""

    def __init__(self, address: str | None = None, init: dict | None = None, runtime_env: dict | None = None,
                 remote: dict | None = None, local_only: bool = True) -> None:
        self.address, self.local_only = address, local_only
        self.init = dict(init or {})
        self.runtime_env = runtime_env
        self.remote = dict(remote or {})
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.task_function: TaskFunction | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def _start_ray(self) -> bool:
        """Connect (or start a local instance); True when this launcher did, so it shuts it down."""
        if self.address is None and self.local_only:
            # Ray's switch for single-machine instances (its default on Windows and macOS): every
            # server of the instance binds 127.0.0.1 instead of all interfaces. Read when ray is imported.
            if "ray" in sys.modules and os.environ.get(LOOPBACK_ENV) != "0":
                log.warning("ray was imported before the launcher: its instance may listen on every interface")
            os.environ.setdefault(LOOPBACK_ENV, "0")
        import ray

        if ray.is_initialized():
            return False
        kwargs: dict[str, Any] = {"address": self.address, "runtime_env": self.runtime_env,
                                  "log_to_driver": True, "configure_logging": False}
        if self.address is None:  # resources only make sense for an instance started here
            kwargs.update({k: v for k, v in self.init.items() if v is not None})
        ray.init(**kwargs)
        if self.address is None and self.local_only and ray.util.get_node_ip_address() != "127.0.0.1":
            log.warning("the local Ray instance is reachable from other machines (its node address is %s)",
                        ray.util.get_node_ip_address())
        return True

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        assert self.config is not None and self.hydra_context is not None and self.task_function is not None
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        sweep_dir = Path(str(self.config.hydra.sweep.dir)).absolute()  # the same path on every node
        sweep_dir.mkdir(parents=True, exist_ok=True)
        started = self._start_ray()
        import ray  # after _start_ray: it sets what Ray reads on import

        try:
            where = self.address or "a local Ray instance"
            log.info(f"Ray launcher: {len(job_overrides)} jobs on {where}, sweep output dir: {sweep_dir}")
            remote = ray.remote(**{k: v for k, v in self.remote.items() if v is not None})(_run_job)
            state, cwd, refs = Singleton.get_state(), os.getcwd(), []
            for i, overrides in enumerate(job_overrides):
                num = initial_job_idx + i
                log.info(f"\t#{num} : {' '.join(filter_overrides(overrides))}")
                cfg = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
                with open_dict(cfg):
                    cfg.hydra.sweep.dir = str(sweep_dir)
                    cfg.hydra.job.id = f"ray_{num}"
                    cfg.hydra.job.num = num
                refs.append(remote.remote(self.hydra_context, cfg, self.task_function, state, cwd))
            out = []
            for num, ref in enumerate(refs, initial_job_idx):
                node, pid, ret = ray.get(ref)
                log.info(f"\t#{num} ran on {node} in Ray worker pid {pid}")
                out.append(ret)
            return out
        finally:
            if started:
                ray.shutdown()

