"""MAPPO for the task-allocation policy: shared categorical actor, centralised critic.

One update: ``ppo.rollout_steps`` decision steps of ``ppo.num_envs`` MRTA environments
(:class:`sim.mrta.env.MRTAVecEnv`; every robot is an agent and a sample), GAE per agent on
the shared team reward, then ``ppo.epochs`` passes of clipped-PPO minibatch updates.

Reused from the swarm trainer: :func:`swarm_rl.train.ppo.gae`, the value normaliser
(:class:`swarm_rl.models.RunningNorm`), the atomic checkpoint files
(:mod:`swarm_rl.train.checkpoint`), the PPO config fields and ``--set`` overrides. Not reused:
``swarm_rl.train.ppo.Trainer`` itself, whose collection and losses are written for Gaussian
actions on :class:`sim.swarm_env.SwarmVecEnv` observations and critic state; here the actions
are masked categorical choices and the critic reads the task world's global state, so
``collect`` and ``update`` below are the categorical counterparts of its methods, in the same
shape. Episodes end on their last decision step (time left is in the observation), so there is
no truncation bootstrap.
"""
from __future__ import annotations

import json
import logging
import pickle
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from sim.mrta.config import LEVELS
from sim.mrta.env import MRTAStep, MRTAVecEnv
from sim.mrta.observation import MRTALayout, MRTAObservation
from swarm_rl import files
from swarm_rl.errors import CheckpointError
from swarm_rl.files import json_safe
from swarm_rl.models import RunningNorm
from swarm_rl.mrta import imitate as imitation
from swarm_rl.mrta.config import MRTATrainConfig, mrta_train_config_from_dict
from swarm_rl.mrta.model import TaskActor, TaskCritic, widen_inputs
from swarm_rl.train.checkpoint import load_checkpoint, load_module_state, save_checkpoint
from swarm_rl.train.ppo import gae

log = logging.getLogger(__name__)
CHECKPOINT_NAME = "checkpoint.pt"


def masked_sample(logits: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """One choice per row from masked logits (B, A), drawn with ``gen``."""
    probs = torch.softmax(logits, dim=-1)
    return torch.multinomial(probs, 1, generator=gen)[:, 0]


class MixedEnv:
    """Several :class:`MRTAVecEnv` (one per preset of a ``mix``) stepped as one: arrays are
    joined along the environment axis. All parts share layout, robot count, task capacity
    and episode length (checked by the config), so their episodes end together."""

    def __init__(self, parts: list[MRTAVecEnv]) -> None:
        self.parts = parts
        self.layout = parts[0].layout
        self.num_robots = parts[0].num_robots
        self.num_envs = sum(p.num_envs for p in parts)
        self._bounds = np.cumsum([0] + [p.num_envs for p in parts])

    @staticmethod
    def _join(items: list[MRTAObservation]) -> MRTAObservation:
        return MRTAObservation(*(np.concatenate([getattr(o, f) for o in items])
                                 for f in ("obs", "slot_task", "action_mask")))

    def reset(self) -> MRTAObservation:
        return self._join([p.reset() for p in self.parts])

    def propose(self, actions: np.ndarray) -> MRTAObservation:
        b = self._bounds
        return self._join([p.propose(actions[b[i]:b[i + 1]]) for i, p in enumerate(self.parts)])

    def redundant(self) -> np.ndarray:
        return np.concatenate([p.redundant() for p in self.parts])

    def critic_state(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        states = [p.critic_state() for p in self.parts]
        return tuple(np.concatenate([s[i] for s in states]) for i in range(3))

    def step(self, actions: np.ndarray) -> MRTAStep:
        b = self._bounds
        steps = [p.step(actions[b[i]:b[i + 1]]) for i, p in enumerate(self.parts)]
        info = {}
        if steps[0].done:
            info["episode"] = {k: np.concatenate([s.info["episode"][k] for s in steps])
                               for k in steps[0].info["episode"]}
        return MRTAStep(self._join([s.obs for s in steps]),
                        np.concatenate([s.reward for s in steps]), steps[0].done, info)


def make_env(cfg: MRTATrainConfig) -> MRTAVecEnv | MixedEnv:
    """The training environments: ``env`` alone, or ``env`` and the ``mix`` presets with an
    equal share of ``ppo.num_envs`` each."""
    if not cfg.mix_envs:
        return MRTAVecEnv(cfg.env, cfg.ppo.num_envs, seed=cfg.seed)
    envs = [cfg.env] + cfg.mix_envs
    share = cfg.ppo.num_envs // len(envs)
    return MixedEnv([MRTAVecEnv(e, share, seed=cfg.seed * 1000 + i)
                     for i, e in enumerate(envs)])


@dataclass
class Rollout:
    obs: list[torch.Tensor] = field(default_factory=list)
    robots: list[torch.Tensor] = field(default_factory=list)
    tasks: list[torch.Tensor] = field(default_factory=list)
    task_mask: list[torch.Tensor] = field(default_factory=list)
    actions: list[torch.Tensor] = field(default_factory=list)
    logp: list[torch.Tensor] = field(default_factory=list)
    values: list[torch.Tensor] = field(default_factory=list)
    rewards: list[torch.Tensor] = field(default_factory=list)
    dones: list[torch.Tensor] = field(default_factory=list)
    clone_labels: list[torch.Tensor] = field(default_factory=list)
    """The market's choices (observation slots), with ``imitate.ppo_coef`` > 0."""
    clone_weights: list[torch.Tensor] = field(default_factory=list)
    """1 where that label is cloned (usable, of ``imitate.ppo_levels``), else 0."""
    next_value: torch.Tensor | None = None


class MRTATrainer:
    """Trains the task actor and critic; writes ``checkpoint.pt`` (atomic), ``progress.jsonl``
    (one line per update) and ``config.json`` into ``out_dir``."""

    def __init__(self, cfg: MRTATrainConfig, out_dir: Path) -> None:
        self.cfg = cfg.validate()
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.env = make_env(cfg)
        self.actor = TaskActor(self.env.layout, cfg.model)
        self.critic = TaskCritic(self.env.layout, cfg.model)
        self.value_norm = RunningNorm(1, clip=1e9)
        params = list(self.actor.parameters()) + list(self.critic.parameters())
        self.optimizer = torch.optim.Adam(params, lr=cfg.ppo.lr, eps=1e-5)
        if cfg.init:
            self._init_from(Path(cfg.init))
        self.update_index = 0
        self.steps = 0
        self.wall_s = 0.0
        self.imitated = 0
        """Demonstration rollouts cloned so far (:meth:`imitate`)."""
        self.obs = self.env.reset()
        self.recent: list[dict[str, float]] = []
        files.write_json(self.out_dir / "config.json", cfg.to_dict())

    def _init_from(self, path: Path) -> None:
        """Start from the actor, critic and value normaliser of another run's checkpoint
        (``init``); optimizer, steps and schedule stay fresh."""
        data = load_checkpoint(path)
        if data.get("kind") != "mrta":
            raise CheckpointError(f"{path}: init: not an MRTA training checkpoint")
        actor, critic = data["actor"], data["critic"]
        env = data.get("config", {}).get("env", {})
        old = MRTALayout(env.get("task_slots", self.env.layout.task_slots),
                         env.get("neighbour_slots", self.env.layout.neighbour_slots),
                         env.get("obs_layout", self.env.layout.version))
        if old != self.env.layout:
            try:
                actor, critic = widen_inputs(actor, critic, old, self.env.layout)
            except ValueError as exc:
                raise CheckpointError(f"{path}: init: {exc}") from exc
            log.info("init: layout v%d networks widened to v%d (new inputs at zero weight)",
                     old.version, self.env.layout.version)
        load_module_state(self.actor, actor, "actor", path)
        load_module_state(self.critic, critic, "critic", path)
        self.value_norm.load_state_dict(data["value_norm"])

    def imitate(self, progress_bar: bool = True) -> dict[str, float]:
        """The warm start (``imitate.updates`` rollouts of market decisions cloned into the
        actor and critic, :mod:`swarm_rl.mrta.imitate`); one row per rollout in
        ``imitation.jsonl``, a checkpoint after each (a resume goes on from there). Fresh
        episodes follow, for PPO."""
        cfg, ppo = self.cfg, self.cfg.ppo
        stats: dict[str, float] = {}
        kept: list[imitation.Demonstrations] = []
        for _ in tqdm(range(self.imitated, cfg.imitate.updates), desc="imitate market",
                      unit="rollout", disable=not progress_bar or None):
            t0 = time.perf_counter()
            learner = self.actor if self.imitated >= cfg.imitate.teacher_rollouts else None
            demo = imitation.collect_demonstrations(self.env, ppo.rollout_steps, ppo.gamma,
                                                    learner)
            t1 = time.perf_counter()
            kept = (kept + [demo])[-cfg.imitate.keep_rollouts:]
            stats = imitation.fit(self.actor, self.critic, self.value_norm, self.optimizer,
                                  imitation.merge(kept), cfg.imitate.epochs,
                                  ppo.minibatch_size, ppo.value_coef, ppo.max_grad_norm,
                                  self.gen, (demo.obs.shape[0], demo.critic_obs.shape[0]))
            self.imitated += 1
            self.wall_s += time.perf_counter() - t0
            row = {"rollout": self.imitated, "flown_by": "policy" if learner else "market",
                   "samples": int(demo.labels.shape[0]), "kept_rollouts": len(kept),
                   "collect_s": t1 - t0, "fit_s": time.perf_counter() - t1,
                   "unknown_share": demo.unknown_share,
                   "return": demo.episode_return, **stats}
            self._append_row("imitation.jsonl", row)
            log.info("imitation %d/%d: accuracy %.3f, return %.1f", self.imitated,
                     cfg.imitate.updates, stats["imitation_accuracy"], demo.episode_return)
            self.save()
        self.obs = self.env.reset()
        return stats

    def _global(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Critic state repeated for each agent: (E N, N, 5), (E N, M, 7), (E N, M)."""
        robots, tasks, mask = self.env.critic_state()
        n = self.env.num_robots
        rep = lambda a: torch.from_numpy(np.repeat(a, n, axis=0))  # noqa: E731
        return rep(robots), rep(tasks), rep(mask)

    def _potential(self) -> np.ndarray:
        """(E N,) each robot's shaping potential: -redundancy_shaping where it is redundant."""
        if not self.cfg.redundancy_shaping:
            return np.zeros(self.env.num_envs * self.env.num_robots)
        return -self.cfg.redundancy_shaping * self.env.redundant().reshape(-1).astype(float)

    def _value(self, obs: torch.Tensor, robots: torch.Tensor, tasks: torch.Tensor,
               mask: torch.Tensor) -> torch.Tensor:
        z = self.critic(obs, robots, tasks, mask)
        return z * torch.sqrt(self.value_norm.var + 1e-8) + self.value_norm.mean

    @torch.no_grad()
    def collect(self) -> Rollout:
        env, ppo = self.env, self.cfg.ppo
        e, n = env.num_envs, env.num_robots
        ro = Rollout()
        rounds = self.cfg.env.negotiation_rounds
        for _ in range(ppo.rollout_steps):
            for _ in range(rounds - 1):
                # Negotiation rounds: tentative choices, drawn from the same policy, that the
                # robots announce to each other; only the final round's choice is a sample.
                tentative = masked_sample(
                    self.actor(torch.from_numpy(self.obs.obs.reshape(e * n, -1))), self.gen)
                self.obs = env.propose(tentative.reshape(e, n).numpy())
            obs = torch.from_numpy(self.obs.obs.reshape(e * n, -1))
            robots, tasks, mask = self._global()
            logits = self.actor(obs)
            action = masked_sample(logits, self.gen)
            logp = torch.log_softmax(logits, -1).gather(1, action[:, None])[:, 0]
            value = self._value(obs, robots, tasks, mask)
            if self.cfg.imitate.ppo_coef:
                labels, keep = imitation.rollout_labels(env, self.cfg.imitate.ppo_levels)
                ro.clone_labels.append(torch.from_numpy(labels))
                ro.clone_weights.append(torch.from_numpy(keep.astype(np.float32)))
            phi = self._potential()
            result = env.step(action.reshape(e, n).numpy())
            reward = np.repeat(result.reward, n)
            if self.cfg.redundancy_shaping:
                # Potential-based, per robot: gamma phi(s') - phi(s), phi = -c if redundant
                # (0 once the episode has ended), so the optimal policies are unchanged.
                nxt = np.zeros_like(phi) if result.done else self._potential()
                reward = reward + ppo.gamma * nxt - phi
            reward = torch.from_numpy(reward).float()
            done = torch.full((e * n,), float(result.done))
            if result.done:
                ep = result.info["episode"]
                self.recent = (self.recent + [{k: float(np.mean(v)) for k, v in ep.items()}]
                               )[-5:]
            for name, item in (("obs", obs), ("robots", robots), ("tasks", tasks),
                               ("task_mask", mask), ("actions", action), ("logp", logp),
                               ("values", value), ("rewards", reward), ("dones", done)):
                getattr(ro, name).append(item)
            self.obs = result.obs
        obs = torch.from_numpy(self.obs.obs.reshape(e * n, -1))
        ro.next_value = self._value(obs, *self._global())
        return ro

    def update(self, ro: Rollout) -> dict[str, float]:
        ppo = self.cfg.ppo
        values = torch.stack(ro.values)
        adv = gae(torch.stack(ro.rewards), values, torch.stack(ro.dones), ro.next_value,
                  ppo.gamma, ppo.gae_lambda)
        returns = (adv + values).reshape(-1)
        adv = adv.reshape(-1)
        obs, robots = torch.cat(ro.obs), torch.cat(ro.robots)
        tasks, task_mask = torch.cat(ro.tasks), torch.cat(ro.task_mask)
        actions, old_logp = torch.cat(ro.actions), torch.cat(ro.logp)
        clone_coef = self.cfg.imitate.ppo_coef
        if clone_coef:
            clone_labels, clone_w = torch.cat(ro.clone_labels), torch.cat(ro.clone_weights)
        self.value_norm.update(returns[:, None])
        v_mean, v_std = self.value_norm.mean, torch.sqrt(self.value_norm.var + 1e-8)
        target = (returns - v_mean) / v_std
        total = obs.shape[0]
        params = list(self.actor.parameters()) + list(self.critic.parameters())
        keys = ("pg_loss", "v_loss", "entropy", "approx_kl", "clipfrac") + (
            ("clone_ce", "clone_accuracy") if clone_coef else ())
        stats: dict[str, list[float]] = {k: [] for k in keys}
        for _ in range(ppo.epochs):
            perm = torch.randperm(total, generator=self.gen)
            for start in range(0, total, ppo.minibatch_size):
                idx = perm[start:start + ppo.minibatch_size]
                log_probs = torch.log_softmax(self.actor(obs[idx]), -1)
                logp = log_probs.gather(1, actions[idx, None])[:, 0]
                log_ratio = logp - old_logp[idx]
                ratio = log_ratio.exp()
                mb_adv = adv[idx]
                mb_adv = (mb_adv - mb_adv.mean()) / (mb_adv.std() + 1e-8)
                pg_loss = torch.max(-mb_adv * ratio,
                                    -mb_adv * ratio.clamp(1 - ppo.clip, 1 + ppo.clip)).mean()
                pred = self.critic(obs[idx], robots[idx], tasks[idx], task_mask[idx])
                v_loss = 0.5 * ((pred - target[idx]) ** 2).mean()
                entropy = -(log_probs.exp() * log_probs).sum(-1).mean()
                loss = pg_loss - ppo.entropy_coef * entropy + ppo.value_coef * v_loss
                if clone_coef:
                    # Cross-entropy on the market's choices where they are cloned
                    # (imitate.ppo_levels), averaged over those samples only.
                    w = clone_w[idx]
                    label_logp = log_probs.gather(1, clone_labels[idx, None])[:, 0]
                    clone_ce = -(w * label_logp).sum() / w.sum().clamp(min=1.0)
                    loss = loss + clone_coef * clone_ce
                    with torch.no_grad():
                        hit = (log_probs.argmax(-1) == clone_labels[idx]).float()
                        stats["clone_ce"].append(clone_ce.item())
                        stats["clone_accuracy"].append(
                            ((w * hit).sum() / w.sum().clamp(min=1.0)).item())
                self.optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(params, ppo.max_grad_norm)
                self.optimizer.step()
                with torch.no_grad():
                    stats["pg_loss"].append(pg_loss.item())
                    stats["v_loss"].append(v_loss.item())
                    stats["entropy"].append(entropy.item())
                    stats["approx_kl"].append(((ratio - 1) - log_ratio).mean().item())
                    stats["clipfrac"].append(((ratio - 1).abs() > ppo.clip).float().mean().item())
        var_y = returns.var()
        explained = 1.0 - (returns - values.reshape(-1)).var() / var_y if var_y > 0 else 0.0
        out = {k: float(np.mean(v)) for k, v in stats.items()}
        out["explained_var"] = float(explained)
        out["lr"] = self.optimizer.param_groups[0]["lr"]
        if clone_coef:
            out["clone_share"] = float(clone_w.mean())
        return out

    def _anneal(self) -> None:
        frac = 1.0 - (1.0 - self.cfg.ppo.lr_final_frac) * min(1.0, self.steps
                                                               / self.cfg.total_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = self.cfg.ppo.lr * frac

    def train(self, progress_bar: bool = True) -> dict[str, float]:
        """Run until ``total_steps`` agent decisions; on Ctrl-C keep the last checkpoint."""
        cfg = self.cfg
        bar = tqdm(total=cfg.total_steps, initial=self.steps, unit="dec", unit_scale=True,
                   dynamic_ncols=True, desc=f"train {cfg.preset or 'mrta'}",
                   disable=not progress_bar or None)
        last: dict[str, float] = {}
        if self.imitated < cfg.imitate.updates and self.update_index == 0:
            self.imitate(progress_bar)
        try:
            while self.steps < cfg.total_steps:
                t0 = time.perf_counter()
                self._anneal()
                rollout = self.collect()
                t1 = time.perf_counter()
                stats = self.update(rollout)
                t2 = time.perf_counter()
                samples = cfg.ppo.rollout_steps * self.env.num_envs * self.env.num_robots
                self.steps += samples
                self.update_index += 1
                self.wall_s += t2 - t0
                last = self._log(stats, samples, t1 - t0, t2 - t1)
                bar.update(samples)
                bar.set_postfix(ret=f"{last.get('return', float('nan')):.1f}")
                if self.update_index % cfg.checkpoint_every == 0:
                    self.save()
        finally:
            bar.close()
        self.save()
        return last

    def _log(self, stats: dict[str, float], samples: int, collect_s: float,
             update_s: float) -> dict[str, float]:
        row = {"update": self.update_index, "steps": self.steps, "wall_s": self.wall_s,
               "steps_per_s": samples / (collect_s + update_s), "collect_s": collect_s,
               "update_s": update_s, **stats}
        if self.recent:
            for key in self.recent[-1]:
                row[key] = float(np.mean([m[key] for m in self.recent]))
        self._append_row("progress.jsonl", row)
        return row

    def _append_row(self, name: str, row: dict) -> None:
        """One JSON line appended to the run directory's log ``name``."""
        with open(self.out_dir / name, "a") as f:
            f.write(json.dumps(json_safe(row), allow_nan=False) + "\n")

    def save(self) -> Path:
        path = self.out_dir / CHECKPOINT_NAME
        save_checkpoint(path, {
            "kind": "mrta", "config": self.cfg.to_dict(),
            "actor": self.actor.state_dict(), "critic": self.critic.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "value_norm": self.value_norm.state_dict(),
            "update_index": self.update_index, "steps": self.steps, "wall_s": self.wall_s,
            "imitated": self.imitated,
            "torch_rng": torch.get_rng_state(), "gen": self.gen.get_state(),
            "env": pickle.dumps(self.env), "obs": self.obs, "recent": self.recent,
        })
        return path

    def save_init(self, path: Path) -> Path:
        """Write what ``init`` reads (actor, critic, value normaliser, config, steps) without
        the optimizer and the environments: a file small enough to ship next to a policy
        (``policies/NAME.init.pt``) so that its fine-tuning can be rerun from a clean clone."""
        save_checkpoint(Path(path), {
            "kind": "mrta", "config": self.cfg.to_dict(),
            "actor": self.actor.state_dict(), "critic": self.critic.state_dict(),
            "value_norm": self.value_norm.state_dict(), "steps": self.steps,
        })
        return Path(path)

    @classmethod
    def resume(cls, run_dir: Path, total_steps: int | None = None) -> "MRTATrainer":
        """Continue the run in ``run_dir`` from its last checkpoint (optionally with a new
        budget ``total_steps``)."""
        path = Path(run_dir) / CHECKPOINT_NAME
        data = load_checkpoint(path)
        cfg = mrta_train_config_from_dict(data["config"])
        if total_steps is not None:
            cfg.total_steps = total_steps
        trainer = cls(cfg, Path(run_dir))
        load_module_state(trainer.actor, data["actor"], "actor", path)
        load_module_state(trainer.critic, data["critic"], "critic", path)
        trainer.optimizer.load_state_dict(data["optimizer"])
        trainer.value_norm.load_state_dict(data["value_norm"])
        trainer.update_index, trainer.steps = data["update_index"], data["steps"]
        trainer.wall_s = data["wall_s"]
        trainer.imitated = data.get("imitated", 0)
        torch.set_rng_state(data["torch_rng"])
        trainer.gen.set_state(data["gen"])
        trainer.env = pickle.loads(data["env"])
        trainer.obs, trainer.recent = data["obs"], data["recent"]
        return trainer


def level_summary(row: dict[str, float]) -> str:
    """'L1/L2/L3 a/b/c' from a progress row (for logs)."""
    return "L1/L2/L3 " + "/".join(f"{row.get(f'completed_L{j + 1}', float('nan')):.1f}"
                                  for j in range(LEVELS))
