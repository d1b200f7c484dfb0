"""Every option file of every config group composes and instantiates (the real conf/ tree)."""
import subprocess

import pytest
from hydra.utils import get_method

from hode.config import CONF_DIR, build, options
from hode.errors import HodeError

from support.run import run_py

GROUPS = sorted(p.name for p in CONF_DIR.iterdir() if p.is_dir() and p.name not in ("experiment", "hydra"))
ALL = [(g, o) for g in GROUPS for o in options(g)]
# Options that point at user data by design: without a path they must refuse in one clear line.
NEEDS_USER_PATH = {("dataset", "panda"), ("dataset", "video")}


@pytest.mark.parametrize("group, option", ALL, ids=[f"{g}={o}" for g, o in ALL])
def test_every_option_instantiates(cfg_factory, group, option):
    if group == "device":  # profiles are looked up by the runners, not part of the defaults list
        from hode.profiles import load_profile

        prof = load_profile(option)
        assert prof.models and all(t.tile_ms > 0 and t.frame4k_ms > t.tile_ms for t in prof.models.values())
        return
    cfg = cfg_factory([f"{group}={option}"])
    node = cfg[group]
    if group == "task":
        assert callable(get_method(node._target_))
    elif group == "runner":
        topo = build(cfg.topology)
        backend = build(node.backend, topology=topo, detector=cfg.detector, _recursive_=False)
        assert hasattr(backend, "submit") and hasattr(backend, "poll")
    elif (group, option) in NEEDS_USER_PATH:
        with pytest.raises(HodeError, match=r"dataset\.(path|root)"):
            build(node)
    else:
        obj = build(node)
        assert obj is not None


def test_cfg_job_prints_the_composed_config():
    out, _ = run_py(None, "--cfg", "job", timeout=120)
    for group in ("task:", "dataset:", "tiling:", "detector:", "filter:", "scheduler:", "topology:", "runner:", "logger:"):
        assert group in out.stdout


def test_build_surfaces_the_users_mistake(cfg_factory):
    cfg = cfg_factory(["tiling.tile=-3"])
    with pytest.raises(HodeError, match="tiling.tile must be a positive integer"):
        build(cfg.tiling)


@pytest.mark.parametrize("override, message", [
    ("topology=nope", "unknown topology option 'nope' (available: "),
    ("runner.in_flight==", "malformed override 'runner.in_flight=='"),
    ("dataset.nonexistent=1", "unknown config key 'dataset.nonexistent': dataset has no 'nonexistent'"),
    ("seed=nan", "seed must be an integer"),
])
def test_compose_config_refuses_a_bad_override_in_one_line(override, message):
    """What the benchmarks compose with (hode.config.compose_config): the same one line run.py gives."""
    from hode.config import compose_config

    with pytest.raises(HodeError) as err:
        compose_config([override])
    assert message in str(err.value) and "\n" not in str(err.value)


# ----- the command line: one `error:` line, exit status 2, no traceback ------------------------

CLI_MISTAKES = {  # argv -> what the one line says
    "device profile as an option": (["device=gtx1050"], "conf/device/ holds the device profiles that topology nodes name"),
    "unknown device profile": (["device=x"], "not a run option"),
    "misspelled group": (["schedulr=dqn"], "unknown config group or key 'schedulr' (did you mean 'scheduler'?"),
    "unknown key": (["dataset.nonexistent=1"], "unknown config key 'dataset.nonexistent'"),
    "misspelled key": (["dataset.widht=640"], "did you mean 'width'?"),
    "malformed override": (["dataset.frames=[1,2"], "malformed override 'dataset.frames=[1,2'"),
    "sweep without -m": (["seed=1,2"], "is a sweep"),
    "experiment without +": (["experiment=smoke"], "write +experiment=smoke"),
    "seed nan": (["seed=nan"], "seed must be an integer in [0, 2**32), got nan"),
    "seed 1e30": (["seed=1e30"], "seed must be an integer in [0, 2**32)"),
    "imgsz 100000": (["detector.imgsz=100000"], "detector.imgsz=100000: the detector's input is 100000x100000"),
    "absent CUDA device": (["detector.device=cuda:7"], "detector.device=cuda:7: this machine has"),
    "negative limit": (["limits.max_pixels=-1"], "limits.max_pixels must be a positive integer"),
    "run dir is a file": (["hydra.run.dir={file}"], "is a file, not a folder"),
    "run dir under a file": (["hydra.run.dir={file}/sub"], "is a file, not a folder"),
    "run dir unwritable": (["hydra.run.dir=/proc/hode-run"], "cannot write in /proc"),
}


def run_cli(argv: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    return run_py(None, *argv, expect_rc=None, timeout=timeout)[0]


def assert_one_error_line(out: subprocess.CompletedProcess, message: str) -> str:
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert out.returncode == 2, (out.returncode, out.stderr[-2000:])
    assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr[-2000:]
    assert message in lines[0], lines[0]
    return lines[0]


# These fail before run.py loads torch (about a second each), except this one, which asks torch.
LOADS_TORCH = {"absent CUDA device"}


@pytest.mark.parametrize("case", [pytest.param(c, marks=pytest.mark.slow) if c in LOADS_TORCH else c
                                  for c in sorted(CLI_MISTAKES)])
def test_cli_mistake_is_one_error_line_and_exit_2(case, tmp_path):
    import torch

    argv, message = CLI_MISTAKES[case]
    if case == "absent CUDA device" and torch.cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")
    (tmp_path / "a-file").write_text("x")
    argv = [a.format(file=tmp_path / "a-file") for a in argv]
    assert_one_error_line(run_cli(argv + ["logger=none"]), message)
