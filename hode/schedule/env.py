"""A Gymnasium environment for training the DQN scheduler offline (paper Algorithm 1, Fig. 9).

One step is one frame's scheduling decision, exactly as the camera loop (hode/pipeline.py) makes
it: observe the node states, choose shares, submit the frame's tiles, then wait -- on the virtual
clock -- until fewer than ``in_flight`` frames are outstanding, which is when the camera decides
again. The reward is eqs. 5-7 between the two decision points (hode/schedule/reward.py).

The cluster is the simulator's own core (:class:`hode.cluster.queues.NodeQueues`: FIFO servers, device
profiles, seeded noise, load-trace factors, measured speeds as the camera sees them); only timing
is simulated, since no detection is needed to learn load balance. Every episode draws a new load
trace: a per-node speed offset over the whole episode, random nodes slowed 1.5-5x over random frame
ranges, sometimes a node down for a while, and a new walk of kept-tile counts; so the policy learns
to react to slowdowns rather than memorise one cluster state. A tile's pixel count (and so its
service time) is that of a random tile of the configured frame grid.

When the reward's "after" state is observed is a choice the paper leaves open. ``reward_at="decision"``
observes it at the next decision point (after the camera waited for a slot); with one frame in
flight every decision then finds every node idle, so the reward is always 0 and nothing is learned.
``reward_at="submit"`` observes it right after the frame's tiles are queued (no virtual time passes),
so the finish-time term sees exactly the imbalance the action made, whatever ``in_flight`` is; the
transition's next state is still the next decision's.
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import gymnasium as gym
import numpy as np

from hode.cluster.queues import NodeQueues
from hode.cluster.topology import Topology
from hode.errors import check
from hode.profiles import TILE_PIXELS, LoadTrace
from hode.schedule.dqn import QUEUE_CLIP, TIME_CLIP, features, up_vector
from hode.schedule.reward import reward
from hode.schedule.shares import StaleProbe, largest_remainder, simplex_actions
from hode.settings import settings_of
from hode.types import NodeState


def random_trace(names: Sequence[str], frames: int, rng: np.random.Generator, max_events: int = 3,
                 factor: tuple[float, float] = (1.5, 5.0), jitter: float = 0.2) -> LoadTrace:
    """A per-node speed offset for the whole episode, then up to ``max_events`` slowdowns of random
    nodes over random frame ranges."""
    events = [{"node": n, "start": 0, "end": 10 * frames + 100, "factor": float(rng.uniform(1 - jitter, 1 + jitter))}
              for n in names] if jitter > 0 else []
    for _ in range(int(rng.integers(0, max_events + 1))):
        start = int(rng.integers(0, frames))
        length = int(rng.integers(max(frames // 10, 1), max(frames // 2, 2)))
        events.append({"node": names[int(rng.integers(len(names)))], "start": start, "end": start + length,
                       "factor": float(rng.uniform(*factor))})
    return LoadTrace(events)


@dataclass
class EnvSettings:
    """Every setting of the scheduling env, written once (task=train_scheduler fills them from
    conf/task/train_scheduler.yaml, the DQN's reward and grid from conf/scheduler/dqn.yaml)."""

    frames: int = 200  # frames per episode
    tile_pixels: Sequence[int] = (TILE_PIXELS,) * 40  # pixels of every tile of the frame grid
    tiles: tuple[int, int] | None = None  # [lo, hi] kept tiles per frame; None: a quarter of the grid up to all
    in_flight: int | Sequence[int] = (2, 3)  # frames outstanding, drawn per episode from [lo, hi]
    lambda1: float = 1.0  # the reward's weights (eqs. 5-7), as the DQN's
    lambda2: float = 1.0
    step: float = 0.1  # share granularity of the actions, as the DQN's
    n_ref: float = 40.0  # tiles of a full frame, as the DQN's
    trace_events: int = 3  # random slowdowns per episode: up to this many
    trace_factor: Sequence[float] = (1.5, 5.0)  # slowdown factor range
    speed_jitter: float = 0.2  # per-episode speed offset of every node: x(1 +- this)
    down_prob: float = 0.1  # chance per episode that one node is down for a while
    warm_prob: float = 0.8  # chance per episode that node speeds start measured
    trace: LoadTrace | list | None = None  # a fixed load trace instead of random ones
    speed_alpha: float = 0.3  # moving average of the measured speeds, as the simulator's
    profiles_dir: str | None = None  # device profiles from here instead of conf/device
    seed: int | None = None
    reward_at: str = "decision"  # when the reward's "after" state is seen: decision | submit (module doc)
    probe_after: int = 5  # as the DQN's


class SchedulingEnv(gym.Env):
    """Observation: the DQN features of the node states; action: an index into the share simplex.

    ``info`` carries ``up`` (the action mask's input), ``nodes`` (the NodeStates the camera would
    see), ``tiles`` (tiles of the next frame) and ``fps`` (frames finished per virtual second).
    """

    metadata = {"render_modes": []}

    def __init__(self, topology: Topology, settings: EnvSettings | Mapping | None = None, **fields: Any) -> None:
        """``settings`` (or its fields as keywords); task=train_scheduler fills them from its config."""
        c = self.settings = settings_of(EnvSettings, settings, fields, "the scheduling env")
        frames, tile_pixels, tiles, in_flight, trace = c.frames, c.tile_pixels, c.tiles, c.in_flight, c.trace
        lambda1, lambda2, step, n_ref, reward_at, probe_after = c.lambda1, c.lambda2, c.step, c.n_ref, c.reward_at, c.probe_after
        trace_events, trace_factor, speed_jitter = c.trace_events, c.trace_factor, c.speed_jitter
        down_prob, warm_prob, speed_alpha, profiles_dir, seed = c.down_prob, c.warm_prob, c.speed_alpha, c.profiles_dir, c.seed
        check(reward_at in ("decision", "submit"), f"reward_at must be 'decision' or 'submit', got {reward_at!r}")
        self.reward_at = reward_at
        self.probe = StaleProbe(probe_after)  # as DQNScheduler does with the actions it takes
        self.topology = topology
        m = len(topology)
        self.pixels = np.asarray(tile_pixels, np.int64)
        check(len(self.pixels) >= 1, "the scheduling env needs at least one tile per frame")
        tiles = tuple(tiles) if tiles is not None else (max(1, len(self.pixels) // 4), len(self.pixels))
        check(1 <= tiles[0] <= tiles[1] <= len(self.pixels), f"env tiles range must be within 1..{len(self.pixels)}, got {tiles!r}")
        lo, hi = (in_flight, in_flight) if isinstance(in_flight, int) else tuple(in_flight)
        check(1 <= lo <= hi, f"env in_flight must be >= 1, got {in_flight!r}")
        check(isinstance(frames, int) and frames >= 1, f"env frames must be a positive integer, got {frames!r}")
        self.frames, self.tiles, self.in_flight = frames, tiles, (lo, hi)
        self.lambda1, self.lambda2, self.n_ref = lambda1, lambda2, n_ref
        self.trace_events, self.trace_factor, self.speed_jitter = trace_events, tuple(trace_factor), speed_jitter
        self.down_prob, self.warm_prob, self.speed_alpha, self.profiles_dir = down_prob, warm_prob, speed_alpha, profiles_dir
        self.fixed_trace = trace if trace is None or isinstance(trace, LoadTrace) else LoadTrace(list(trace))
        if self.fixed_trace is not None:
            self.fixed_trace.check_nodes([n.name for n in topology])
        self.actions = simplex_actions(m, step)
        high = np.array([QUEUE_CLIP] * m + [1.0] * 2 * m + [len(self.pixels) / n_ref, TIME_CLIP], np.float32)
        self.observation_space = gym.spaces.Box(np.zeros_like(high), high, dtype=np.float32)
        self.action_space = gym.spaces.Discrete(len(self.actions))
        self._rng = np.random.default_rng(seed)

    # -- episode ---------------------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        rng, m = self._rng, len(self.topology)
        names = [n.name for n in self.topology]
        trace = self.fixed_trace if self.fixed_trace is not None else random_trace(
            names, self.frames, rng, self.trace_events, self.trace_factor, self.speed_jitter)
        self.core = NodeQueues(self.topology, int(rng.integers(2**31)), trace, self.speed_alpha, self.profiles_dir)
        if rng.random() < self.warm_prob:  # warmed up: the camera has measured every node already
            self.core.speed = [1.0 / (s * f) for s, f in zip(self.core.tile_s, self.core.factors(0))]
        self.k = int(rng.integers(self.in_flight[0], self.in_flight[1] + 1))
        self.probe.reset()
        self.down = None
        if m > 1 and rng.random() < self.down_prob:
            start = int(rng.integers(0, self.frames))
            self.down = (int(rng.integers(m)), start, start + int(rng.integers(10, max(self.frames // 3, 11))))
        self.now, self.t, self.completed = 0.0, 0, 0
        self.pending: list[tuple[float, int]] = []  # (finish, frame) of frames in flight
        self.assigned: dict[int, np.ndarray] = {}  # frame in flight -> tiles per node
        self.done: dict[int, np.ndarray] = {}  # frame in flight -> tiles returned per node
        self.n = int(rng.integers(self.tiles[0], self.tiles[1] + 1))
        self._before = self.states()
        return self._obs(self._before), self._info(self._before)

    def states(self) -> list[NodeState]:
        """What the camera sees now: the simulator's node states plus up/down and progress."""
        out = self.core.states(self.t)
        a = sum(self.assigned.values(), np.zeros(len(out), np.int64))
        d = sum(self.done.values(), np.zeros(len(out), np.int64))
        for i, s in enumerate(out):
            s.progress = float(d[i] / a[i]) if a[i] else 1.0
            s.up = not (self.down and self.down[0] == i and self.down[1] <= self.t < self.down[2])
        return out

    def _obs(self, states: list[NodeState]) -> np.ndarray:
        return features(states, self.n, self.n_ref)

    def _info(self, states: list[NodeState]) -> dict:
        return {"up": up_vector(states), "nodes": states, "tiles": self.n,
                "fps": self.completed / self.now if self.now > 0 else None}

    def counts_for(self, action: int) -> np.ndarray:
        """The action's tile counts, as the scheduler turns them (a never-measured or starved node gets a probe tile)."""
        return self.probe(largest_remainder(self.actions[int(action)], self.n), self._before)

    def step(self, action: int):
        return self.step_counts(self.counts_for(action))

    def _advance(self, t: float) -> None:
        self.now = max(self.now, t)
        for i, e in self.core.pop_until(self.now):
            self.done[e[3]][i] += 1
        while self.pending and self.pending[0][0] <= self.now:
            _, f = heapq.heappop(self.pending)
            del self.assigned[f], self.done[f]
            self.completed += 1

    def step_counts(self, counts: Sequence[int]):
        """One frame with the given tiles per node (lets any scheduler be played in this env)."""
        counts = np.asarray(counts, np.int64)
        check(counts.sum() == self.n, f"counts {counts.tolist()} do not add up to the frame's {self.n} tiles")
        up = up_vector(self._before)
        check(not np.any(counts[~up]), f"counts {counts.tolist()} give work to a node that is down")
        assignment = np.repeat(np.arange(len(counts)), counts)
        self._rng.shuffle(assignment)
        pixels = self._rng.choice(self.pixels, self.n, replace=False)
        last = self.core.enqueue(self.t, list(range(self.n)), assignment.tolist(), pixels.tolist(), self.now,
                                 self.core.factors(self.t))
        self.assigned[self.t], self.done[self.t] = counts, np.zeros_like(counts)
        heapq.heappush(self.pending, (last, self.t))
        self._advance(self.now)
        queued = self.states() if self.reward_at == "submit" else None
        while len(self.pending) >= self.k:  # the camera waits for a slot, as Pipeline.run does
            self._advance(self.pending[0][0])
        self.t += 1
        self.n = int(np.clip(self.n + self._rng.integers(-3, 4), *self.tiles))
        after = self.states()
        r = reward(self._before, queued if queued is not None else after, self.lambda1, self.lambda2)
        self._before = after
        truncated = self.t >= self.frames
        if truncated:  # drain, so the episode's fps counts every frame
            while self.pending:
                self._advance(self.pending[0][0])
        return self._obs(after), float(r), False, truncated, self._info(after)


# ----- playing a policy or a scheduler in the env --------------------------------------------------

Decide = Callable[[list[NodeState], int], Sequence[int]]


def scheduler_decide(scheduler) -> Decide:
    """Counts per node chosen by any tile ``Scheduler`` (its ``assign`` on stand-in tiles)."""
    from hode.types import WorkItem

    def decide(nodes: list[NodeState], n: int) -> np.ndarray:
        dummy = np.zeros((1, 1, 3), np.uint8)
        work = [WorkItem(0, k, (0, 0, 1, 1), dummy, "tile", float(n - k)) for k in range(n)]
        return np.bincount(scheduler.assign(work, nodes), minlength=len(nodes))

    return decide


def play(env: SchedulingEnv, decide: Decide, seed: int) -> dict:
    """One episode with ``decide``; returns fps, mean reward and mean frame count per node."""
    obs, info = env.reset(seed=seed)
    rewards, done = [], False
    while not done:
        _, r, term, trunc, info = env.step_counts(decide(info["nodes"], info["tiles"]))
        rewards.append(r)
        done = term or trunc
    return {"fps": info["fps"], "reward": float(np.mean(rewards))}
