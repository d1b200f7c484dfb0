"""``task=train_scheduler``: train the DQN scheduler offline in the simulator (paper Fig. 9).

    python run.py task=train_scheduler topology=paper5 runner=sim

The Gymnasium env (hode/schedule/env.py) runs the simulator's queues for the run's topology and
device profiles, with a new random load trace every episode. The DQN's settings (architecture,
reward lambdas, gamma, I) come from ``scheduler=dqn`` (conf/scheduler/dqn.yaml) whatever scheduler
the run names; training settings from ``task``. Writes into the run dir: the checkpoint
(``task.out``, default ``<run dir>/dqn_<topology>.pt``), ``loss.csv`` and ``episodes.csv`` (training
loss and episode reward, also to W&B), ``loss.png`` and ``results.json`` with a held-out
evaluation of the trained policy next to salbs, greedy and oracle in the same env.
"""
from __future__ import annotations

import csv
import logging
import time
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from hode.config import build, load_option
from hode.errors import check
from hode.results import plain_config, run_dir, write_results

log = logging.getLogger(__name__)
DQN_TARGET = "hode.schedule.dqn_scheduler.DQNScheduler"


def dqn_settings(cfg: DictConfig) -> DictConfig:
    """``cfg.scheduler`` when it is the DQN, else conf/scheduler/dqn.yaml resolved against ``cfg``."""
    if cfg.scheduler.get("_target_") == DQN_TARGET:
        return cfg.scheduler
    c = cfg.copy()
    with open_dict(c):
        c.scheduler = load_option("scheduler", "dqn")
    return c.scheduler


def tile_pixels(cfg: DictConfig) -> list[int]:
    """Pixels of every tile window of the dataset's frame grid (edge tiles are smaller)."""
    tiler = build(cfg.tiling)
    H, W = int(cfg.dataset.height), int(cfg.dataset.width)
    return [(w[2] - w[0]) * (w[3] - w[1]) for w in (t.window for t in tiler.tiles(H, W))]


def make_env(cfg: DictConfig, sched: DictConfig, topology, seed: int, trace=None, in_flight=None):
    from hode.schedule.env import EnvSettings, SchedulingEnv

    t = cfg.task
    backend = cfg.runner.get("backend", {})
    if not str(backend.get("_target_", "")).endswith("SimBackend"):
        backend = {}  # another runner: the simulator's defaults
    frames = int(t.episode_frames)
    if trace:  # a fixed trace is played to its end
        frames = max(frames, max(int(e["end"]) for e in trace) + 20)
    return SchedulingEnv(topology, EnvSettings(
        frames=frames, tile_pixels=tile_pixels(cfg), tiles=tuple(t.tiles) if t.tiles is not None else None,
        in_flight=in_flight if in_flight is not None else tuple(t.in_flight),
        lambda1=float(sched.lambda1), lambda2=float(sched.lambda2), step=float(sched.step), n_ref=float(sched.n_ref),
        trace_events=int(t.trace_events), trace_factor=tuple(t.trace_factor), speed_jitter=float(t.speed_jitter),
        down_prob=float(t.down_prob), warm_prob=float(t.warm_prob), trace=trace,
        speed_alpha=float(backend.get("speed_alpha", 0.3)), profiles_dir=backend.get("profiles_dir"), seed=seed,
        reward_at=str(t.get("reward_at", "decision")), probe_after=int(sched.get("probe_after", 5))))


def evaluate_policies(cfg: DictConfig, sched: DictConfig, topology, ckpt: Path, episodes: int, seed: int,
                      trace=None, in_flight: int | None = None) -> dict:
    """fps and mean reward of the trained DQN next to its grid's ceiling (``grid_best``), salbs, greedy
    and oracle on held-out episodes."""
    from hode.schedule.dqn_scheduler import DQNScheduler
    from hode.schedule.env import play, scheduler_decide
    from hode.schedule.greedy import Greedy
    from hode.schedule.oracle import Oracle
    from hode.schedule.salbs import SpeedAware

    out = {}
    k = int(in_flight) if in_flight is not None else max(int(cfg.runner.get("in_flight", 2)), 2)
    # factories: every episode starts with a fresh policy (no probe counters carried over)
    policies = [("dqn", lambda: scheduler_decide(DQNScheduler(ckpt=str(ckpt)))),
                ("grid_best", lambda: grid_best_decide(ckpt)),
                ("salbs", lambda: scheduler_decide(SpeedAware())),
                ("greedy", lambda: scheduler_decide(Greedy())),
                ("oracle", lambda: scheduler_decide(Oracle()))]
    for name, policy in policies:
        env = make_env(cfg, sched, topology, seed, trace=trace, in_flight=k)
        runs = [play(env, policy(), seed + e) for e in range(episodes)]
        out[name] = {"fps": float(np.mean([r["fps"] for r in runs])), "reward": float(np.mean([r["reward"] for r in runs]))}
    for v in out.values():
        v["fps_vs_oracle"] = v["fps"] / out["oracle"]["fps"]
    return out


def grid_best_decide(ckpt: Path):
    """The DQN's ceiling: each decision takes the action of the checkpoint's share grid that finishes
    earliest by the measured speeds (what the camera knows) and probes as the DQN does. With one
    frame in flight every frame stands alone, so this is the best any policy on that grid can do
    with those speeds; where it falls short of salbs, the grid, not the learning, is what loses."""
    from hode.schedule.dqn import read_checkpoint
    from hode.schedule.shares import StaleProbe, best_on_grid, known_speeds, simplex_actions

    ck = read_checkpoint(ckpt)
    actions, probe = simplex_actions(int(ck["nodes"]), float(ck["step"])), StaleProbe()

    def decide(nodes, n: int):
        counts = best_on_grid(actions, n, [x.queue for x in nodes], known_speeds(nodes), [x.up for x in nodes])
        return probe(counts, nodes)

    return decide


def plot_loss(rows: list[dict], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 3.2))
        ax.plot([r["step"] for r in rows], [r["loss"] for r in rows])
        ax.set_xlabel("environment step")
        ax.set_ylabel("TD loss (Huber)")
        ax.set_title("DQN scheduler training loss")
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)
    except Exception as e:  # a figure never fails training
        log.warning("could not draw %s: %s", path, e)


def main(cfg: DictConfig) -> dict:
    from hode.schedule.dqn import DQNAgent, train

    t = cfg.task
    check(int(t.steps) > 0, f"task.steps must be positive, got {t.steps!r}")
    torch.set_num_threads(int(t.threads))
    out_dir = run_dir()
    sched = dqn_settings(cfg)
    topology = build(cfg.topology)
    seed = int(cfg.seed)
    env = make_env(cfg, sched, topology, seed)
    from hode.schedule.dqn import DQNSettings
    from hode.settings import settings_of

    # the scheduler's settings, with the training ones from the task (a learning rate, memory and
    # batch for offline training, not for online learning during a run)
    fields = {k: v for k, v in OmegaConf.to_container(sched, resolve=True).items() if k not in ("_target_", "name")}
    settings = settings_of(DQNSettings, fields, dict(lr=float(t.lr), buffer_size=int(t.buffer_size),
                                                     batch_size=int(t.batch_size), seed=seed), "scheduler")
    symlog = settings.reward_symlog
    agent = DQNAgent(len(topology), settings)
    logger = build(cfg.logger)
    logger.start(plain_config(cfg), out_dir, name=f"train_scheduler-{topology.name}", tags=["train_scheduler", topology.name])
    loss_rows, episode_rows = [], []

    def on_log(row: dict) -> None:
        (loss_rows if "loss" in row else episode_rows).append(row)
        logger.log({k: v for k, v in row.items() if k != "step" and v is not None}, step=row["step"])
        if "loss" in row:
            log.info("step %d  loss %.4f  epsilon %.3f  max Q %.3f", row["step"], row["loss"], row["epsilon"], row["q_mean"])

    log.info("training the DQN scheduler for %s (%d nodes, %d actions) for %d steps", topology.name, len(topology),
             len(agent.actions), int(t.steps))
    t0 = time.perf_counter()
    train(env, agent, int(t.steps), eps_start=float(t.eps_start), eps_end=float(t.eps_end),
          exploration_fraction=float(t.exploration_fraction), learning_starts=int(t.learning_starts), seed=seed,
          on_log=on_log, log_every=int(t.log_every))
    train_s = time.perf_counter() - t0
    ckpt = Path(t.out) if t.out else out_dir / f"dqn_{topology.name}.pt"
    meta = {"topology": topology.name, "nodes": [n.name for n in topology], "models": [n.model for n in topology],
            "devices": [n.device for n in topology], "steps": int(t.steps), "seed": seed,
            "lambda1": float(sched.lambda1), "lambda2": float(sched.lambda2), "gamma": float(sched.gamma),
            "reward_clip": settings.reward_clip, "reward_symlog": symlog}
    agent.save(ckpt, **meta)
    _write_csv(out_dir / "loss.csv", loss_rows, ["step", "loss", "epsilon", "q_mean"])
    _write_csv(out_dir / "episodes.csv", episode_rows, ["step", "episode", "episode_reward", "episode_fps"])
    plot_loss(loss_rows, out_dir / "loss.png")
    logger.image("loss", out_dir / "loss.png")

    results = {"task": "train_scheduler", "topology": topology.name, "checkpoint": str(ckpt), "steps": int(t.steps),
               "train_s": train_s, "updates": agent.updates,
               "loss_first": loss_rows[0]["loss"] if loss_rows else None,
               "loss_last": loss_rows[-1]["loss"] if loss_rows else None}
    if int(t.eval_episodes) > 0:
        results["eval_random_traces"] = evaluate_policies(cfg, sched, topology, ckpt, int(t.eval_episodes), seed + 10_000)
        # one frame in flight: the real-time regime, where every decision finds the nodes idle
        results["eval_one_in_flight"] = evaluate_policies(cfg, sched, topology, ckpt, int(t.eval_episodes),
                                                          seed + 30_000, in_flight=1)
        trace = cfg.runner.get("load_trace")
        trace = OmegaConf.to_container(trace, resolve=True) if trace else []
        if trace:
            results["eval_runner_trace"] = evaluate_policies(cfg, sched, topology, ckpt, int(t.eval_episodes),
                                                             seed + 20_000, trace=trace)
    results = write_results(cfg, results)
    logger.summary({k: v for k, v in results.items() if isinstance(v, (int, float))})
    logger.finish()
    print(f"checkpoint: {ckpt}  ({agent.updates} updates in {train_s:.0f} s)")
    for key in ("eval_random_traces", "eval_one_in_flight", "eval_runner_trace"):
        if key in results:
            print(f"{key} (fps in the training env, {int(t.eval_episodes)} held-out episodes):")
            for name, v in results[key].items():
                print(f"  {name:<9} fps={v['fps']:.2f}  vs oracle={v['fps_vs_oracle']:.3f}  reward={v['reward']:.4f}")
    print(f"results: {out_dir / 'results.json'}")
    return results


def _write_csv(path: Path, rows: list[dict], columns: list[str]) -> None:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
