"""Training configuration for the task-allocation policy: one dataclass tree from an MRTA
preset (``config/mrta/NAME.yaml``: ``env`` is :class:`sim.mrta.config.MRTAConfig`, ``train``
is :class:`MRTATrainConfig` without ``env``), with ``--set`` overrides (``ppo.lr=3e-4``,
``env.intention_sharing=false``) parsed as in :mod:`swarm_rl.train.config`."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sim.config import build_dataclass
from sim.errors import ConfigError
from sim.mrta.config import LEVELS, MRTAConfig, load_mrta_env, read_preset
from swarm_rl.mrta.imitate import ImitationConfig
from swarm_rl.mrta.model import MRTAModelConfig
from swarm_rl.train.config import PPOConfig, _merge, parse_overrides


SHARED_SWITCHES = ("intention_sharing", "revision", "task_slots", "neighbour_slots",
                   "obs_layout", "negotiation_rounds", "market_lambda")
"""``env`` fields that a run applies to its ``mix`` presets too (when its ``env`` sets them):
``market_lambda`` so that one run clones one market (``imitate``)."""


@dataclass
class MRTAPPOConfig(PPOConfig):
    """The swarm trainer's PPO fields (:class:`~swarm_rl.train.config.PPOConfig`) with defaults
    for decision-level episodes (MAPPO defaults, REFERENCE.md section 8); ``init_log_std`` has
    no meaning for a categorical policy and is ignored."""

    num_envs: int = 32
    rollout_steps: int = 100
    epochs: int = 4
    minibatch_size: int = 4096
    lr: float = 5e-4
    lr_final_frac: float = 0.2
    entropy_coef: float = 0.01


@dataclass
class MRTATrainConfig:
    """One training run of the task policy."""

    env: MRTAConfig = field(default_factory=MRTAConfig)
    model: MRTAModelConfig = field(default_factory=MRTAModelConfig)
    ppo: MRTAPPOConfig = field(default_factory=MRTAPPOConfig)
    imitate: ImitationConfig = field(default_factory=ImitationConfig)
    """Warm start by cloning the market before PPO (:mod:`swarm_rl.mrta.imitate`)."""
    total_steps: int = 2_000_000
    """Agent decisions (one robot, one decision step) to train for."""
    seed: int = 0
    checkpoint_every: int = 10
    """Updates between checkpoints."""
    threads: int = 1
    """torch threads; 1 on a shared machine."""
    redundancy_shaping: float = 0.0
    """Per-robot potential-based reward shaping (Ng et al. 1999; does not change the optimal
    policies): potential -c while a robot targets a task that L others reach before it
    (:meth:`sim.mrta.env.MRTAVecEnv.redundant`), so leaving such a task pays c at once. 0:
    off (the shared team reward alone)."""
    init: str = ""
    """Path of an earlier MRTA run's ``checkpoint.pt`` or ``init.pt`` (shipped ones:
    ``policies/NAME.init.pt``) whose actor, critic and value normaliser this run starts from
    (fine-tuning); the optimizer, step count and learning-rate schedule start afresh. The
    model and observation size must match. Empty: fresh weights."""
    preset: str = ""
    """Name of the preset this run came from (recorded in the exported policy)."""
    mix: list[str] = field(default_factory=list)
    """Other MRTA presets whose ``env`` sections are trained on alongside ``env`` (each
    gets an equal share of ``ppo.num_envs``), e.g. the arrival variants, so one policy serves
    them all. They must give the same observation layout, robot count, task capacity and
    episode length; the switches (``intention_sharing``, ``revision``) of ``env`` apply to
    all."""
    mix_envs: list[MRTAConfig] = field(default_factory=list)
    """Filled from ``mix`` when the preset is loaded (recorded so a resume needs no files)."""

    def validate(self) -> "MRTATrainConfig":
        try:
            self.env.validate()
        except ConfigError as exc:
            raise ConfigError(f"env.{exc}") from exc
        p = self.ppo
        positive = {"ppo.num_envs": p.num_envs, "ppo.rollout_steps": p.rollout_steps,
                    "ppo.epochs": p.epochs, "ppo.minibatch_size": p.minibatch_size,
                    "ppo.lr": p.lr, "total_steps": self.total_steps,
                    "checkpoint_every": self.checkpoint_every, "threads": self.threads,
                    "model.hidden": self.model.hidden, "imitate.epochs": self.imitate.epochs,
                    "imitate.keep_rollouts": self.imitate.keep_rollouts,
                    "model.critic_hidden": self.model.critic_hidden}
        for name, value in positive.items():
            if not value > 0:
                raise ConfigError(f"{name}: must be > 0, got {value}")
        if self.imitate.updates < 0:
            raise ConfigError(f"imitate.updates: must be >= 0, got {self.imitate.updates}")
        if not self.imitate.ppo_coef >= 0:
            raise ConfigError(f"imitate.ppo_coef: must be >= 0, got {self.imitate.ppo_coef}")
        levels = self.imitate.ppo_levels
        if not levels or not set(levels) <= set(range(LEVELS + 1)):
            raise ConfigError(f"imitate.ppo_levels: must be a non-empty list of task levels "
                              f"0..{LEVELS} (0: no task), got {levels}")
        if not self.redundancy_shaping >= 0:
            raise ConfigError(f"redundancy_shaping: must be >= 0, got "
                              f"{self.redundancy_shaping}")
        for name, value in (("ppo.gamma", p.gamma), ("ppo.gae_lambda", p.gae_lambda),
                            ("ppo.clip", p.clip), ("ppo.lr_final_frac", p.lr_final_frac)):
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"{name}: must be in [0, 1], got {value}")
        for name, other in zip(self.mix or ["mix_envs"] * len(self.mix_envs), self.mix_envs):
            for key in ("task_slots", "neighbour_slots", "num_robots", "max_tasks",
                        "decision_steps", "view_range_m", "comm_range_m",
                        "intention_discount", "intention_horizon", "obs_layout",
                        "negotiation_rounds"):
                if getattr(other, key) != getattr(self.env, key):
                    raise ConfigError(f"mix: {name}: env.{key} is {getattr(other, key)}, but "
                                      f"the run's env.{key} is {getattr(self.env, key)}")
        if self.mix_envs and self.ppo.num_envs % (1 + len(self.mix_envs)):
            raise ConfigError(f"ppo.num_envs: must split evenly over {1 + len(self.mix_envs)} "
                              f"environments (env + mix), got {self.ppo.num_envs}")
        if self.ppo.rollout_steps % self.env.decision_steps:
            raise ConfigError(f"ppo.rollout_steps: must be a multiple of env.decision_steps "
                              f"({self.env.decision_steps}) so updates hold whole episodes, "
                              f"got {self.ppo.rollout_steps}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def mrta_train_config_from_dict(data: dict[str, Any]) -> MRTATrainConfig:
    return build_dataclass(MRTATrainConfig, data, "").validate()


def load_mrta_preset(name_or_path: str | Path, overrides: list[str] | None = None
                     ) -> MRTATrainConfig:
    """An MRTA preset's ``train`` section plus its ``env``, with ``--set`` overrides."""
    path, data = read_preset(name_or_path)
    train = dict(data.get("train") or {})
    if "env" in train:
        raise ConfigError(f"{path.name}: train.env: put the environment in the top-level "
                          "'env' section")
    merged = _merge({**train, "env": data.get("env") or {}, "preset": path.stem},
                    parse_overrides(overrides or []))
    if "mix_envs" in merged:
        raise ConfigError(f"{path.name}: train.mix_envs: set 'mix' (preset names) instead")
    mix = merged.get("mix") or []
    if not isinstance(mix, list) or not all(isinstance(m, str) for m in mix):
        raise ConfigError(f"{path.name}: train.mix: expected a list of preset names, got "
                          f"{mix!r}")
    switches = {k: v for k, v in merged["env"].items() if k in SHARED_SWITCHES}
    merged["mix_envs"] = [dataclasses.asdict(load_mrta_env(m, switches)) for m in mix]
    try:
        return mrta_train_config_from_dict(merged)
    except ConfigError as exc:
        raise ConfigError(f"{path.name}: {exc}") from exc
