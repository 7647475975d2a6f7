"""Policy and value networks for swarm control (PyTorch).

The actor reads the raw observation of :mod:`sim.observation` (layout v1) and holds its own
observation normaliser, so an exported actor maps raw observations to actions with nothing
else to ship. Neighbours go through a permutation-invariant encoder (deep sets: a shared
per-neighbour MLP, masked mean; or attention: the drone's own features query its neighbours,
masked softmax), obstacles through a small MLP, then a trunk MLP outputs the action mean.

Critics: ``centralised`` (MAPPO) sees the agent's own observation plus every swarm-mate's state
relative to it, with no range or K limit (``SwarmVecEnv.critic_state``); ``pooled`` (MAPPO)
sees the agent's own observation plus the swarm's global state, each drone encoded once per
environment (``SwarmVecEnv.drone_state``: N times less encoder work than ``centralised``);
``local`` (IPPO) sees only the agent's observation.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from sim.observation import OWN_DIM, ObsLayout

PRESETS = ("deploy", "offboard")
ENCODERS = ("deepsets", "attention")
CRITICS = ("centralised", "pooled", "local")


@dataclass
class ModelConfig:
    preset: str = "deploy"
    """``deploy``: small enough for the Crazyflie (<= 5,000 actor parameters); ``offboard``."""
    encoder: str = "deepsets"
    critic: str = "centralised"

    @property
    def sizes(self) -> dict[str, int]:
        if self.preset == "deploy":
            return {"own": 32, "neighbour": 16, "obstacle": 8, "trunk": 32, "critic": 64}
        return {"own": 64, "neighbour": 32, "obstacle": 16, "trunk": 64, "critic": 128}


PRIOR_COUNT = 1e-4
"""Weight of the normaliser's prior (mean 0, variance 1) against the samples it sees."""


@torch.no_grad()
def batch_moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Per-entry variance (population) and mean over all rows of ``x`` (..., dim), in
    float32 (5x faster than float64 over a rollout), and the number of rows."""
    x = x.reshape(-1, x.shape[-1])
    var, mean = torch.var_mean(x, 0, correction=0)
    return var, mean, x.shape[0]


class RunningNorm(nn.Module):
    """Running mean and variance of observations (Chan et al. parallel update), clipped z.

    Every entry has its own sample count, so re-opening some entries for new data
    (:meth:`reset_unseen`) leaves the statistics of the others as settled as they were."""

    def __init__(self, dim: int, clip: float = 10.0) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("var", torch.ones(dim))
        self.register_buffer("count", torch.full((dim,), PRIOR_COUNT, dtype=torch.float64))
        self.clip = clip

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str,
                              *args: Any, **kwargs: Any) -> None:
        """Accept checkpoints written before per-entry counts (one count for all entries)."""
        key = prefix + "count"
        if key in state_dict and state_dict[key].dim() == 0:
            state_dict[key] = state_dict[key].expand(self.count.shape).clone()
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @torch.no_grad()
    def update(self, x: torch.Tensor, frozen: torch.Tensor | None = None) -> None:
        """Fold a batch ``x`` (..., dim) into the statistics (see :meth:`fold`)."""
        self.fold(batch_moments(x), frozen)

    @torch.no_grad()
    def fold(self, moments: tuple[torch.Tensor, torch.Tensor, int],
             frozen: torch.Tensor | None = None) -> None:
        """Fold a batch's :func:`batch_moments` into the statistics; entries where the bool
        mask ``frozen`` is set keep theirs (a fine-tune holding the source's normalisation of
        the inputs it knew)."""
        if frozen is not None:
            keep = self.mean.clone(), self.var.clone(), self.count.clone()
            self.fold(moments)
            for buf, old in zip((self.mean, self.var, self.count), keep):
                buf[frozen] = old[frozen]
            return
        var, mean, n = moments
        var, mean = var.double(), mean.double()
        total = self.count + n
        delta = mean - self.mean.double()
        new_mean = self.mean.double() + delta * n / total
        m2 = self.var.double() * self.count + var * n + delta ** 2 * self.count * n / total
        self.mean.copy_(new_mean.float())
        self.var.copy_((m2 / total).float())
        self.count.copy_(total)

    @torch.no_grad()
    def unseen(self) -> torch.Tensor:
        """Entries whose samples never varied: their summed squared deviation is still just
        what the prior (and its distance from the samples' constant value) put there."""
        prior = PRIOR_COUNT * (1.0 + self.mean.double() ** 2)
        return self.var.double() * self.count < 1.5 * prior

    def reset_unseen(self, count: float = 1e4) -> int:
        """Before fine-tuning on new data: entries that never varied (e.g. neighbour features
        of a single-drone policy, the obstacle patch of a policy trained without columns)
        would map any new value to the clip limit; give them mean 0 and variance 1, and cap
        their sample count so their statistics follow the new data. The other entries keep
        theirs: capping their count too would let the first rollouts (all episodes in
        lock-step, so one phase of flight each) rewrite them and change what the source
        policy does. Returns how many were reset."""
        unseen = self.unseen()
        self.mean[unseen] = 0.0
        self.var[unseen] = 1.0
        self.count[unseen] = self.count[unseen].clamp(max=count)
        return int(unseen.sum())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp((x - self.mean) / torch.sqrt(self.var + 1e-8), -self.clip, self.clip)


def _mlp(sizes: list[int], last_gain: float = np.sqrt(2),
         activation: type[nn.Module] = nn.Tanh) -> nn.Sequential:
    """Linear layers with ``activation`` between them (not after the last), orthogonal init."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        linear = nn.Linear(a, b)
        last = i == len(sizes) - 2
        nn.init.orthogonal_(linear.weight, last_gain if last else np.sqrt(2))
        nn.init.zeros_(linear.bias)
        layers.append(linear)
        if not last:
            layers.append(activation())
    return nn.Sequential(*layers)


class NeighbourEncoder(nn.Module):
    """Permutation-invariant summary (B, H) of K neighbours (B, K, F) with a mask (B, K)."""

    def __init__(self, feat_dim: int, hidden: int, query_dim: int, kind: str,
                 activation: type[nn.Module] = nn.Tanh) -> None:
        super().__init__()
        self.kind = kind
        self.phi = nn.Sequential(_mlp([feat_dim, hidden, hidden], activation=activation),
                                 activation())
        if kind == "attention":
            self.query = nn.Linear(query_dim, hidden)

    def forward(self, feats: torch.Tensor, mask: torch.Tensor,
                query: torch.Tensor) -> torch.Tensor:
        h = self.phi(feats)
        if self.kind == "attention":
            score = (h * self.query(query).unsqueeze(1)).sum(-1) / np.sqrt(h.shape[-1])
            score = score.masked_fill(mask < 0.5, -1e9)
            weight = torch.softmax(score, dim=1) * mask
        else:
            weight = mask / mask.sum(1, keepdim=True).clamp(min=1.0)
        return (h * weight.unsqueeze(-1)).sum(1)


class Actor(nn.Module):
    """Raw observation (B, obs_dim) -> action mean (B, 4); ``action_bias`` is the hover action
    so an untrained actor already holds the drone up."""

    def __init__(self, layout: ObsLayout, cfg: ModelConfig, action_bias: np.ndarray) -> None:
        super().__init__()
        s = cfg.sizes
        self.layout = layout
        self.k = layout.k
        self.norm = RunningNorm(layout.dim)
        self.own = nn.Sequential(_mlp([OWN_DIM, s["own"], s["own"]]), nn.Tanh())
        self.neighbours = NeighbourEncoder(6, s["neighbour"], s["own"], cfg.encoder)
        self.obstacles = nn.Sequential(_mlp([9, s["obstacle"]]), nn.Tanh())
        self.trunk = _mlp([s["own"] + s["neighbour"] + s["obstacle"], s["trunk"], 4],
                          last_gain=0.01)
        self.register_buffer("action_bias", torch.as_tensor(action_bias, dtype=torch.float32))
        self.log_std = nn.Parameter(torch.full((4,), -1.0))

    @torch.no_grad()
    def open_unseen_inputs(self) -> list[str]:
        """Prepare a fine-tune on inputs this actor never saw vary (a single-drone policy
        going to a swarm, a policy trained without columns going among them): re-normalise
        them (:meth:`RunningNorm.reset_unseen`) and zero the trunk's weights from the
        neighbour or obstacle encoder whose inputs were all unseen, so the fine-tune starts
        from exactly the source policy's behaviour and learns to use the new inputs. Returns
        the encoders opened."""
        sl = self.layout.slices
        s_own = self.own[0][-1].out_features
        s_nbr = self.neighbours.phi[0][-1].out_features
        columns = {"neighbours": slice(s_own, s_own + s_nbr),
                   "obstacles": slice(s_own + s_nbr, None)}
        unseen = self.norm.unseen()
        opened = [name for name in columns if bool(unseen[sl[name]].all())]
        first = self.trunk[0]
        if "obstacles" in opened:  # its constant input (z = 0) fed a constant: keep it as bias
            constant = self.obstacles(torch.zeros(1, len(range(*sl["obstacles"].indices(
                self.layout.dim)))))[0]
            first.bias += first.weight[:, columns["obstacles"]] @ constant
        # (the neighbour embedding of a swarm-less source was always 0: all masked)
        for name in opened:
            first.weight[:, columns[name]] = 0.0
        self.norm.reset_unseen()
        return opened

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        sl = self.layout.slices
        z = self.norm(obs)
        own = self.own(z[:, :OWN_DIM])
        mask = obs[:, sl["neighbour_mask"]]
        nbr = z[:, sl["neighbours"]].reshape(-1, self.k, 6)
        parts = [own, self.neighbours(nbr, mask, own), self.obstacles(z[:, sl["obstacles"]])]
        return self.trunk(torch.cat(parts, dim=-1)) + self.action_bias


class Critic(nn.Module):
    """Value of an agent from its own observation (B, obs_dim), plus (``cfg.critic``):

    - ``centralised``: every swarm-mate's state relative to it, (B, N, CRITIC_FEATS) with a
      mask (B, N), in a deep-sets pool;
    - ``pooled``: the global state (B / N, N, CRITIC_FEATS), one row per drone of each
      environment, the B observations grouped by environment (row ``g * N + i`` is drone i
      of group g); each agent gets the mean embedding of its group's drones and its own
      drone's embedding;
    - ``local``: nothing more.

    ReLU throughout: the critic is never deployed, and tanh was half the cost of a PPO update
    on the CPU."""

    def __init__(self, layout: ObsLayout, cfg: ModelConfig, critic_feats: int) -> None:
        super().__init__()
        s = cfg.sizes
        self.centralised = cfg.critic != "local"
        self.pooled = cfg.critic == "pooled"
        self.norm = RunningNorm(layout.dim)
        self.own = nn.Sequential(_mlp([layout.dim, s["critic"], s["critic"]],
                                      activation=nn.ReLU), nn.ReLU())
        width = s["critic"]
        if self.centralised:
            self.swarm_norm = RunningNorm(critic_feats)
            self.swarm = NeighbourEncoder(critic_feats, s["critic"] // 2, s["critic"], "deepsets",
                                          activation=nn.ReLU)
            width += s["critic"] if self.pooled else s["critic"] // 2
        self.head = _mlp([width, s["critic"], 1], last_gain=1.0, activation=nn.ReLU)

    def forward(self, obs: torch.Tensor, swarm: torch.Tensor | None = None,
                swarm_mask: torch.Tensor | None = None) -> torch.Tensor:
        own = self.own(self.norm(obs))
        parts = [own]
        if self.pooled:
            drones = self.swarm.phi(self.swarm_norm(swarm))  # (G, N, H)
            pool = drones.mean(1, keepdim=True).expand_as(drones)
            parts.append(torch.cat([pool, drones], dim=-1).reshape(obs.shape[0], -1))
        elif self.centralised:
            parts.append(self.swarm(self.swarm_norm(swarm), swarm_mask, own))
        return self.head(torch.cat(parts, dim=-1)).squeeze(-1)


def count_parameters(module: nn.Module) -> int:
    """Trainable parameters (the deployable size; normaliser buffers are not counted)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
