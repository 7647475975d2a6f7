"""Training configuration: one dataclass tree, presets in ``config/train/*.yaml``, and
``--set key=value`` overrides with dotted keys (``ppo.lr=1e-4``, ``env.num_drones=4``)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sim.config import EnvConfig, build_dataclass
from sim.errors import ConfigError
from swarm_rl.models import CRITICS, ENCODERS, PRESETS, ModelConfig

PRESET_DIR = Path(__file__).resolve().parents[2] / "config" / "train"
INIT_NORMS = ("adapt", "freeze_seen")


@dataclass
class PPOConfig:
    """PPO hyper-parameters (names as in the MAPPO paper and CleanRL)."""

    num_envs: int = 64
    rollout_steps: int = 100
    """Control steps per environment per update; a divisor of the episode length keeps
    updates aligned with episodes."""
    epochs: int = 4
    minibatch_size: int = 8192
    lr: float = 1e-3
    lr_final_frac: float = 0.1
    """The learning rate falls linearly to lr * lr_final_frac at the end of the run."""
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip: float = 0.2
    entropy_coef: float = 0.0
    value_coef: float = 0.5
    max_grad_norm: float = 0.5
    init_log_std: float = -1.0
    critic_warmup_updates: int = 0
    """Updates at the start of a run in which only the critic learns (the actor's weights and
    exploration std stay as they are): a fine-tune's fresh critic first learns the source
    policy's values, so the first policy gradients are not driven by an untrained critic."""


@dataclass
class CurriculumConfig:
    """Schedules over training progress p in [0, 1]: lists of [p, value], stepwise."""

    num_drones: list[list[float]] = field(default_factory=list)
    """e.g. [[0, 2], [0.3, 4], [0.6, 8]]; empty: env.num_drones throughout."""
    obstacle_density: list[list[float]] = field(default_factory=list)
    collision_anneal_frac: float = 0.0
    """Contact penalties ramp linearly from 0 to full over this share of training."""


@dataclass
class TrainConfig:
    env: EnvConfig = field(default_factory=EnvConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    ppo: PPOConfig = field(default_factory=PPOConfig)
    curriculum: CurriculumConfig = field(default_factory=CurriculumConfig)
    total_steps: int = 20_000_000
    """Agent-steps (one drone, one control step) to train for."""
    seed: int = 0
    checkpoint_every: int = 20
    """Updates between checkpoints."""
    threads: int = 2
    """torch threads (the simulator's numba kernels use their own). On a machine shared with
    other busy processes use 1: waiting threads then cost far more than they gain."""
    init_from: str = ""
    """Checkpoint whose actor (weights and observation normaliser) starts this run, e.g. a
    single-drone policy to fine-tune for a swarm. Empty: random initialisation."""
    init_norm: str = "adapt"
    """How a fine-tune (``init_from``) treats the source actor's observation normaliser.
    ``adapt``: every entry keeps updating (the source's entries from the source's sample
    counts), so new data (e.g. goal errors of 8 m where the source saw 3 m) shifts what the
    source's weights see. ``freeze_seen``: entries the source saw vary keep the source's
    statistics for the whole run; only the entries it never saw (re-opened) follow the new
    data."""

    def validate(self) -> "TrainConfig":
        try:
            self.env.validate()
        except ConfigError as exc:
            raise ConfigError(f"env.{exc}") from exc
        m, p = self.model, self.ppo
        for name, value, allowed in (("model.preset", m.preset, PRESETS),
                                     ("model.encoder", m.encoder, ENCODERS),
                                     ("model.critic", m.critic, CRITICS)):
            if value not in allowed:
                raise ConfigError(f"{name}: unknown value '{value}'; allowed: "
                                  f"{', '.join(allowed)}")
        if m.critic == "pooled" and p.minibatch_size < self.env.num_drones:
            raise ConfigError(f"ppo.minibatch_size: the pooled critic takes whole environments, "
                              f"so at least env.num_drones ({self.env.num_drones}), got "
                              f"{p.minibatch_size}")
        if self.init_norm not in INIT_NORMS:
            raise ConfigError(f"init_norm: unknown value '{self.init_norm}'; allowed: "
                              f"{', '.join(INIT_NORMS)}")
        if not p.critic_warmup_updates >= 0:
            raise ConfigError(f"ppo.critic_warmup_updates: must be >= 0, got "
                              f"{p.critic_warmup_updates}")
        positive = {"ppo.num_envs": p.num_envs, "ppo.rollout_steps": p.rollout_steps,
                    "ppo.epochs": p.epochs, "ppo.minibatch_size": p.minibatch_size,
                    "ppo.lr": p.lr, "total_steps": self.total_steps,
                    "checkpoint_every": self.checkpoint_every, "threads": self.threads}
        for name, value in positive.items():
            if not value > 0:
                raise ConfigError(f"{name}: must be > 0, got {value}")
        for name, value in (("ppo.gamma", p.gamma), ("ppo.gae_lambda", p.gae_lambda),
                            ("ppo.clip", p.clip), ("ppo.lr_final_frac", p.lr_final_frac),
                            ("curriculum.collision_anneal_frac",
                             self.curriculum.collision_anneal_frac)):
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"{name}: must be in [0, 1], got {value}")
        for name in ("num_drones", "obstacle_density"):
            for stage in getattr(self.curriculum, name):
                if len(stage) != 2 or not 0.0 <= stage[0] <= 1.0:
                    raise ConfigError(f"curriculum.{name}: each stage is [progress in [0, 1], "
                                      f"value], got {stage}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def available_presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["ppo.lr=1e-4", "env.num_drones=4"]`` -> nested dict; values parsed as YAML."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. ppo.lr=3e-4")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {key}: cannot parse value {raw!r}: {exc}") from exc
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {key}: '{part}' is set both as a value and a group")
        node[parts[-1]] = value
    return out


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def train_config_from_dict(data: dict[str, Any]) -> TrainConfig:
    return build_dataclass(TrainConfig, data, "").validate()


def load_preset(name_or_path: str, overrides: list[str] | None = None) -> TrainConfig:
    """A preset by name (``config/train/NAME.yaml``) or path, with ``--set`` overrides."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = PRESET_DIR / f"{name_or_path}.yaml"
    if not path.exists():
        raise ConfigError(f"--preset: unknown preset '{name_or_path}'; available: "
                          f"{', '.join(available_presets())} (or a path to a YAML file)")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: malformed YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of options, got {type(data).__name__}")
    data = _merge(data, parse_overrides(overrides or []))
    try:
        return train_config_from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"{path.name}: {exc}") from exc
