"""Sweeps beyond one machine: hydra/launcher=ray and =slurm on any experiment's command line, a real
Ray-launched sweep that writes what the joblib one writes, and job.json written by concurrent jobs."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
from hydra.plugins.launcher import Launcher
from hydra.utils import get_class
from omegaconf import OmegaConf

from hode.config import ROOT, _compose

RAY = "hydra_plugins.hode_ray_launcher.ray_launcher.RayLauncher"
SLURM = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
JOBLIB = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"


@pytest.mark.parametrize("experiment", ["smoke", "fig11", "fig2", "fig3"])
def test_the_command_line_launcher_wins_over_the_experiments(experiment: str) -> None:
    local = _compose([f"+experiment={experiment}"]).hydra.launcher
    assert local._target_ in (JOBLIB, "hydra._internal.core_plugins.basic_launcher.BasicLauncher")
    if local._target_ == JOBLIB:
        assert local.n_jobs == 2  # experiment.jobs reaches joblib

    ray = _compose([f"+experiment={experiment}", "hydra/launcher=ray", "hydra.launcher.address=auto"]).hydra.launcher
    assert ray._target_ == RAY and ray.address == "auto" and ray.remote.num_cpus == 1 and ray.remote.max_retries == 0

    cfg = _compose([f"+experiment={experiment}", "hydra/launcher=slurm", "hydra.launcher.partition=gpu",
                    "hydra.launcher.gpus_per_node=1", "hydra.launcher.timeout_min=30"])
    slurm = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert slurm["_target_"] == SLURM and slurm["partition"] == "gpu" and slurm["gpus_per_node"] == 1
    assert slurm["timeout_min"] == 30 and slurm["array_parallelism"] == 32 and slurm["name"] == f"hode-{experiment}"
    assert slurm["submitit_folder"] == f"{cfg.hydra.sweep.dir}/.submitit/%j"  # logs beside the jobs, on the shared fs
    for target in (RAY, SLURM):  # both plugins are installed where Hydra looks for them
        assert issubclass(get_class(target), Launcher)


# One job's hook writing job.json over and over, as two jobs given the same dir would (a resumed
# sweep started twice, or a job that timed out on one node and runs again on another).
RECORDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from omegaconf import OmegaConf
    from hode.sweep import SweepJob
    job_dir, start_at = Path(sys.argv[1]), float(sys.argv[2])
    job = SweepJob(OmegaConf.create({"experiment": {"name": "smoke"}}), job_dir, job_dir.parent, 0, ["seed=0"])
    while time.time() < start_at:
        time.sleep(0.001)
    for i in range(150):
        job.record("ok", note="x" * 20000)
""")


def test_jobs_writing_one_job_json_at_once_never_leave_half_a_file(tmp_path: Path) -> None:
    job_dir = tmp_path / "0"
    start_at = time.time() + 1.2  # after both interpreters have started
    procs = [subprocess.Popen([sys.executable, "-c", RECORDER, str(job_dir), str(start_at)], cwd=ROOT,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    reads = 0
    while any(p.poll() is None for p in procs):
        try:
            text = (job_dir / "job.json").read_text()
        except FileNotFoundError:
            continue
        assert json.loads(text)["status"] == "ok"  # whole, every time
        reads += 1
    assert [p.wait() for p in procs] == [0, 0], [p.stderr.read()[-2000:] for p in procs]
    assert reads > 0 and sorted(os.listdir(job_dir)) == ["job.json"]  # no temporary file left


def _results(path: Path) -> dict:
    """results.json without what measures this machine's wall clock or names the sweep dir."""
    r = json.loads(path.read_text())
    for key in ("overhead_ms", "outputs"):
        r.pop(key)
    r["runner"].pop("cache")  # hits and misses: the second sweep replays what the first computed
    for n in r["nodes"]:
        n.pop("cache_misses")
    return r


@pytest.mark.slow
def test_a_ray_sweep_writes_the_results_and_report_of_the_joblib_sweep(tmp_path: Path) -> None:
    from reports.__main__ import main as reports_main

    common = ["+experiment=smoke", "logger=none", "runner=sim", "topology=single", "dataset.width=512",
              "dataset.height=384", "dataset.frames=2", f"runner.backend.cache_dir={tmp_path / 'cache'}"]
    ray_tmp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # Ray's sockets need a short path
    env = {**os.environ, "RAY_TMPDIR": ray_tmp, "WANDB_MODE": "offline"}
    sweeps = {"ray": ["hydra/launcher=ray", "hydra.launcher.init.num_cpus=2"], "joblib": []}
    out, pids = {}, {}
    try:
        for name, launcher in sweeps.items():  # Ray first: its jobs fill the shared cache, joblib's replay it
            p = subprocess.Popen([sys.executable, "run.py", "-m", *common, *launcher, f"hydra.sweep.dir={tmp_path / name}"],
                                 cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            stdout, stderr = p.communicate(timeout=240)
            assert p.returncode == 0, stdout[-2000:] + stderr[-3000:]
            out[name] = stdout + stderr
            pids[name] = p.pid
            assert f"sweep {tmp_path / name}: 2 jobs, 2 ok, 0 failed" in stdout
            assert reports_main([str(tmp_path / name), "--wandb", "off", "--no-pdf"]) == 0
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert "Ray launcher: 2 jobs on a local Ray instance" in out["ray"]
    workers = [int(pid) for pid in re.findall(r"#[01] ran on 127\.0\.0\.1 in Ray worker pid (\d+)", out["ray"])]
    assert len(workers) == 2 and pids["ray"] not in workers  # Ray's worker processes ran them, not the driver
    assert "reachable from other machines" not in out["ray"]  # the instance listened on 127.0.0.1 only
    assert "Joblib.Parallel(n_jobs=2" in out["joblib"]
    for job in ("0", "1"):
        ray, joblib = tmp_path / "ray" / job, tmp_path / "joblib" / job
        assert _results(ray / "results.json") == _results(joblib / "results.json")
        assert (ray / "predictions.json").read_bytes() == (joblib / "predictions.json").read_bytes()
        rj, jj = (json.loads((d / "job.json").read_text()) for d in (ray, joblib))
        assert rj["status"] == jj["status"] == "ok" and rj["overrides"] == jj["overrides"]
        r, j = (json.loads((d / "results.json").read_text()) for d in (ray, joblib))
        assert r["runner"]["cache"]["misses"] == j["runner"]["cache"]["hits"] > 0  # what Ray's jobs computed, joblib's found
    ray_md, joblib_md = ((tmp_path / n / "REPORT.md").read_text().splitlines() for n in ("ray", "joblib"))
    strip = [lambda s, n=n: s.replace(str(tmp_path / n), "SWEEP") for n in ("ray", "joblib")]
    assert [strip[0](ln) for ln in ray_md if not ln.startswith("Made ")] == \
           [strip[1](ln) for ln in joblib_md if not ln.startswith("Made ")]
    assert (tmp_path / "ray" / "sweep_smoke.png").read_bytes() == (tmp_path / "joblib" / "sweep_smoke.png").read_bytes()
