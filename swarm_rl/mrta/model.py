"""Task-allocation actor and centralised critic (PyTorch).

Actor (shared by all robots, decentralised): reads one flat MRTA observation (layout v2 or v3,
:mod:`sim.mrta.observation`) and returns one logit per choice, the K_t task slots then
"no task". Task slots and neighbours are embedded by small shared MLPs; the robot's own
embedding attends over its neighbours (their positions and announced intentions), each task
attends over the neighbours too (who is heading there, from where), and a pointer-style head
scores every task from [task, its neighbour context, own + neighbour context, mean task
context]. Illegal choices (the observation's own action mask) get a logit of -1e9, inside the
network, so the exported ONNX model needs nothing else. Observation features are already
scaled to O(1) by the observation function (no running normaliser needed).

Critic (training only, MAPPO): the agent's own observation embedding plus deep-sets pools of
the true global state (every robot's position and target, every task's position, level and
committed robots; :meth:`sim.mrta.env.MRTAVecEnv.critic_state`).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from sim.mrta.env import CRITIC_ROBOT_FEATS, CRITIC_TASK_FEATS
from sim.mrta.observation import NEIGHBOUR_FEATS, OWN_DIM, MRTALayout

MASKED_LOGIT = -1.0e9


@dataclass
class MRTAModelConfig:
    hidden: int = 64
    """Width of every embedding and hidden layer."""
    critic_hidden: int = 128


def _mlp(sizes: list[int], last_act: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if last_act or i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def _init(module: nn.Module, last: nn.Linear, gain_last: float) -> None:
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.orthogonal_(m.weight, 2 ** 0.5)
            nn.init.zeros_(m.bias)
    nn.init.orthogonal_(last.weight, gain_last)


def _masked_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                      mask: torch.Tensor) -> torch.Tensor:
    """q (B, Q, d), k/v (B, K, d), mask (B, K) -> (B, Q, d); zero where no key is valid."""
    scores = q @ k.transpose(1, 2) / q.shape[-1] ** 0.5
    valid = mask[:, None, :] > 0.5
    scores = scores.masked_fill(~valid, MASKED_LOGIT)
    weights = torch.softmax(scores, dim=-1) * valid
    return weights @ v


class TaskActor(nn.Module):
    """Flat observation (B, dim) -> masked logits (B, K_t + 1)."""

    def __init__(self, layout: MRTALayout, cfg: MRTAModelConfig) -> None:
        super().__init__()
        self.layout = layout
        d = cfg.hidden
        self.own = _mlp([OWN_DIM, d])
        self.task = _mlp([layout.task_feats, d, d])
        self.neighbour = _mlp([NEIGHBOUR_FEATS, d, d])
        self.q_own, self.q_task = nn.Linear(d, d), nn.Linear(d, d)
        self.key, self.value = nn.Linear(d, d), nn.Linear(d, d)
        self.score = _mlp([4 * d, d, 1], last_act=False)
        self.explore = _mlp([3 * d, d, 1], last_act=False)
        _init(self, self.score[-1], 0.01)
        nn.init.orthogonal_(self.explore[-1].weight, 0.01)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        sl, kt, kn = self.layout.slices, self.layout.task_slots, self.layout.neighbour_slots
        b = obs.shape[0]
        own = self.own(obs[:, sl["own"]])  # (B, d)
        tasks = self.task(obs[:, sl["tasks"]].reshape(b, kt, self.layout.task_feats))
        t_mask = obs[:, sl["task_mask"]]
        if kn > 0:
            nbs = self.neighbour(obs[:, sl["neighbours"]].reshape(b, kn, NEIGHBOUR_FEATS))
            n_mask = obs[:, sl["neighbour_mask"]]
            keys, values = self.key(nbs), self.value(nbs)
            ctx_own = _masked_attention(self.q_own(own)[:, None], keys, values, n_mask)[:, 0]
            ctx_task = _masked_attention(self.q_task(tasks), keys, values, n_mask)
        else:
            ctx_own = torch.zeros_like(own)
            ctx_task = torch.zeros_like(tasks)
        ctx_all = (tasks * t_mask[..., None]).sum(1) / t_mask.sum(1, keepdim=True).clamp(min=1)
        me = own + ctx_own
        per_task = torch.cat([tasks, ctx_task, me[:, None].expand(-1, kt, -1),
                              ctx_all[:, None].expand(-1, kt, -1)], dim=-1)
        task_logits = self.score(per_task)[..., 0]  # (B, Kt)
        explore_logit = self.explore(torch.cat([own, ctx_own, ctx_all], dim=-1))  # (B, 1)
        logits = torch.cat([task_logits, explore_logit], dim=-1)
        legal = obs[:, sl["action_mask"]] > 0.5
        return logits.masked_fill(~legal, MASKED_LOGIT)


def widen_inputs(actor_state: dict[str, torch.Tensor], critic_state: dict[str, torch.Tensor],
                 old: MRTALayout, new: MRTALayout
                 ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Actor and critic weights of observation layout ``old`` for layout ``new``, a later
    version with the same slot counts (every version's task features start with the
    previous version's): the inputs ``new`` adds get zero weights, so the networks compute
    exactly what they did and training finds out what the new features are worth."""
    if (new.version < old.version or new.task_slots != old.task_slots
            or new.neighbour_slots != old.neighbour_slots):
        raise ValueError(f"observation layout v{old.version} ({old.task_slots} task, "
                         f"{old.neighbour_slots} neighbour slots) cannot be widened to "
                         f"v{new.version} ({new.task_slots}, {new.neighbour_slots})")
    actor, critic = dict(actor_state), dict(critic_state)
    w = actor["task.0.weight"]
    actor["task.0.weight"] = torch.cat(
        [w, w.new_zeros(w.shape[0], new.task_feats - old.task_feats)], dim=1)
    cols = []  # where each input of the old flat observation lies in the new one
    for part, old_slice in old.slices.items():
        start = new.slices[part].start
        if part == "tasks":
            cols += [start + j * new.task_feats + f for j in range(old.task_slots)
                     for f in range(old.task_feats)]
        else:
            cols += range(start, start + old_slice.stop - old_slice.start)
    w = critic["own.0.weight"]
    wide = w.new_zeros(w.shape[0], new.dim)
    wide[:, cols] = w
    critic["own.0.weight"] = wide
    return actor, critic


class TaskCritic(nn.Module):
    """(own obs (B, dim), robots (B, N, 5), tasks (B, M, 7), task mask (B, M)) -> value (B,)
    in normalised units."""

    def __init__(self, layout: MRTALayout, cfg: MRTAModelConfig) -> None:
        super().__init__()
        d = cfg.critic_hidden
        self.own = _mlp([layout.dim, d])
        self.robots = _mlp([CRITIC_ROBOT_FEATS, d // 2, d // 2])
        self.tasks = _mlp([CRITIC_TASK_FEATS, d // 2, d // 2])
        self.head = _mlp([2 * d, d, 1], last_act=False)
        _init(self, self.head[-1], 1.0)

    def forward(self, obs: torch.Tensor, robots: torch.Tensor, tasks: torch.Tensor,
                task_mask: torch.Tensor) -> torch.Tensor:
        r = self.robots(robots).mean(1)
        t = (self.tasks(tasks) * task_mask[..., None]).sum(1) / task_mask.sum(
            1, keepdim=True).clamp(min=1)
        return self.head(torch.cat([self.own(obs), r, t], dim=-1))[:, 0]
