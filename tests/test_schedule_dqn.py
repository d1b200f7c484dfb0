"""The DQN scheduler: masking of down nodes, checkpoints (and their refusals), online learning, and
a short training run in the Gymnasium env over the simulator's queues for the paper's five nodes."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from hode.config import build, load_option
from hode.errors import ConfigError, WeightsError
from hode.schedule.dqn import DQNAgent, action_mask, balanced_shares, features, train
from hode.schedule.dqn_scheduler import DQNScheduler
from hode.schedule.env import SchedulingEnv, play, scheduler_decide
from hode.schedule.greedy import Greedy
from hode.schedule.shares import simplex_actions
from hode.types import NodeState, WorkItem


@pytest.fixture(scope="module")
def paper5():
    return build(load_option("topology", "paper5"))


def states(speeds, queues=None, up=None) -> list[NodeState]:
    queues = queues or [0] * len(speeds)
    up = up or [True] * len(speeds)
    return [NodeState(f"n{i}", "yolov5s", i % 3, queue=q, speed=s, up=u) for i, (s, q, u) in enumerate(zip(speeds, queues, up))]


def tiles(n: int) -> list[WorkItem]:
    img = np.zeros((4, 4, 3), np.uint8)
    return [WorkItem(0, k, (0, 0, 4, 4), img, "tile", float(k % 4)) for k in range(n)]


def test_features_are_scale_free_and_blank_for_down_nodes():
    a = features(states([10, 30], [4, 2]), 8, 40)
    b = features(states([100, 300], [4, 2]), 8, 40)
    assert np.allclose(a[:7], b[:7]) and a[7] == pytest.approx(10 * b[7])  # only the seconds scale
    # queue / n, speed share, balanced shares (node 0's queue already reaches past the level), n / n_ref, n / sum v
    assert a.tolist() == pytest.approx([0.5, 0.25, 0.25, 0.75, 0.0, 1.0, 0.2, 0.2])
    c = features(states([10, 30], [4, 2], up=[True, False]), 8, 40)
    assert c[:6].tolist() == pytest.approx([0.5, 0.0, 1.0, 0.0, 1.0, 0.0])


def test_balanced_shares_equalise_finish_times():
    q, v = np.array([4.0, 0.0, 1.0]), np.array([2.0, 1.0, 1.0])
    x = balanced_shares(q / 5, v / 4, np.ones(3, bool))  # 5 new items
    finish = (q + 5 * x) / v
    assert x.sum() == pytest.approx(1) and np.allclose(finish, finish[0])  # 10 items over 4/s: 2.5 s each


def test_action_mask_and_the_scheduler_never_use_a_down_node():
    actions = simplex_actions(3, 0.1)
    mask = action_mask(actions, np.array([True, False, True]))
    assert mask.sum() == 11 and np.all(actions[mask][:, 1] == 0)
    s = DQNScheduler(ckpt=None, seed=1)  # untrained: arbitrary choices, but never a down node
    rng = np.random.default_rng(0)
    for _ in range(30):
        nodes = states(list(rng.uniform(5, 50, 4)), list(rng.integers(0, 20, 4)), up=[True, False, True, False])
        out = s.assign(tiles(int(rng.integers(1, 40))), nodes)
        assert set(out) <= {0, 2}


def test_checkpoint_round_trip_and_refusals(tmp_path):
    agent = DQNAgent(5, seed=3)
    obs = features(states([10, 20, 30, 40, 50], [1, 2, 3, 4, 5]), 20, 40)
    path = agent.save(tmp_path / "dqn.pt", topology="paper5")
    loaded = DQNAgent.load(path, nodes=5)
    assert np.allclose(loaded.q_values(obs), agent.q_values(obs)) and loaded.meta["topology"] == "paper5"
    with pytest.raises(WeightsError, match="trained for 5 nodes but the topology has 2"):
        DQNAgent.load(path, nodes=2)
    with pytest.raises(WeightsError, match="trained for 5 nodes"):
        DQNScheduler(ckpt=str(path)).assign(tiles(4), states([1, 1]))
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(WeightsError, match="is not a DQN scheduler checkpoint"):
        DQNAgent.load(junk)
    other = tmp_path / "other.pt"
    torch.save({"state_dict": {}}, other)
    with pytest.raises(WeightsError, match="no 'hode-dqn-scheduler' format tag"):
        DQNAgent.load(other)
    with pytest.raises(WeightsError, match="not found"):
        DQNAgent.load(tmp_path / "missing.pt")
    with pytest.raises(WeightsError, match="not found"):
        DQNScheduler(ckpt=str(tmp_path / "missing.pt")).assign(tiles(4), states([1, 1]))
    # one node: nothing to decide, no checkpoint needed
    assert DQNScheduler(ckpt=str(tmp_path / "missing.pt")).assign(tiles(3), states([1])) == [0, 0, 0]


def test_online_learning_stores_transitions_and_learns():
    s = DQNScheduler(ckpt=None, online=True, epsilon=0.2, batch_size=16, learning_starts=16, learn_every=2, seed=0)
    rng = np.random.default_rng(0)
    for _ in range(60):
        s.assign(tiles(int(rng.integers(4, 30))), states(list(rng.uniform(5, 50, 3)), list(rng.integers(0, 20, 3))))
    assert s.agent.steps == 59 and len(s.losses) > 5 and all(np.isfinite(s.losses))


def test_rewards_are_squashed_keeping_their_order_then_clipped():
    a = DQNAgent(3, seed=0)  # default: symlog, no clip
    obs, up = np.zeros(a.obs_dim, np.float32), np.ones(3, bool)
    for r in (-1000.0, -10.0, 0.0, 0.5):
        a.remember(obs, 0, r, obs, up)
    got = a.buffer.rewards[:4]
    assert np.allclose(got, [-np.log(1001), -np.log(11), 0.0, np.log(1.5)], atol=1e-5)
    assert got[0] < got[1]  # a 100x worse action still reads worse, where a clip at -5 made them equal
    b = DQNAgent(3, reward_symlog=False, reward_clip=5.0, seed=0)
    for r in (-1000.0, -10.0, 2.0):
        b.remember(obs, 0, r, obs, up)
    assert b.buffer.rewards[:3].tolist() == [-5.0, -5.0, 2.0]
    with pytest.raises(ConfigError, match="reward_symlog must be true or false"):
        DQNAgent(3, reward_symlog="maybe")
    with pytest.raises(ConfigError, match="reward_clip must be a positive number or null"):
        DQNAgent(3, reward_clip=-1)


def test_env_follows_the_gym_api_and_refuses_work_for_a_down_node(paper5):
    from gymnasium.utils.env_checker import check_env

    env = SchedulingEnv(paper5, frames=30, down_prob=0.0, seed=0)
    check_env(env, skip_render_check=True)
    o1, _ = env.reset(seed=7)
    o2, info = env.reset(seed=7)
    assert np.array_equal(o1, o2) and info["up"].all()  # deterministic for a seed
    env.down = (0, 0, 30)
    env._before = env.states()
    with pytest.raises(ConfigError, match="down"):
        env.step_counts([env.n] + [0] * 4)


def test_env_rewards_balance(paper5):
    """All tiles on one slow node is punished against a speed-proportional split."""
    env = SchedulingEnv(paper5, frames=40, in_flight=2, lambda2=100.0, trace_events=0, down_prob=0.0, warm_prob=1.0)
    fair = play(env, scheduler_decide(Greedy()), seed=1)
    lopsided = play(env, lambda nodes, n: [0, 0, 0, 0, n], seed=1)
    assert fair["reward"] > lopsided["reward"] and fair["fps"] > 2 * lopsided["fps"]


def test_dqn_training_smoke_run_changes_q_values(paper5):
    env = SchedulingEnv(paper5, frames=50, seed=0)
    agent = DQNAgent(5, lr=1e-3, buffer_size=50_000, batch_size=32, learn_every=2, target_every=50, seed=0)
    obs, _ = env.reset(seed=5)
    q0 = agent.q_values(obs).copy()
    rows = []
    train(env, agent, 400, learning_starts=100, exploration_fraction=0.5, on_log=rows.append, log_every=100)
    losses = [r["loss"] for r in rows if "loss" in r]
    episodes = [r for r in rows if "episode_reward" in r]
    assert agent.updates == 150 and len(losses) == 3 and all(np.isfinite(losses))
    assert len(episodes) == 8 and all(r["episode_fps"] > 0 for r in episodes)
    assert np.abs(agent.q_values(obs) - q0).max() > 1e-3


def test_submit_time_reward_sees_imbalance_with_one_frame_in_flight(paper5):
    """With one frame in flight the nodes are idle at every decision: a decision-time reward is 0
    whatever the action; the submit-time reward punishes a lopsided split."""
    def mean_reward(reward_at, decide):
        env = SchedulingEnv(paper5, frames=20, in_flight=1, trace_events=0, down_prob=0.0, warm_prob=1.0,
                            reward_at=reward_at, seed=0)
        return play(env, decide, seed=3)["reward"]

    fair, lopsided = scheduler_decide(Greedy()), (lambda nodes, n: [0, 0, 0, 0, n])
    assert mean_reward("decision", fair) == mean_reward("decision", lopsided) == 0.0
    assert mean_reward("submit", fair) > mean_reward("submit", lopsided)
    with pytest.raises(ConfigError, match="reward_at"):
        SchedulingEnv(paper5, reward_at="later")


def test_unmeasured_nodes_get_a_probe_tile_and_the_first_frame_is_split_evenly():
    from hode.schedule.salbs import SpeedAware
    from hode.schedule.shares import StaleProbe, give_probes, known_speeds

    nodes = states([40.0, 1.0, 20.0])
    nodes[1].measured = False  # its 1.0 is a placeholder, not a speed
    assert known_speeds(nodes).tolist() == [40.0, 30.0, 20.0]
    assert give_probes([6, 0, 4], nodes).tolist() == [5, 1, 4]
    cold = states([1.0, 1.0, 1.0])
    for n in cold:
        n.measured = False
    assert give_probes([9, 0, 0], cold).tolist() == [3, 3, 3]
    # a measured node starved for `after` decisions gets a probe: its reading is as old as its last tile
    probe, warm = StaleProbe(after=2), states([40.0, 5.0, 20.0])
    assert [probe([6, 0, 4], warm).tolist() for _ in range(3)] == [[6, 0, 4], [6, 0, 4], [5, 1, 4]]
    assert probe([6, 0, 4], warm).tolist() == [6, 0, 4]  # probed last frame: fresh again
    # salbs no longer starves the unmeasured node (it used to read as 1 item/s next to 40 and 20)
    assert np.bincount(SpeedAware().assign(tiles(9), nodes), minlength=3).tolist() == [4, 3, 2]


def test_a_topology_without_its_checkpoint_is_resolved_before_anything_starts(tmp_path, caplog):
    from hode.config import ROOT
    from hode.errors import WeightsError
    from hode.schedule.dqn_scheduler import DQNScheduler

    missing = str(ROOT / "weights" / "dqn_my_lab.pt")
    two = DQNScheduler(ckpt=missing)
    two.fit(["a", "b"])  # a shipped checkpoint for two nodes stands in, with a warning
    assert two.ckpt.endswith("dqn_local2.pt") and two.stand_in is None and "no DQN checkpoint" in caplog.text
    three = DQNScheduler(ckpt=missing)
    three.fit(["a", "b", "c"])  # none for three: SALBS, still accuracy-aware
    assert type(three.stand_in).__name__ == "SpeedAware"
    with pytest.raises(WeightsError, match="no DQN checkpoint .*dqn_my_lab.pt .*scheduler.fallback=salbs"):
        DQNScheduler(ckpt=missing, fallback=None).fit(["a", "b", "c"])
    shipped = DQNScheduler(ckpt=str(ROOT / "weights" / "dqn_paper5.pt"))
    shipped.fit(["a", "b"])  # the wrong node count is caught here, not at the first frame
    assert shipped.ckpt.endswith("dqn_local2.pt")
