"""Every option file of every config group composes and instantiates (the real conf/ tree)."""
import subprocess
import sys

import pytest
from hydra.utils import get_method

from hode.config import CONF_DIR, build, options
from hode.errors import HodeError

GROUPS = sorted(p.name for p in CONF_DIR.iterdir() if p.is_dir() and p.name not in ("experiment", "hydra"))
ALL = [(g, o) for g in GROUPS for o in options(g)]
# Options that point at user data by design: without a path they must refuse in one clear line.
NEEDS_USER_PATH = {("dataset", "panda"), ("dataset", "video")}


@pytest.mark.parametrize("group, option", ALL, ids=[f"{g}={o}" for g, o in ALL])
def test_every_option_instantiates(cfg_factory, group, option):
    if group == "device":  # profiles are looked up by the runners, not part of the defaults list
        from hode.cluster.profiles import load_profile

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


def test_cfg_job_prints_the_composed_config(repo_root):
    out = subprocess.run([sys.executable, "run.py", "--cfg", "job"], cwd=repo_root, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    for group in ("task:", "dataset:", "tiling:", "detector:", "filter:", "scheduler:", "topology:", "runner:", "logger:"):
        assert group in out.stdout


def test_build_surfaces_the_users_mistake(cfg_factory):
    cfg = cfg_factory(["tiling.tile=-3"])
    with pytest.raises(HodeError, match="tiling.tile must be a positive integer"):
        build(cfg.tiling)


@pytest.mark.parametrize("override, message", [
    ("topology=nope", "unknown topology option 'nope' (available: "),
    ("runner.in_flight==", "cannot compose the config: Error parsing override"),
])
def test_compose_config_refuses_a_bad_override_in_one_line(override, message):
    """What the benchmarks compose with (hode.config.compose_config): the same one line run.py gives."""
    from hode.config import compose_config

    with pytest.raises(HodeError) as err:
        compose_config([override])
    assert message in str(err.value) and "\n" not in str(err.value)
