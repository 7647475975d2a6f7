"""MAPPO / IPPO with PPO updates, in the spirit of CleanRL's single-file trainer.

One update: collect ``rollout_steps`` control steps from ``num_envs`` batched swarm episodes
(every drone is an agent and a sample; the actor is shared), compute GAE advantages per agent,
then ``epochs`` passes of clipped-PPO minibatch updates on actor and critic together.
Observation normalisers live inside the networks (and so inside the exported actor); they are
updated after each PPO update so that old and new log-probabilities use the same statistics.
"""
from __future__ import annotations

import dataclasses
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

from sim.swarm_env import CRITIC_FEATS, SwarmVecEnv
from swarm_rl.files import json_safe
from swarm_rl.models import Actor, Critic, RunningNorm, batch_moments
from swarm_rl.train.checkpoint import load_checkpoint, load_module_state, save_checkpoint
from swarm_rl.train.config import PRESET_DIR, TrainConfig, train_config_from_dict

log = logging.getLogger(__name__)
CHECKPOINT_NAME = "checkpoint.pt"


def stage_value(stages: list[list[float]], progress: float, default: float) -> float:
    """Value of a stepwise schedule ``[[p0, v0], [p1, v1], ...]`` at ``progress``."""
    value = default
    for start, v in sorted(stages):
        if progress >= start:
            value = v
    return value


def gae(rewards: torch.Tensor, values: torch.Tensor, dones: torch.Tensor,
        next_value: torch.Tensor, gamma: float, lam: float) -> torch.Tensor:
    """Generalised advantage estimates (T, B); ``dones[t]`` ends the episode after step t
    (truncation bootstraps are already folded into ``rewards``)."""
    steps = rewards.shape[0]
    adv = torch.zeros_like(rewards)
    last = torch.zeros_like(next_value)
    for t in reversed(range(steps)):
        nxt = next_value if t == steps - 1 else values[t + 1]
        live = 1.0 - dones[t]
        delta = rewards[t] + gamma * nxt * live - values[t]
        last = delta + gamma * lam * live * last
        adv[t] = last
    return adv


def _cat(parts: list[torch.Tensor], last: torch.Tensor | None) -> torch.Tensor | None:
    """``parts`` and then ``last`` joined along the batch axis; None without ``last``."""
    return None if last is None else torch.cat(parts + [last])


@dataclass
class Rollout:
    obs: list[torch.Tensor] = field(default_factory=list)
    swarm: list[torch.Tensor] = field(default_factory=list)
    swarm_mask: list[torch.Tensor] = field(default_factory=list)
    actions: list[torch.Tensor] = field(default_factory=list)
    logp: list[torch.Tensor] = field(default_factory=list)
    values: list[torch.Tensor] = field(default_factory=list)
    rewards: list[torch.Tensor] = field(default_factory=list)
    dones: list[torch.Tensor] = field(default_factory=list)


class Trainer:
    """Trains a shared actor and a critic on one scenario; writes to ``out_dir``:
    ``checkpoint.pt`` (latest, atomic), ``progress.jsonl`` (one line per update), ``tb/``
    (TensorBoard) and ``config.yaml``."""

    def __init__(self, cfg: TrainConfig, out_dir: Path) -> None:
        self.cfg = cfg.validate()
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        self.rng = np.random.default_rng(cfg.seed)
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.env = self._make_env(0.0)
        self.actor = Actor(self.env.layout, cfg.model, self.env.hover_action()[0, 0])
        self.norm_frozen: torch.Tensor | None = None
        """Actor normaliser entries held at the source's statistics (``init_norm``)."""
        with torch.no_grad():
            self.actor.log_std.fill_(cfg.ppo.init_log_std)
        if cfg.init_from:
            path = Path(cfg.init_from)
            if not path.is_absolute() and not path.exists():
                path = PRESET_DIR.parents[1] / path  # presets name files in the repository
            load_module_state(self.actor, load_checkpoint(path)["actor"], "actor", path)
            if cfg.init_norm == "freeze_seen":
                self.norm_frozen = ~self.actor.norm.unseen()
            opened = self.actor.open_unseen_inputs()
            log.info("actor initialised from %s; inputs it never saw: %s", path,
                     ", ".join(opened) or "none")
        self.critic = Critic(self.env.layout, cfg.model, CRITIC_FEATS)
        self.value_norm = RunningNorm(1, clip=1e9)
        params = list(self.actor.parameters()) + list(self.critic.parameters())
        # fused: one kernel per parameter, 3-5x faster a step than the per-tensor loop
        self.optimizer = torch.optim.Adam(params, lr=cfg.ppo.lr, eps=1e-5, fused=True)
        self.update_index = 0
        self.steps = 0
        self.wall_s = 0.0
        self.obs = self.env.reset(seed=int(self.rng.integers(2**31)))
        self.swarm = self._critic_state()
        self.episode_return = np.zeros((self.env.num_envs, self.env.num_drones))
        self.recent: list[dict[str, float]] = []

    # --- environment and curriculum -------------------------------------------------------
    def _make_env(self, progress: float) -> SwarmVecEnv:
        cur, env_cfg = self.cfg.curriculum, self.cfg.env
        n = int(stage_value(cur.num_drones, progress, env_cfg.num_drones))
        density = stage_value(cur.obstacle_density, progress, env_cfg.obstacle_density)
        stage_cfg = dataclasses.replace(env_cfg, num_drones=n, obstacle_density=density)
        return SwarmVecEnv(stage_cfg, self.cfg.ppo.num_envs, "batched",
                           seed=int(self.rng.integers(2**31)))

    def _apply_curriculum(self) -> None:
        progress = self.steps / self.cfg.total_steps
        cur = self.cfg.curriculum
        n = int(stage_value(cur.num_drones, progress, self.cfg.env.num_drones))
        density = stage_value(cur.obstacle_density, progress, self.cfg.env.obstacle_density)
        if n != self.env.num_drones or density != self.env.cfg.obstacle_density:
            log.info("curriculum: %d drones, obstacle density %.2f", n, density)
            self.env = self._make_env(progress)
            self.obs = self.env.reset()
            self.swarm = self._critic_state()
            self.episode_return = np.zeros((self.env.num_envs, self.env.num_drones))
        if cur.collision_anneal_frac > 0:
            self.env.collision_scale = min(1.0, progress / cur.collision_anneal_frac)
        frac = 1.0 - (1.0 - self.cfg.ppo.lr_final_frac) * min(1.0, progress)
        for group in self.optimizer.param_groups:
            group["lr"] = self.cfg.ppo.lr * frac

    # --- networks --------------------------------------------------------------------------
    def _value(self, obs: torch.Tensor, swarm: torch.Tensor | None,
               mask: torch.Tensor | None) -> torch.Tensor:
        """Denormalised value estimates."""
        z = self.critic(obs, swarm, mask)
        return z * torch.sqrt(self.value_norm.var + 1e-8) + self.value_norm.mean

    def _critic_state(self, info: dict | None = None):
        """What the critic reads besides the observations, now or (``info``) at the end of
        the episode that just finished: ``SwarmVecEnv.drone_state`` for the pooled critic,
        ``SwarmVecEnv.critic_state`` otherwise."""
        if self.critic.pooled:
            return self.env.drone_state() if info is None else info["final_drone_state"]
        return self.env.critic_state() if info is None else info["final_critic_state"]

    def _critic_inputs(self, swarm: np.ndarray | tuple[np.ndarray, np.ndarray] | None):
        """Tensors for :class:`Critic`: (E N, N, F) features and (E N, N) mask, or for the
        pooled critic (E, N, F) drone states and no mask."""
        if swarm is None or not self.critic.centralised:
            return None, None
        if self.critic.pooled:
            return torch.from_numpy(np.ascontiguousarray(swarm)), None
        feats, mask = swarm
        b = feats.shape[0] * feats.shape[1]
        return (torch.from_numpy(np.ascontiguousarray(feats)).reshape(b, feats.shape[2], -1),
                torch.from_numpy(np.ascontiguousarray(mask)).reshape(b, -1))

    def _dist(self, obs: torch.Tensor) -> torch.distributions.Normal:
        return torch.distributions.Normal(self.actor(obs), self.actor.log_std.exp())

    # --- one update --------------------------------------------------------------------------
    @torch.no_grad()
    def collect(self) -> Rollout:
        env, ppo = self.env, self.cfg.ppo
        e, n = env.num_envs, env.num_drones
        ro = Rollout()
        for _ in range(ppo.rollout_steps):
            obs = torch.from_numpy(self.obs).reshape(e * n, -1)
            swarm, mask = self._critic_inputs(self.swarm)
            mean = self.actor(obs)
            std = self.actor.log_std.exp()
            action = mean + std * torch.randn(mean.shape, generator=self.gen)
            logp = torch.distributions.Normal(mean, std).log_prob(action).sum(-1)
            result = env.step(action.reshape(e, n, 4).numpy())
            reward = torch.from_numpy(result.reward.reshape(-1)).float()
            done = torch.from_numpy(result.truncated.reshape(-1)).float()
            self.episode_return += result.reward
            if result.truncated.any():
                f_obs = torch.from_numpy(result.info["final_obs"]).reshape(e * n, -1)
                f_swarm, f_mask = self._critic_inputs(self._critic_state(result.info))
                reward = reward + ppo.gamma * self._value(f_obs, f_swarm, f_mask) * done
                metrics = {k: float(np.mean(v)) for k, v in result.info["episode"].items()}
                metrics["return"] = float(self.episode_return.mean())
                self.recent = (self.recent + [metrics])[-10:]
                self.episode_return[:] = 0.0
            for name, value_ in (("obs", obs), ("actions", action), ("logp", logp),
                                 ("rewards", reward), ("dones", done)):
                getattr(ro, name).append(value_)
            if swarm is not None:
                ro.swarm.append(swarm)
            if mask is not None:
                ro.swarm_mask.append(mask)
            self.obs, self.swarm = result.obs, self._critic_state()
        obs = torch.from_numpy(self.obs).reshape(e * n, -1)
        swarm, mask = self._critic_inputs(self.swarm)
        # the critic does not steer the rollout: every step's value in one batched pass
        values = self._value(torch.cat(ro.obs + [obs]), _cat(ro.swarm, swarm),
                             _cat(ro.swarm_mask, mask)).reshape(ppo.rollout_steps + 1, e * n)
        ro.values, ro.next_value = list(values[:-1]), values[-1]
        return ro

    def update(self, ro: Rollout) -> dict[str, float]:
        ppo = self.cfg.ppo
        values = torch.stack(ro.values)
        adv = gae(torch.stack(ro.rewards), values, torch.stack(ro.dones), ro.next_value,
                  ppo.gamma, ppo.gae_lambda)
        returns = (adv + values).reshape(-1)
        adv = adv.reshape(-1)
        obs = torch.cat(ro.obs)
        actions, old_logp = torch.cat(ro.actions), torch.cat(ro.logp)
        swarm = torch.cat(ro.swarm) if ro.swarm else None
        swarm_mask = torch.cat(ro.swarm_mask) if ro.swarm_mask else None
        self.value_norm.update(returns[:, None])
        v_mean, v_std = self.value_norm.mean, torch.sqrt(self.value_norm.var + 1e-8)
        target = (returns - v_mean) / v_std
        # the pooled critic needs whole environments: minibatches of (step, env) groups
        group = self.env.num_drones if self.critic.pooled else 1
        total = obs.shape[0] // group
        offsets = torch.arange(group)
        warmup = self.update_index < ppo.critic_warmup_updates
        stats: dict[str, list[float]] = {k: [] for k in ("pg_loss", "v_loss", "entropy",
                                                          "approx_kl", "clipfrac")}
        for _ in range(ppo.epochs):
            perm = torch.randperm(total, generator=self.gen)
            for start in range(0, total, ppo.minibatch_size // group):
                groups = perm[start:start + ppo.minibatch_size // group]
                idx = (groups[:, None] * group + offsets).reshape(-1) if group > 1 else groups
                mb_obs = obs.index_select(0, idx)  # a copy per row: far faster than obs[idx]
                dist = self._dist(mb_obs)
                logp = dist.log_prob(actions.index_select(0, idx)).sum(-1)
                log_ratio = logp - old_logp.index_select(0, idx)
                ratio = log_ratio.exp()
                mb_adv = adv.index_select(0, idx)
                mb_adv = (mb_adv - mb_adv.mean()) / (mb_adv.std() + 1e-8)
                pg_loss = torch.max(-mb_adv * ratio,
                                    -mb_adv * ratio.clamp(1 - ppo.clip, 1 + ppo.clip)).mean()
                mb_swarm = None if swarm is None else swarm.index_select(0, groups)
                pred = self.critic(mb_obs, mb_swarm,
                                   None if swarm_mask is None else swarm_mask.index_select(0, idx))
                v_loss = 0.5 * ((pred - target.index_select(0, idx)) ** 2).mean()
                entropy = dist.entropy().sum(-1).mean()
                loss = pg_loss - ppo.entropy_coef * entropy + ppo.value_coef * v_loss
                if warmup:  # the actor's parameters get no gradient, so Adam leaves them
                    loss = ppo.value_coef * v_loss
                self.optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(list(self.actor.parameters())
                                         + list(self.critic.parameters()), ppo.max_grad_norm)
                self.optimizer.step()
                with torch.no_grad():
                    stats["pg_loss"].append(pg_loss.item())
                    stats["v_loss"].append(v_loss.item())
                    stats["entropy"].append(entropy.item())
                    stats["approx_kl"].append(((ratio - 1) - log_ratio).mean().item())
                    stats["clipfrac"].append(((ratio - 1).abs() > ppo.clip).float().mean().item())
        moments = batch_moments(obs)  # both networks see the same observations
        self.actor.norm.fold(moments, self.norm_frozen)
        self.critic.norm.fold(moments)
        if swarm is not None:
            self.critic.swarm_norm.update(swarm)
        var_y = returns.var()
        explained = 1.0 - (returns - values.reshape(-1)).var() / var_y if var_y > 0 else 0.0
        out = {k: float(np.mean(v)) for k, v in stats.items()}
        out["explained_var"] = float(explained)
        out["lr"] = self.optimizer.param_groups[0]["lr"]
        out["std"] = float(self.actor.log_std.detach().exp().mean())
        return out

    # --- the loop ----------------------------------------------------------------------------
    def train(self, progress_bar: bool = True) -> dict[str, float]:
        """Run until ``total_steps``; on Ctrl-C, keep the last checkpoint and re-raise."""
        from torch.utils.tensorboard import SummaryWriter

        cfg = self.cfg
        writer = SummaryWriter(str(self.out_dir / "tb"), purge_step=self.update_index)
        bar = tqdm(total=cfg.total_steps, initial=self.steps, unit="step", unit_scale=True,
                   dynamic_ncols=True, disable=not progress_bar or None)
        last: dict[str, float] = {}
        try:
            while self.steps < cfg.total_steps:
                t0 = time.perf_counter()
                self._apply_curriculum()
                rollout = self.collect()
                t1 = time.perf_counter()
                stats = self.update(rollout)
                t2 = time.perf_counter()
                samples = cfg.ppo.rollout_steps * self.env.num_envs * self.env.num_drones
                self.steps += samples
                self.update_index += 1
                self.wall_s += t2 - t0
                last = self._log(writer, stats, samples, t1 - t0, t2 - t1)
                bar.update(samples)
                bar.set_postfix(ret=f"{last.get('return', float('nan')):.2f}",
                                succ=f"{last.get('success_rate', float('nan')):.2f}")
                if self.update_index % cfg.checkpoint_every == 0:
                    self.save()
        finally:
            bar.close()
            writer.close()
        self.save()
        return last

    def _log(self, writer, stats: dict[str, float], samples: int, collect_s: float,
             update_s: float) -> dict[str, float]:
        row = {"update": self.update_index, "steps": self.steps, "wall_s": self.wall_s,
               "steps_per_s": samples / (collect_s + update_s),
               "collect_s": collect_s, "update_s": update_s,
               "num_drones": self.env.num_drones,
               "collision_scale": self.env.collision_scale, **stats}
        if self.recent:
            for key in self.recent[-1]:
                row[key] = float(np.mean([m[key] for m in self.recent]))
        for key, value in row.items():
            writer.add_scalar(f"train/{key}", value, self.steps)
        with open(self.out_dir / "progress.jsonl", "a") as f:
            f.write(json.dumps(json_safe(row), allow_nan=False) + "\n")
        return row

    # --- checkpoints ---------------------------------------------------------------------------
    def save(self) -> Path:
        path = self.out_dir / CHECKPOINT_NAME
        save_checkpoint(path, {
            "config": self.cfg.to_dict(),
            "actor": self.actor.state_dict(), "critic": self.critic.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "value_norm": self.value_norm.state_dict(),
            "update_index": self.update_index, "steps": self.steps, "wall_s": self.wall_s,
            "torch_rng": torch.get_rng_state(), "gen": self.gen.get_state(),
            "np_rng": self.rng.bit_generator.state,
            "env": pickle.dumps(self.env), "obs": self.obs, "swarm": self.swarm,
            "episode_return": self.episode_return, "recent": self.recent,
            "norm_frozen": self.norm_frozen,
        })
        return path

    def save_actor(self, path: Path) -> Path:
        """Write the actor alone (weights, normaliser, config): small enough to ship as the
        ``init_from`` of a fine-tuning preset."""
        save_checkpoint(path, {"config": self.cfg.to_dict(), "actor": self.actor.state_dict(),
                               "steps": self.steps})
        return path

    @classmethod
    def resume(cls, run_dir: Path, cfg: TrainConfig | None = None) -> "Trainer":
        """Continue the run in ``run_dir`` exactly where its last checkpoint left it.

        ``cfg`` may change the budget (``total_steps``) but must build the same model."""
        path = Path(run_dir) / CHECKPOINT_NAME
        data = load_checkpoint(path)
        saved = train_config_from_dict(data["config"])
        saved.init_from = ""  # the checkpoint holds the weights; the init file may be gone
        if cfg is not None:
            saved.total_steps = cfg.total_steps
        trainer = cls(saved, Path(run_dir))
        load_module_state(trainer.actor, data["actor"], "actor", path)
        load_module_state(trainer.critic, data["critic"], "critic", path)
        trainer.optimizer.load_state_dict(data["optimizer"])
        trainer.value_norm.load_state_dict(data["value_norm"])
        trainer.update_index, trainer.steps = data["update_index"], data["steps"]
        trainer.wall_s = data["wall_s"]
        torch.set_rng_state(data["torch_rng"])
        trainer.gen.set_state(data["gen"])
        trainer.rng.bit_generator.state = data["np_rng"]
        trainer.env = pickle.loads(data["env"])
        trainer.obs, trainer.swarm = data["obs"], data["swarm"]
        trainer.episode_return, trainer.recent = data["episode_return"], data["recent"]
        trainer.norm_frozen = data.get("norm_frozen")
        return trainer
