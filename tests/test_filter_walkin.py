"""Per-tile walk-in probing: rates from tracks, the online update, the filter's probes, the refit task."""
from __future__ import annotations

import json

import numpy as np
import pytest

from support.config import compose_config
from hode.errors import WeightsError
from hode.filter.net import STNet
from hode.filter.st import STFilter, load_checkpoint, save_checkpoint
from hode.filter.tracks import TrackSequence
from hode.filter.walkin import WalkInProber, prior_rates, walkin_counts


def _seq(cells: list[list[tuple[int, int]]], tile: int = 100, grid=(2, 3)) -> TrackSequence:
    """One box centred in each listed (row, col) cell per frame."""
    boxes = [np.array([[c * tile + 40, r * tile + 40, c * tile + 60, r * tile + 60] for r, c in f], np.float32).reshape(-1, 4)
             for f in cells]
    return TrackSequence("hand", grid[1] * tile, grid[0] * tile, boxes)


def test_walkin_counts_and_mirrored_prior():
    # cell (1,0): empty, occupied, empty, occupied -> 2 walk-ins over 2 empty frames (frames 0 and 2)
    seq = _seq([[], [(1, 0)], [], [(1, 0)]])
    w, e = walkin_counts([seq], 100, mirror=False)
    assert w[1, 0] == 2 and e[1, 0] == 2 and w.sum() == 2 and e[0, 0] == 3
    wm, em = walkin_counts([seq], 100, mirror=True)
    assert wm[1, 2] == 2 and wm[1, 0] == 2  # the mirror image's entrance
    rate = prior_rates(w, e, strength=10)
    assert rate[1, 0] > rate[0, 0] > 0  # never-entered cells are shrunk towards the mean, not ruled out


def test_prober_learns_an_entrance_online():
    prior = np.full((1, 2), 1e-4)
    p = WalkInProber(prior, beta=10.0, strength=100.0)
    slow = p.periods()[0, 0]
    for _ in range(5):  # someone appears in cell (0,1) after each look found it empty
        p.update(np.array([[0, 0]]), np.ones((1, 2), bool))
        p.update(np.array([[0, 1]]), np.ones((1, 2), bool))
    assert p.seen[0, 1] == 5 and p.seen[0, 0] == 0
    assert p.periods()[0, 1] < slow < p.periods()[0, 0]  # evidence both ways
    assert p.due(np.array([[0, 10 ** 6]])).tolist() == [[False, True]]
    p.reset()
    assert p.seen.sum() == 0


def test_st_probes_only_where_people_walk_in(tmp_path):
    net = STNet(2, 3, channels=4, units=1, memory=False, fusion="shared")  # any grid
    for prm in net.parameters():  # a net that believes every tile is empty
        prm.data.zero_()
    net.bias.data.fill_(-20.0)
    prior = [[0.0, 0.0, 0.0], [0.5, 0.0, 0.0]]  # only cell (1,0) is ever walked into
    path = save_checkpoint(tmp_path / "w.ckpt", net, {"threshold": 0.5, "walkin_prior": prior, "walkin_beta": 1.0,
                                                      "walkin_strength": 1e6})
    _, policy, _ = load_checkpoint(path)
    assert policy["walkin_prior"] == prior and policy["walkin_beta"] == 1.0
    f = STFilter(str(path))
    h = np.zeros((5, 2, 3), np.float32)
    keeps = []
    for _ in range(12):  # a one-in-flight loop: each frame comes back before the next decision
        keeps.append(f(h))
        f.observe(h[-1], keeps[-1])
    keeps = np.stack(keeps)
    assert keeps[:, 1, 0].sum() >= 4  # period sqrt(2/0.5) = 2: probed about every other frame
    assert not keeps[:, 0, :].any() and not keeps[:, 1, 1:].any()  # never-entered cells: never probed
    assert not STFilter(str(path), walkin=False)(h).any()  # the global rule (no probing) instead
    with pytest.raises(WeightsError, match="trained for a 2x3 tile grid, but this run's grid is 3x3"):
        STFilter(str(path), walkin=True, transfer=False).check_grid((3, 3))
    moved = STFilter(str(path), walkin=True)
    moved.check_grid((3, 3))  # transfer: the prior becomes uniform at its mean on the new grid
    assert moved.prober.grid == (3, 3) and "walk-in probing from a uniform prior" in moved.transferred


def test_a_probe_still_in_flight_is_not_sent_again(tmp_path):
    net = STNet(2, 3, channels=4, units=1, memory=False, fusion="shared")
    for prm in net.parameters():
        prm.data.zero_()
    net.bias.data.fill_(-20.0)
    path = save_checkpoint(tmp_path / "w.ckpt", net, {"threshold": 0.5, "walkin_prior": [[0.0] * 3, [0.5, 0.0, 0.0]],
                                                      "walkin_beta": 1.0, "walkin_strength": 1e6})
    h = np.zeros((5, 2, 3), np.float32)

    def probes(in_flight: int) -> list[int]:
        f, sent = STFilter(str(path)), []
        for _ in range(24):  # each frame comes back in_flight decisions later
            sent.append(f(h))
            if len(sent) >= in_flight:
                f.observe(h[-1], sent[len(sent) - in_flight])
        return np.flatnonzero(np.stack(sent)[5:, 1, 0]).tolist()

    for k in (1, 2, 4):  # the same probe period whatever the frames in flight: no burst of re-sends
        gaps = np.diff(probes(k))
        assert len(gaps) >= 4 and set(gaps.tolist()) == {3}, (k, gaps)


SMALL_REFIT = ["dataset.width=1024", "dataset.height=768", "tiling.tile=256", "task.frames=40",
               "task.seeds.train=[21,22]", "task.seeds.val=[24]", "task.seeds.test=[25]"]


def _small_refit_setup(tmp_path):
    """Small synthetic splits and an untrained net saved as if trained on them (what a refit needs)."""
    names = {k: [f"synthetic-1024x768-s{s}" for s in v] for k, v in (("train", (21, 22)), ("val", (24,)))}
    base = save_checkpoint(tmp_path / "base.ckpt", STNet(3, 4, channels=4, units=1), {"threshold": 0.5}, names)
    return SMALL_REFIT, base


def test_refit_chooses_the_walkin_knob_on_validation(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    small, base = _small_refit_setup(tmp_path)
    from hode.tasks.train_filter import main

    main(compose_config(["task=train_filter", *small, f"task.refit={base}", "task.target_recall=0.9", "task.probe=walkin"]))
    net, policy, meta = load_checkpoint(tmp_path / "filter_st.ckpt")
    assert np.asarray(policy["walkin_prior"]).shape == (3, 4) and policy["walkin_beta"] > 0
    assert policy["threshold"] == 0.5 and meta["refit_from"] == base.name  # a file name: no local path in a shipped checkpoint
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["val_closed_loop"]["recall"] >= 0.9 or policy["walkin_beta"] == pytest.approx(1e4)
    with pytest.raises(Exception, match="was trained with train"):
        main(compose_config(["task=train_filter", *small, "task.seeds.train=[21,23]", f"task.refit={base}",
                             "task.probe=walkin"]))


@pytest.mark.slow
def test_refit_with_the_motion_guard_chooses_threshold_and_base_on_validation(tmp_path, monkeypatch):
    """task.probe=motion (the default): no probing; the keep threshold and base are chosen in
    closed-loop rollouts of the rendered val scene with the guard on, and the test figures are
    the guarded filter's."""
    monkeypatch.chdir(tmp_path)
    small, base = _small_refit_setup(tmp_path)
    from hode.tasks.train_filter import main

    r = main(compose_config(["task=train_filter", *small, f"task.refit={base}", "task.target_recall=0.9"]))
    net, policy, meta = load_checkpoint(tmp_path / "filter_st.ckpt")
    assert policy["walkin_prior"] is None and policy["probe_every"] == 0
    assert policy["base"] in ("net", "net_or_comp1") and 0 < policy["threshold"] <= 0.9
    assert meta["probe"] == "motion" and meta["guard"]["motion"] == 64
    assert r["val_closed_loop"]["recall"] >= 0.9
    flt = STFilter(ckpt=str(tmp_path / "filter_st.ckpt"))
    assert flt.base == policy["base"] and STFilter(ckpt=str(tmp_path / "filter_st.ckpt"), base="comp1").base == "comp1"
