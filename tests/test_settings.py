"""Settings as one dataclass per component, mirrored key for key by its YAML block, built by Hydra."""
from __future__ import annotations

import dataclasses

import pytest
from omegaconf import OmegaConf

from hode.cluster.sim import SimBackend, SimSettings
from hode.config import CONF_DIR, build, compose_config, load_option
from hode.errors import ConfigError
from hode.schedule.dqn import DQNAgent, DQNSettings
from hode.schedule.dqn_scheduler import DQNScheduler
from hode.schedule.env import EnvSettings, SchedulingEnv


def fields(cls) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def test_yaml_blocks_mirror_the_dataclasses():
    dqn = OmegaConf.load(CONF_DIR / "scheduler" / "dqn.yaml")
    assert set(dqn) - {"_target_", "name"} == fields(DQNSettings)
    sim = OmegaConf.load(CONF_DIR / "runner" / "sim.yaml").backend
    assert set(sim) - {"_target_", "dataset"} == fields(SimSettings)


def test_hydra_builds_the_settings_from_the_yaml_and_its_overrides(tmp_path):
    cfg = compose_config(["scheduler=dqn", "scheduler.lr=0.5", "scheduler.ckpt=null", "runner=sim",
                          "runner.backend.speed_alpha=0.7", f"runner.backend.cache_dir={tmp_path}"])
    s = build(cfg.scheduler)
    assert isinstance(s.settings, DQNSettings) and s.settings.lr == 0.5 and s.name == "dqn"
    assert s.settings.hidden == cfg.scheduler.hidden and s.settings.lambda2 == cfg.scheduler.lambda2
    sim = build(cfg.runner.backend, topology=build(cfg.topology), detector=cfg.detector, _recursive_=False)
    assert isinstance(sim.settings, SimSettings) and sim.settings.speed_alpha == 0.7


def test_settings_given_whole_or_as_keywords_are_the_same():
    whole = DQNScheduler(DQNSettings(ckpt=None, lr=0.01, seed=3))
    keywords = DQNScheduler(ckpt=None, lr=0.01, seed=3)
    assert whole.settings == keywords.settings
    assert DQNAgent(3, DQNSettings(hidden=16)).hidden == 16


def test_an_unknown_setting_is_refused_in_one_line():
    paper5 = build(load_option("topology", "paper5"))
    with pytest.raises(ConfigError, match=r"^scheduler: unknown setting lrr \(known: .*\blr\b"):
        DQNScheduler(lrr=0.1)
    with pytest.raises(ConfigError, match="the scheduling env: unknown setting"):
        SchedulingEnv(paper5, EnvSettings(frames=10), framez=3)
    with pytest.raises(ConfigError, match="runner.backend: unknown setting"):
        SimBackend(paper5, dataset="handmade", speed=2)
