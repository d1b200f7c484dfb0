"""The spatio-temporal net and its checkpoint: shapes on any grid, save/load, refusals."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from hode.config import ROOT
from hode.errors import HodeError, WeightsError
from hode.filter.net import STNet
from hode.filter.st import STFilter, load_checkpoint, save_checkpoint

from support.run import run_py

SHIPPED = ROOT / "weights" / "filter_st_synthetic.ckpt"
WALKIN = ROOT / "weights" / "filter_st_walkin.ckpt"  # the previous shipped policy: per-tile walk-in probing


@pytest.mark.parametrize("grid", [(1, 1), (2, 3), (5, 8), (9, 16)])
@pytest.mark.parametrize("fusion,memory", [("cell", True), ("shared", False)])
def test_net_gives_one_logit_per_tile(grid, fusion, memory):
    net = STNet(*grid, channels=4, units=1, fusion=fusion, memory=memory).eval()
    counts = torch.rand(3, 5, *grid) * 4
    mem = torch.rand(3, 2, *grid) if memory else None
    assert net(counts, mem).shape == (3, *grid)
    assert net.grid == (grid if fusion == "cell" else None)


def test_shared_fusion_runs_on_any_grid():
    net = STNet(5, 8, channels=4, units=1, fusion="shared", memory=False).eval()
    assert net(torch.zeros(1, 5, 3, 4)).shape == (1, 3, 4)


def test_filter_keeps_all_before_any_result_then_pads_a_short_history(tmp_path):
    path = save_checkpoint(tmp_path / "f.ckpt", STNet(3, 4, channels=4, units=1), {"threshold": 0.5})
    f = STFilter(str(path))
    h = np.random.default_rng(0).poisson(1.0, (6, 3, 4)).astype(np.float32)
    assert f(h[:0]).all()  # no result yet: every tile
    # fewer frames than the trend window (5): the oldest stands in for the missing ones
    padded = np.concatenate([h[:1], h[:1], h[:3]])
    assert (STFilter(str(path))(h[:3]) == STFilter(str(path))(padded)).all()
    keep = f(h)
    assert keep.shape == (3, 4) and keep.dtype == bool
    strict = save_checkpoint(tmp_path / "g.ckpt", STNet(3, 4, channels=4, units=1), {"threshold": 1.0})
    assert not STFilter(str(strict))(np.zeros((2, 3, 4), np.float32)).any()  # no longer "keep all"


def test_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    net = STNet(2, 3, channels=4, units=1).eval()
    policy = {"threshold": 0.3, "probe_threshold": 0.01, "probe_every": 7}
    path = save_checkpoint(tmp_path / "f.ckpt", net, policy, {"note": "x"})
    loaded, got, meta = load_checkpoint(path)
    assert {k: got[k] for k in policy} == policy and got["walkin_prior"] is None and meta == {"note": "x"}
    x, m = torch.rand(2, 5, 2, 3), torch.rand(2, 2, 2, 3)
    assert torch.allclose(net(x, m), loaded(x, m))
    f = STFilter(str(path), probe_every=0)
    assert f.policy == {"threshold": 0.3, "probe_threshold": 0.01, "probe_every": 0, "base": "net"}  # config overrides ckpt
    assert path.stat().st_size < 64 * 1024


def test_threshold_decides_the_mask(tmp_path):
    path = save_checkpoint(tmp_path / "f.ckpt", STNet(2, 3, channels=4, units=1), {"threshold": 0.5})
    h = np.ones((5, 2, 3), np.float32)
    assert STFilter(str(path), threshold=1e-6)(h).all()
    assert not STFilter(str(path), threshold=1.0)(h).any()


def step(f: STFilter, h: np.ndarray) -> np.ndarray:
    """One frame of a one-in-flight loop: decide, then the frame comes back with ``h[-1]``."""
    keep = f(h)
    f.observe(h[-1], keep)
    return keep


def test_probing_looks_at_a_stale_tile_again(tmp_path):
    net = STNet(1, 2, channels=2, units=0, memory=False)
    with torch.no_grad():  # a net that says p = sigmoid(-3) ~ 0.05 everywhere
        for p in net.parameters():
            p.zero_()
        net.bias.fill_(-3.0)
    path = save_checkpoint(tmp_path / "f.ckpt", net, {"threshold": 0.5, "probe_threshold": 0.01, "probe_every": 3})
    f = STFilter(str(path))
    h = np.zeros((5, 1, 2), np.float32)
    f.observe(h[-1], f(h[:0]))  # new video: all kept
    masks = [bool(step(f, h).any()) for _ in range(9)]
    assert masks == [False, False, False, True, False, False, False, True, False]
    g = STFilter(str(path), probe_threshold=0.1)
    assert not any(step(g, h).any() for _ in range(9))


def test_base_ablation_takes_comp1s_mask_or_adds_it_to_the_nets(tmp_path):
    path = save_checkpoint(tmp_path / "f.ckpt", STNet(2, 3, channels=4, units=1), {"threshold": 0.5})
    h = np.zeros((5, 2, 3), np.float32)
    h[-1, 0, 1] = 2  # detected at t-1 in one tile only
    assert STFilter(str(path), base="comp1")(h).tolist() == [[False, True, False], [False, False, False]]
    assert not STFilter(str(path), threshold=1.0)(h).any()  # the net alone keeps nothing at this threshold
    assert STFilter(str(path), threshold=1.0, base="net_or_comp1")(h).tolist() == [[False, True, False], [False, False, False]]
    # Comp-1's mask under the global probe rule: the net's p still decides which stale tiles are probed
    net = STNet(1, 2, channels=2, units=0, memory=False)
    with torch.no_grad():  # p = sigmoid(-3) ~ 0.05 everywhere
        for prm in net.parameters():
            prm.zero_()
        net.bias.fill_(-3.0)
    glob = save_checkpoint(tmp_path / "g.ckpt", net, {"threshold": 0.5, "probe_threshold": 0.01, "probe_every": 3})
    f, z = STFilter(str(glob), base="comp1"), np.zeros((5, 1, 2), np.float32)
    f.observe(z[-1], f(z[:0]))
    assert [bool(step(f, z).any()) for _ in range(9)] == [False, False, False, True, False, False, False, True, False]
    with pytest.raises(HodeError, match="filter.base must be one of net, comp1, net_or_comp1"):
        STFilter(str(path), base="comp2")


def test_another_grid_transfers_or_is_refused(tmp_path):
    net = STNet(5, 8, channels=4, units=1)
    with torch.no_grad():
        net.bias.fill_(5.0)  # the net keeps every tile: a transferred filter must not run it
    path = save_checkpoint(tmp_path / "f.ckpt", net, {"threshold": 0.5})
    with pytest.raises(WeightsError, match="5x8 tile grid, but this run's grid is 3x4"):
        STFilter(str(path), transfer=False)(np.zeros((5, 3, 4), np.float32))
    f = STFilter(str(path))
    f.check_grid((3, 4))
    assert f.base == "comp1" and "5x8 grid, run on 3x4" in f.transferred
    counts = np.zeros((5, 3, 4), np.float32)
    counts[-1, 1, 2] = 2
    f.observe(counts[-1], f(counts[:0]))
    keep = f(counts)
    assert keep.shape == (3, 4) and keep[1, 2] and keep.sum() == 1  # Comp-1: the occupied tile alone
    prior = save_checkpoint(tmp_path / "w.ckpt", STNet(5, 8, channels=4, units=1),
                            {"threshold": 0.5, "walkin_prior": np.linspace(0, 0.2, 40).reshape(5, 8).tolist(),
                             "walkin_beta": 1.0, "walkin_strength": 5.0})
    walkin = STFilter(str(prior))
    walkin.check_grid((2, 2))
    assert walkin.prober.grid == (2, 2) and np.allclose(walkin.prober.prior, 0.1)
    assert "walk-in probing from a uniform prior" in walkin.transferred


def test_not_a_checkpoint_is_a_weights_error(tmp_path):
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"\x00not a checkpoint at all")
    with pytest.raises(WeightsError, match="is not a flow-filter checkpoint"):
        STFilter(str(junk))
    other = tmp_path / "other.ckpt"
    torch.save({"state_dict": {}}, other)
    with pytest.raises(WeightsError, match="format tag"):
        STFilter(str(other))
    with pytest.raises(WeightsError, match="checkpoint not found"):
        STFilter(str(tmp_path / "missing.ckpt"))


def test_shipped_checkpoint_is_small_and_for_the_default_grid():
    net, policy, meta = load_checkpoint(SHIPPED)
    assert net.grid == (5, 8)
    assert SHIPPED.stat().st_size < 200 * 1024
    assert 0 < policy["threshold"] <= 1 and meta["tile"] == 512
    f = STFilter(str(SHIPPED))
    h = np.zeros((5, 5, 8), np.float32)
    h[:, 2:4, 1:6] = 3  # a crowd in the middle rows
    keep = f(h)
    assert keep[2:4, 1:6].all(), "tiles occupied in every recent frame must be kept"
    assert not keep[0].any(), "the sky row (nobody ever walks there) must be skipped"
    assert policy["probe_every"] == 0 and policy["walkin_prior"] is None and meta["probe"] == "motion"
    assert meta["guard"]["motion"] > 0  # its policy was chosen with the motion guard conf/filter/st.yaml turns on


def test_the_shipped_policy_was_chosen_with_the_guard_the_filter_config_runs():
    from omegaconf import OmegaConf

    _, _, meta = load_checkpoint(SHIPPED)
    guard = OmegaConf.to_container(OmegaConf.load(ROOT / "conf" / "filter" / "st.yaml").guard)
    assert {k: v for k, v in guard.items() if k.startswith("motion")} == meta["guard"]


@pytest.mark.slow
def test_run_py_reports_a_bad_checkpoint_in_one_line(tmp_path):
    junk = tmp_path / "junk.ckpt"
    junk.write_text("hello")
    r, _ = run_py(tmp_path / "run", "filter=st", f"filter.ckpt={junk}", "logger=none", "progress=false",
                  "dataset.frames=1", expect_rc=None)
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "not a flow-filter checkpoint" in lines[0], r.stderr[-2000:]


def test_memory_counts_looks_when_sent_and_learns_from_each_returned_frames_own_mask():
    """With frames in flight the history's latest row is an older frame's than the filter's latest
    mask: a tile counts as looked at once its look is sent, and the walk-in evidence pairs each
    returned frame's counts with that frame's own mask."""
    f = STFilter(WALKIN)
    assert f.prober is not None
    first = f(np.zeros((0, 5, 8), np.float32))  # frame 0, a new video: every tile
    assert first.all() and f.memory.since_kept.sum() == 0
    skipped = np.ones((5, 8), bool)
    skipped[2, 3] = False
    f.memory.decided(skipped)  # as if frame 1 had skipped tile (2, 3): it ages at once
    assert f.memory.since_kept[2, 3] == 1 and f.memory.since_kept.sum() == 1
    counts = np.zeros((5, 8), np.float32)
    counts[4, 1] = 2
    f.observe(counts, first)  # frame 0 comes back: its own mask looked everywhere
    assert f.memory.since_occupied[4, 1] == 0 and f.memory.since_occupied[0, 0] > 0
    assert f.prober.empty[2, 3] == 1 and f.prober.empty[4, 1] == 0  # tile (2, 3) was looked at and empty
    assert f.memory.since_kept[2, 3] == 1  # coming back does not undo the later decision
