"""Every conf/filter option builds and runs; eval_filter writes the results.json schema."""
from __future__ import annotations

import json

import numpy as np
import pytest

from support.config import compose_config
from hode.config import build, options
from hode.errors import ConfigError
from hode.filter.base import FlowFilter

FILTERS = options("filter")


def test_the_filter_options_are_there():
    assert {"none", "st", "comp1", "comp2", "comp3", "oracle"} <= set(FILTERS)


@pytest.mark.parametrize("name", FILTERS)
def test_every_filter_option_builds_and_gives_a_mask(name):
    cfg = compose_config([f"filter={name}"], small=False)
    f = build(cfg.filter)
    assert isinstance(f, FlowFilter) and f.name == name == cfg.filter.name
    history = np.random.default_rng(0).poisson(0.5, (5, 5, 8)).astype(np.float32)
    keep = f(history, history[-1])
    assert keep.shape == (5, 8) and keep.dtype == bool


def test_filter_task_configs_compose():
    for task in ("train_filter", "eval_filter"):
        cfg = compose_config([f"task={task}"])
        assert cfg.task.name == task and cfg.task._target_.startswith("hode.tasks.")


@pytest.mark.slow
def test_eval_filter_writes_every_filter_open_and_closed_loop(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = compose_config(["task=eval_filter", "dataset.width=3840", "dataset.height=2160", "task.frames=40",
                          "task.seeds=[1013]", "task.guard_filters=[comp1]"])
    from hode.tasks.eval_filter import main

    main(cfg)
    r = json.loads((tmp_path / "results.json").read_text())
    keys = {"accuracy", "precision", "recall", "f1", "skipped", "latency_ms"}
    for name in ("st", "comp1", "comp2", "comp3", "oracle", "none"):
        for loop in ("open_loop", "closed_loop"):
            assert keys <= set(r["filter"][name][loop]), (name, loop)
    assert r["filter"]["oracle"]["closed_loop"]["recall"] == 1.0 == r["filter"]["oracle"]["closed_loop"]["accuracy"]
    assert r["filter"]["none"]["closed_loop"]["skipped"] == 0.0
    assert r["filter"]["comp1"]["open_loop"]["frames"] == 35  # frames from warm-up on
    assert set(r["guards"]["comp1"]) == {"no_guard", "motion64", "refresh10", "refresh30", "dilate1", "keepalive5"}
    assert r["filter"]["st"]["closed_loop"]["pixel_ms"] > 0  # the motion guard's pixel work is in its latency
    off, refresh = r["guards"]["comp1"]["no_guard"]["closed_loop"], r["guards"]["comp1"]["refresh30"]["closed_loop"]
    assert refresh["skipped"] <= off["skipped"]  # a refresh costs tiles


def test_eval_filter_refuses_to_score_on_training_scenes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    from hode.filter.st import load_checkpoint

    train_scene = load_checkpoint(compose_config(["filter=st"]).filter.ckpt)[2]["train"][0]
    seed = int(train_scene.rsplit("-s", 1)[1])
    cfg = compose_config(["task=eval_filter", "filter=st", "dataset.width=3840", "dataset.height=2160",
                          "task.frames=10", f"task.seeds=[{seed}]", "task.filters=[st]", "task.guard_filters=[]"])
    from hode.tasks.eval_filter import main

    with pytest.raises(ConfigError, match="trained/validated on"):
        main(cfg)
