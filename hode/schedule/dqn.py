"""``scheduler=dqn``: HODE's accuracy-aware DQN-based load-balanced scheduler (paper Algorithm 1).

One module, top to bottom, in the manner of CleanRL's dqn.py:

1. ``features``      the state s_t = (q_i, v_i) per node (eq. 1), made scale-free, with the
                     finish-time balance point computed from it, plus the tile count
2. ``QNetwork``      a small MLP: state -> one Q-value per action (output rows made from each
                     action's share vector, so neighbouring actions share what they learn)
3. ``ReplayBuffer``  experience replay memory (Algorithm 1, line 9)
4. ``DQNAgent``      epsilon-greedy acting with down nodes masked, learning from replayed
                     experience against a target network every ``learn_every`` steps (lines 10-12),
                     a numpy copy of the network for sub-millisecond decisions, checkpoints
5. ``train``         the offline training loop over the Gymnasium env (hode/schedule/env.py)

The ``Scheduler`` that runs the agent in the pipeline (action -> shares -> tile counts -> accuracy-aware
dispatch, online learning, checkpoint fallback) is :class:`hode.schedule.dqn_scheduler.DQNScheduler`.

The action a_t is the vector of shares per node on the 0.1 simplex (eqs. 2-4, see shares.py); the
reward is eqs. 5-7 (reward.py).
"""
from __future__ import annotations

import logging
import random
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from hode.checkpoints import read_tagged
from hode.errors import WeightsError, check
from hode.schedule.shares import known_speeds, simplex_actions
from hode.settings import settings_of
from hode.threads import one_thread
from hode.types import NodeState

log = logging.getLogger(__name__)

CKPT_FORMAT = "hode-dqn-scheduler"
CKPT_VERSION = 1
ARCHITECTURE = ("step", "hidden", "n_ref", "action_embedding")  # fixed by a checkpoint, not by the config
QUEUE_CLIP = 8.0  # queue features are in units of this frame's tiles; beyond 8 frames' worth is "a lot"
TIME_CLIP = 5.0  # seconds; an unmeasured cluster (speed 1 item/s everywhere) reads as this


# ----- 1. state ----------------------------------------------------------------------------------

def features(nodes: Sequence[NodeState], n_items: int, n_ref: float) -> np.ndarray:
    """The DQN's input for one decision, ``(3M + 2,)`` float32, all computed from the paper's state.

    Per node the paper's (q_i, v_i), made independent of the cluster's absolute speed and of the
    frame's size so one network serves every load level: q_i / n (queue in units of this frame's
    tiles) and v_i / sum(v) (share of the total speed). Per node again, the share of the n tiles that
    would make every node's estimated finish time (q_i + x_i) / v_i equal (water-filling, clipped at
    0): the balance point the reward's finish-time term measures against, which the network would
    otherwise have to learn to compute from the ratios. Then two scalars: n / n_ref, the number of
    tiles to place (the paper feeds it to the DQN too, Fig. 7), and n / sum(v), the seconds the whole
    cluster needs for them, which sets the scale of the reward's variance. Down nodes read as zero.
    """
    up = np.array([n.up for n in nodes], bool)
    v = np.maximum(known_speeds(nodes), 0.0) * up
    q = np.array([n.queue for n in nodes], np.float64) * up
    total = float(v.sum())
    vs = v / total if total > 0 else up / max(up.sum(), 1)
    qs = q / max(n_items, 1)
    frame_s = min(n_items / total, TIME_CLIP) if total > 0 else TIME_CLIP
    return np.concatenate([np.minimum(qs, QUEUE_CLIP), vs, balanced_shares(qs, vs, up),
                           [n_items / n_ref, frame_s]]).astype(np.float32)


def balanced_shares(q: np.ndarray, v: np.ndarray, up: np.ndarray) -> np.ndarray:
    """Shares x (sum 1, x >= 0) of one unit of new work equalising (q_i + x_i) / v_i over the nodes
    that get any: water-filling, with queues and speeds in the same units as ``features``."""
    x = np.zeros(len(q))
    active = up & (v > 0)
    for _ in range(len(q)):
        if not active.any():
            break
        level = (1 + q[active].sum()) / v[active].sum()
        x = np.where(active, level * v - q, 0.0)
        if (x[active] >= 0).all():
            break
        active &= x > 0  # nodes whose queue already reaches past the level get nothing
    return np.clip(x, 0, None)


def up_vector(nodes: Sequence[NodeState]) -> np.ndarray:
    return np.array([n.up for n in nodes], bool)


def action_mask(actions: np.ndarray, up: np.ndarray) -> np.ndarray:
    """Actions that give no share to a down node, ``(..., A)`` bool for ``up`` of shape ``(..., M)``."""
    down = (~np.asarray(up, bool)).astype(np.float32)
    return down @ actions.T == 0


# ----- 2. network --------------------------------------------------------------------------------

class QNetwork(nn.Module):
    """State -> one Q-value per action of the share simplex.

    ``action_embedding=True`` (the default): the output layer's row for each action is computed
    from that action's share vector by a small MLP, ``Q(s, a) = body(s) . g(shares_a) + b(shares_a)``.
    It is still one Q-value per discrete action, but neighbouring share vectors share what they
    learn, where a plain output layer must learn each of the 1001 actions from its own samples.
    At decision time the rows are computed once, so acting costs the same as a plain layer.
    """

    def __init__(self, obs_dim: int, actions: np.ndarray, hidden: int = 64, action_embedding: bool = True) -> None:
        super().__init__()
        self.action_embedding = action_embedding
        self.body = nn.Sequential(nn.Linear(obs_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        if action_embedding:
            self.register_buffer("shares", torch.as_tensor(actions, dtype=torch.float32))
            self.embed = nn.Sequential(nn.Linear(actions.shape[1], hidden), nn.ReLU(), nn.Linear(hidden, hidden + 1))
        else:
            self.head = nn.Linear(hidden, len(actions))

    def output_layer(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(weight (A, hidden), bias (A,))`` of the last layer."""
        if not self.action_embedding:
            return self.head.weight, self.head.bias
        e = self.embed(self.shares)
        return e[:, :-1], e[:, -1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w, b = self.output_layer()
        return self.body(x) @ w.T + b


# ----- 3. replay memory --------------------------------------------------------------------------

class ReplayBuffer:
    """A fixed-size ring of (s, a, r, s', up', done) transitions, sampled uniformly."""

    def __init__(self, size: int, obs_dim: int, nodes: int, seed: int = 0) -> None:
        self.size, self.pos, self.full = size, 0, False
        self.obs = np.zeros((size, obs_dim), np.float32)
        self.next_obs = np.zeros((size, obs_dim), np.float32)
        self.actions = np.zeros(size, np.int64)
        self.rewards = np.zeros(size, np.float32)
        self.next_up = np.zeros((size, nodes), bool)
        self.dones = np.zeros(size, np.float32)
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return self.size if self.full else self.pos

    def add(self, obs, action: int, rew: float, next_obs, next_up, done: bool) -> None:
        i = self.pos
        self.obs[i], self.actions[i], self.rewards[i] = obs, action, rew
        self.next_obs[i], self.next_up[i], self.dones[i] = next_obs, next_up, float(done)
        self.pos = (i + 1) % self.size
        self.full = self.full or self.pos == 0

    def sample(self, batch: int):
        idx = self.rng.integers(0, len(self), batch)
        return (torch.from_numpy(self.obs[idx]), torch.from_numpy(self.actions[idx]),
                torch.from_numpy(self.rewards[idx]), torch.from_numpy(self.next_obs[idx]),
                self.next_up[idx], torch.from_numpy(self.dones[idx]))


# ----- settings (mirrored key for key by conf/scheduler/dqn.yaml) --------------------------------

@dataclass
class DQNSettings:
    """Every setting of the DQN scheduler and its agent, written once."""

    ckpt: str | None = None  # checkpoint, loaded on the first decision; None: an untrained network
    fallback: str | None = "salbs"  # no checkpoint for the topology: one for as many nodes, else SALBS; None: refuse
    dispatch: str = "accuracy_aware"  # or in_order (load balance only)
    probe_after: int = 5  # a node left without tiles this many frames gets one (its speed is stale); 0: off
    # Reward (eqs. 5-7): lambda1 x progress-variance improvement + lambda2 x finish-time-variance improvement.
    lambda1: float = 1.0
    lambda2: float = 100.0
    reward_symlog: bool = True  # learn from sign(r) log(1 + |r|): keeps the order among very bad actions
    reward_clip: float | None = None  # clip learnt rewards to +-this after the symlog; None: off
    # Architecture (ARCHITECTURE: a checkpoint brings its own; these apply to a new network).
    step: float = 0.1  # share granularity on the simplex
    hidden: int = 64
    n_ref: float = 40.0  # tiles of a full frame, scales the tile-count input
    action_embedding: bool = True  # output rows computed from each action's shares
    # Learning (online during a run, or offline by task=train_scheduler with its own lr/buffer/batch).
    online: bool = False
    epsilon: float = 0.05
    lr: float = 1e-4
    gamma: float = 0.2
    buffer_size: int = 10_000
    batch_size: int = 64
    learn_every: int = 4  # the paper's I
    target_every: int = 250  # gradient steps between target-network syncs
    learning_starts: int = 64
    seed: int = 0


# ----- 4. agent ----------------------------------------------------------------------------------

class DQNAgent:
    """Q-network, target network, replay memory and the numpy copy used to act."""

    def __init__(self, nodes: int, settings: DQNSettings | Mapping | None = None, **fields: Any) -> None:
        """``settings`` (or its fields as keywords); the agent reads the architecture and learning ones."""
        c = settings_of(DQNSettings, settings, fields, "the DQN agent")
        step, hidden, lr, gamma, n_ref, seed = c.step, c.hidden, c.lr, c.gamma, c.n_ref, c.seed
        buffer_size, batch_size, learn_every, target_every = c.buffer_size, c.batch_size, c.learn_every, c.target_every
        reward_clip, reward_symlog = c.reward_clip, c.reward_symlog
        check(isinstance(nodes, int) and nodes >= 1, f"the DQN needs at least one node, got {nodes!r}")
        check(isinstance(hidden, int) and hidden > 0, f"scheduler.hidden must be a positive integer, got {hidden!r}")
        check(0 <= gamma < 1, f"scheduler.gamma must be in [0, 1), got {gamma!r}")
        check(isinstance(learn_every, int) and learn_every >= 1, f"scheduler.learn_every (I) must be >= 1, got {learn_every!r}")
        check(n_ref > 0, f"scheduler.n_ref must be > 0, got {n_ref!r}")
        self.settings = c
        self.nodes, self.step, self.hidden, self.n_ref = nodes, step, hidden, float(n_ref)
        self.action_embedding = bool(c.action_embedding)
        self.gamma, self.batch_size, self.learn_every, self.target_every = gamma, batch_size, learn_every, target_every
        # Squash rather than clip: clipping flattens the order among very bad actions (one slowed node
        # made every imbalanced action read the same), symlog keeps it (docs/history/schedulers.md).
        check(isinstance(reward_symlog, bool), f"scheduler.reward_symlog must be true or false, got {reward_symlog!r}")
        check(reward_clip is None or (isinstance(reward_clip, (int, float)) and not isinstance(reward_clip, bool)
                                      and reward_clip > 0),
              f"scheduler.reward_clip must be a positive number or null, got {reward_clip!r}")
        self.reward_clip, self.reward_symlog = reward_clip, reward_symlog
        self.actions = simplex_actions(nodes, step)
        self.obs_dim = 3 * nodes + 2
        torch.manual_seed(seed)
        self.rng = random.Random(seed)
        self.q = QNetwork(self.obs_dim, self.actions, hidden, self.action_embedding)
        self.target = QNetwork(self.obs_dim, self.actions, hidden, self.action_embedding)
        self.target.load_state_dict(self.q.state_dict())
        self.optimizer = torch.optim.Adam(self.q.parameters(), lr=lr)
        self.buffer = ReplayBuffer(buffer_size, self.obs_dim, nodes, seed)
        self.meta: dict = {}  # what a checkpoint says about its training (topology, nodes, ...)
        self.steps = 0  # transitions remembered
        self.updates = 0  # gradient steps taken
        self._sync_numpy()

    # -- acting ------------------------------------------------------------------------------------

    def _sync_numpy(self) -> None:
        """Weights as numpy arrays: a batch-1 forward is a few microseconds, torch's is ~10x more."""
        with torch.no_grad():
            body = [(m.weight.numpy().T.copy(), m.bias.numpy().copy()) for m in self.q.body if isinstance(m, nn.Linear)]
            w, b = self.q.output_layer()
            self._np = body + [(w.numpy().T.copy(), b.numpy().copy())]

    def q_values(self, obs: np.ndarray) -> np.ndarray:
        x = np.asarray(obs, np.float32)
        for k, (w, b) in enumerate(self._np):
            x = x @ w + b
            if k < len(self._np) - 1:
                np.maximum(x, 0, out=x)
        return x

    def act(self, obs: np.ndarray, up: np.ndarray, epsilon: float = 0.0) -> int:
        """Epsilon-greedy over the actions that give no share to a down node (Algorithm 1, line 4)."""
        mask = action_mask(self.actions, up)
        if not mask.any():
            raise WeightsError("every action of the DQN gives work to a down node")  # cannot happen with one up node
        if epsilon > 0 and self.rng.random() < epsilon:
            return self.rng.choice(np.flatnonzero(mask).tolist())
        q = self.q_values(obs)
        return int(np.argmax(np.where(mask, q, -np.inf)))

    # -- learning ----------------------------------------------------------------------------------

    def remember(self, obs, action: int, rew: float, next_obs, next_up, done: bool = False) -> None:
        if self.reward_symlog:
            rew = float(np.sign(rew) * np.log1p(abs(rew)))
        if self.reward_clip:
            rew = float(np.clip(rew, -self.reward_clip, self.reward_clip))
        self.buffer.add(obs, action, rew, next_obs, next_up, done)
        self.steps += 1

    def learn(self) -> float:
        """One gradient step of the TD loss on a replayed batch (Algorithm 1, lines 11-12)."""
        with one_thread():
            return self._learn()

    def _learn(self) -> float:
        obs, act, rew, nxt, nxt_up, done = self.buffer.sample(self.batch_size)
        with torch.no_grad():
            target_q = self.target(nxt)
            valid = torch.from_numpy(action_mask(self.actions, nxt_up))
            target_max = target_q.masked_fill(~valid, -1e9).max(dim=1).values
            td_target = rew + self.gamma * target_max * (1 - done)
        q = self.q(obs).gather(1, act[:, None]).squeeze(1)
        loss = F.smooth_l1_loss(q, td_target)
        self.optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(self.q.parameters(), 10.0)
        self.optimizer.step()
        self.updates += 1
        if self.updates % self.target_every == 0:
            self.target.load_state_dict(self.q.state_dict())
        self._sync_numpy()
        return float(loss.detach())

    def maybe_learn(self, learning_starts: int) -> float | None:
        """Learn every ``learn_every`` remembered steps once the memory holds ``learning_starts``."""
        if self.steps > max(learning_starts, 0) and len(self.buffer) >= self.batch_size and self.steps % self.learn_every == 0:
            return self.learn()
        return None

    # -- checkpoints -------------------------------------------------------------------------------

    def save(self, path: str | Path, **meta) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().clone() for k, v in self.q.state_dict().items()}
        torch.save({"format": CKPT_FORMAT, "version": CKPT_VERSION, "nodes": self.nodes, "step": self.step,
                    "hidden": self.hidden, "n_ref": self.n_ref, "action_embedding": self.action_embedding,
                    "state_dict": state, "meta": meta}, path)
        return path

    @classmethod
    def load(cls, path: str | Path, nodes: int | None = None, settings: DQNSettings | Mapping | None = None,
             **fields: Any) -> "DQNAgent":
        """Load a checkpoint; refuses a file that is not one, or one made for another node count. The
        checkpoint's ARCHITECTURE overrides the settings' (the rest, e.g. learning, come from them)."""
        ck = read_checkpoint(path)
        if nodes is not None and ck["nodes"] != nodes:
            raise WeightsError(f"DQN checkpoint {path} was trained for {ck['nodes']} nodes but the topology has "
                               f"{nodes}; train one with `python run.py task=train_scheduler topology=... runner=sim`")
        c = settings_of(DQNSettings, settings, fields, "the DQN agent")
        arch = {k: ck.get(k, False) if k == "action_embedding" else ck[k] for k in ARCHITECTURE}  # no flag: older, none
        agent = cls(ck["nodes"], replace(c, **arch))
        try:
            agent.q.load_state_dict(ck["state_dict"])
        except RuntimeError as e:
            raise WeightsError(f"DQN checkpoint {path} does not fit its own architecture: {str(e).splitlines()[0]}") from None
        agent.target.load_state_dict(agent.q.state_dict())
        agent._sync_numpy()
        agent.meta = ck.get("meta", {})
        return agent


def _nodes_of(path: Path) -> int | None:
    try:
        return int(read_checkpoint(path)["nodes"])
    except (WeightsError, KeyError, TypeError, ValueError):
        return None


def read_checkpoint(path: str | Path) -> dict:
    return read_tagged(path, CKPT_FORMAT, CKPT_VERSION, "DQN scheduler",
                       "train one with `python run.py task=train_scheduler topology=... runner=sim`")


# ----- 5. offline training -----------------------------------------------------------------------

def linear_schedule(start: float, end: float, duration: int, t: int) -> float:
    return max(end, start + (end - start) * t / max(duration, 1))


def train(env, agent: DQNAgent, total_steps: int, eps_start: float = 1.0, eps_end: float = 0.05,
          exploration_fraction: float = 0.5, learning_starts: int = 1000, seed: int = 0,
          on_log: Callable[[dict], None] | None = None, log_every: int = 500) -> dict:
    """CleanRL-style loop: act, step, remember, learn every ``agent.learn_every`` steps.

    ``on_log`` receives ``{"step", "loss", "epsilon", "q_mean"}`` every ``log_every`` steps and
    ``{"step", "episode", "episode_reward", "episode_fps"}`` at the end of every episode.
    """
    obs, info = env.reset(seed=seed)
    episode, ep_reward, losses, q_seen = 0, 0.0, [], []
    history = {"loss": [], "episode_reward": []}
    for t in range(total_steps):
        eps = linear_schedule(eps_start, eps_end, int(exploration_fraction * total_steps), t)
        action = agent.act(obs, info["up"], eps)
        next_obs, rew, terminated, truncated, next_info = env.step(action)
        agent.remember(obs, action, rew, next_obs, next_info["up"], terminated)
        ep_reward += rew
        loss = agent.maybe_learn(learning_starts)
        if loss is not None:
            losses.append(loss)
            q_seen.append(float(agent.q_values(obs).max()))
        obs, info = next_obs, next_info
        if terminated or truncated:
            row = {"step": t, "episode": episode, "episode_reward": ep_reward, "episode_fps": next_info.get("fps")}
            history["episode_reward"].append(row)
            if on_log:
                on_log(row)
            episode, ep_reward = episode + 1, 0.0
            obs, info = env.reset()
        if (t + 1) % log_every == 0 and losses:
            row = {"step": t + 1, "loss": float(np.mean(losses)), "epsilon": eps, "q_mean": float(np.mean(q_seen))}
            history["loss"].append(row)
            if on_log:
                on_log(row)
            losses, q_seen = [], []
    return history
