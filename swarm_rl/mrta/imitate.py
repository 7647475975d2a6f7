"""Imitation warm start for the task policy: clone the market's choices, then train with PPO.

PPO from scratch (and fine-tuning from the shipped policies) settles on a policy that serves
level-1 tasks and explores where the market forms level-3 coalitions (``policies/
mrta_paper_respawn.md``): a coalition that must hold its choice while its members fly in
breaks up under the exploring stochastic policy, so its value is hard to discover. Here the
actor first learns to choose what the market (:func:`sim.mrta.allocators.market_targets`)
would assign, from its own decentralised observation, and the critic learns the market's
returns; PPO then starts from there (``imitate.updates`` > 0 in a preset, run once before the
first PPO update of a fresh run).

Demonstrations: ``ppo.rollout_steps`` decision steps of the training environments per
update. The first ``teacher_rollouts`` are flown by the market: every robot to its market
target, round 1 observed with the previous step's intentions (as in PPO collection), rounds
2..R with every robot's market target announced as its tentative choice (teacher forcing).
The later ones are flown by the policy being cloned (argmax, its own rounds), and the market
labels the states the policy visits (DAgger, Ross et al. 2011: a clone trained on the
teacher's states alone drifts into states the teacher never shows it). Every negotiation
round is a sample, labelled with the observation slot of the robot's market target ("no
task" for none). A
target outside the robot's observation slots (a task it does not know) gives no sample; with
layout 4 and revision the market only assigns tasks that the robot or a neighbour in radio
range sees, so this is rare (counted as ``unknown_share``). The critic regresses the
discounted team return of the demonstrations (episodes end inside a rollout).

The market can also stay on as a teacher during PPO (``imitate.ppo_coef`` > 0): every state
of PPO's own rollouts is labelled with the market's choice (:func:`rollout_labels`) and a
cross-entropy term on those labels joins the PPO loss (as DAPG, Rajeswaran et al. 2018, adds
its demonstrations' likelihood to the policy gradient). ``imitate.ppo_levels`` restricts it
to the states where the market sends the robot to a task of those levels, e.g. only level-3
coalitions (tried on the room: the policy's level-3 count rose to the market's and it lost
more level-2 tasks than that gained; ``policies/mrta_room_8.md``, "Tried since").
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from sim.mrta.env import MRTAVecEnv
from sim.mrta.observation import MRTAObservation
from swarm_rl.mrta.evaluate import market_allocator


@dataclass
class ImitationConfig:
    """The warm start before PPO (all counts per run)."""

    updates: int = 0
    """Demonstration rollouts to clone (each ``ppo.rollout_steps`` x ``ppo.num_envs``
    episodes' decision steps); 0: no warm start (PPO from the initial weights)."""
    epochs: int = 3
    """Passes over each rollout's samples (minibatches of ``ppo.minibatch_size``)."""
    teacher_rollouts: int = 1
    """The first rollouts are flown by the market (teacher forcing); the later ones by the
    policy being trained, the market labelling the states it visits (DAgger)."""
    keep_rollouts: int = 1
    """How many of the latest rollouts each fit draws from: 1 fits each rollout alone; more
    aggregates them, as DAgger proper does (Ross et al. 2011: the union of every visited
    state, so one rollout's states do not pull the clone away from the last ones'). Each
    epoch is as long as the newest rollout, its samples drawn from the union, so the fit's
    cost does not grow. The buffer is not checkpointed: a resumed run starts it empty."""
    ppo_coef: float = 0.0
    """Weight of the cross-entropy on the market's choices added to every PPO minibatch loss
    (on the final-round states of PPO's own rollouts); 0: PPO alone."""
    ppo_levels: list[int] = field(default_factory=lambda: [0, 1, 2, 3])
    """Which of the market's choices that term clones, by the level of the task it assigns
    (0: the market leaves the robot without a task)."""


@dataclass
class Demonstrations:
    """One rollout of market decisions, as tensors ready for the losses."""

    obs: torch.Tensor
    """(S, dim) every kept round's observation."""
    labels: torch.Tensor
    """(S,) the observation slot of the market's choice (K_t: no task)."""
    critic_obs: torch.Tensor
    """(T, dim) the final round's observation of each robot and step."""
    robots: torch.Tensor
    tasks: torch.Tensor
    task_mask: torch.Tensor
    returns: torch.Tensor
    """(T,) discounted team return from each robot's step."""
    unknown_share: float
    """Share of round samples dropped: market target not among the robot's slots."""
    episode_return: float
    """Mean team return of the episodes that ended in the rollout (market or policy)."""


def market_labels(obs: MRTAObservation, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Observation-slot labels (E, N) for task-table ``targets`` (E, N) (-1: no task), and
    which are usable (the target is a legal slot of the robot's observation)."""
    kt = obs.slot_task.shape[-1]
    hit = (obs.slot_task == targets[..., None]) & (targets[..., None] >= 0)
    slot = np.where(hit.any(-1), hit.argmax(-1), kt)
    found = hit.any(-1) | (targets < 0)
    legal = np.take_along_axis(obs.action_mask, slot[..., None], axis=-1)[..., 0]
    return slot, found & legal


def rollout_labels(env, levels: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """The market's choices for the state every environment of ``env`` is in now, on each
    robot's latest observation (after its negotiation rounds): observation-slot labels
    (E N,) and which count (E N,) bool: usable (:func:`market_labels`) and assigning a task
    of one of ``levels`` (0: no task)."""
    slots, keep = [], []
    for part in _parts(env):
        t = part.tasks
        teacher = market_allocator(part, part.last_obs)
        slot, ok = market_labels(part.last_obs, teacher)
        level = np.where(teacher >= 0,
                         np.take_along_axis(t.level, np.maximum(teacher, 0), axis=1), 0)
        slots.append(slot.reshape(-1))
        keep.append((ok & np.isin(level, levels)).reshape(-1))
    return np.concatenate(slots), np.concatenate(keep)


def _parts(env) -> list[MRTAVecEnv]:
    return list(getattr(env, "parts", [env]))


def _announce(part: MRTAVecEnv, targets: np.ndarray) -> MRTAObservation:
    """A negotiation round in which every robot announces ``targets`` (task-table slots)."""
    part.last_obs = part.observe(targets)
    return part.last_obs


@torch.no_grad()
def _argmax(actor: nn.Module, obs: MRTAObservation) -> np.ndarray:
    e, n, dim = obs.obs.shape
    return actor(torch.from_numpy(obs.obs.reshape(e * n, dim))).argmax(-1).reshape(e, n).numpy()


def collect_demonstrations(env, steps: int, gamma: float,
                           actor: nn.Module | None = None) -> Demonstrations:
    """``steps`` decision steps of every environment in ``env`` (an :class:`MRTAVecEnv` or
    the trainer's ``MixedEnv``, from their current state), labelled with the market's
    choices. ``actor`` None: the market flies the robots and is announced in every round
    (teacher forcing); an actor: it flies them (argmax, its own negotiation rounds) and the
    market only labels the states it visits (DAgger: the states the policy will meet)."""
    obs_rows, label_rows, keep_rows = [], [], []
    final_obs, robots, tasks, masks, rewards, dones = [], [], [], [], [], []
    finished = []
    for _ in range(steps):
        step_obs, step_rw, step_state = [], [], ([], [], [])
        done = False
        for part in _parts(env):
            teacher = market_allocator(part, part.last_obs)
            obs, choice = part.last_obs, None
            for r in range(part.cfg.negotiation_rounds):
                if r > 0:
                    obs = (part.propose(choice) if actor is not None
                           else _announce(part, teacher))
                slot, ok = market_labels(obs, teacher)
                obs_rows.append(obs.obs.reshape(-1, obs.obs.shape[-1]))
                label_rows.append(slot.reshape(-1))
                keep_rows.append(ok.reshape(-1))
                if actor is not None:
                    choice = _argmax(actor, obs)
            n = part.num_robots
            for dst, src in zip(step_state, part.critic_state()):
                dst.append(np.repeat(src, n, axis=0))
            step_obs.append(obs.obs.reshape(-1, obs.obs.shape[-1]))
            result = (part.step(choice) if actor is not None else part.step_targets(teacher))
            step_rw.append(np.repeat(result.reward, n))
            done = result.done
            if done:
                finished.append(result.info["episode"]["return"])
        final_obs.append(np.concatenate(step_obs))
        for dst, src in zip((robots, tasks, masks), step_state):
            dst.append(np.concatenate(src))
        rewards.append(np.concatenate(step_rw))
        dones.append(done)
    returns = np.zeros_like(rewards[0])
    out = []
    for reward, done in zip(reversed(rewards), reversed(dones)):
        returns = reward + gamma * returns * (0.0 if done else 1.0)
        out.append(returns)
    keep = np.concatenate(keep_rows)
    as_t = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
    return Demonstrations(
        obs=as_t(np.concatenate(obs_rows)[keep]),
        labels=as_t(np.concatenate(label_rows)[keep].astype(np.int64)),
        critic_obs=as_t(np.concatenate(final_obs)), robots=as_t(np.concatenate(robots)),
        tasks=as_t(np.concatenate(tasks)), task_mask=as_t(np.concatenate(masks)),
        returns=as_t(np.concatenate(out[::-1]).astype(np.float32)),
        unknown_share=float(1.0 - keep.mean()),
        episode_return=float(np.mean(np.concatenate(finished))) if finished else float("nan"))


def merge(demos: list[Demonstrations]) -> Demonstrations:
    """Several rollouts' demonstrations as one: samples concatenated in the order given
    (oldest first, so the newest rollout's samples end the arrays, where :func:`fit`'s
    ``per_epoch`` reads its returns), shares and returns weighted by sample count."""
    if len(demos) == 1:
        return demos[0]
    cat = {name: torch.cat([getattr(d, name) for d in demos])
           for name in ("obs", "labels", "critic_obs", "robots", "tasks", "task_mask",
                        "returns")}
    weights = np.array([d.labels.shape[0] for d in demos], float)
    finished = [d.episode_return for d in demos if np.isfinite(d.episode_return)]
    return Demonstrations(
        **cat, unknown_share=float(np.average([d.unknown_share for d in demos],
                                               weights=weights)),
        episode_return=float(np.mean(finished)) if finished else float("nan"))


def fit(actor: nn.Module, critic: nn.Module, value_norm, optimizer: torch.optim.Optimizer,
        demo: Demonstrations, epochs: int, minibatch: int, value_coef: float,
        max_grad_norm: float, gen: torch.Generator,
        per_epoch: tuple[int, int] | None = None) -> dict[str, float]:
    """Cross-entropy on the market's choices and value regression on its returns (in the
    value normaliser's units); returns the last epoch's accuracy (argmax = label), the mean
    cross-entropy and value loss. ``per_epoch``: (actor samples, critic samples) drawn, without
    replacement, in each epoch (default: all of ``demo``'s); the value normaliser is updated
    with the newest ``per_epoch[1]`` returns only (the rest have been seen)."""
    n_act, n_val = demo.obs.shape[0], demo.critic_obs.shape[0]
    if per_epoch is not None:
        n_act, n_val = min(per_epoch[0], n_act), min(per_epoch[1], n_val)
    value_norm.update(demo.returns[-n_val:, None])
    target = (demo.returns - value_norm.mean) / torch.sqrt(value_norm.var + 1e-8)
    params = list(actor.parameters()) + list(critic.parameters())
    ce_fn = nn.CrossEntropyLoss()
    stats: dict[str, float] = {}
    for _ in range(epochs):
        perm_a = torch.randperm(demo.obs.shape[0], generator=gen)[:n_act]
        perm_v = torch.randperm(demo.critic_obs.shape[0], generator=gen)[:n_val]
        batches = max(1, -(-n_act // minibatch))
        v_size = -(-n_val // batches)
        ce_sum = v_sum = hits = 0.0
        for b in range(batches):
            ia = perm_a[b * minibatch:(b + 1) * minibatch]
            iv = perm_v[b * v_size:(b + 1) * v_size]
            logits = actor(demo.obs[ia])
            ce = ce_fn(logits, demo.labels[ia])
            pred = critic(demo.critic_obs[iv], demo.robots[iv], demo.tasks[iv],
                          demo.task_mask[iv])
            v_loss = 0.5 * ((pred - target[iv]) ** 2).mean()
            optimizer.zero_grad()
            (ce + value_coef * v_loss).backward()
            nn.utils.clip_grad_norm_(params, max_grad_norm)
            optimizer.step()
            with torch.no_grad():
                ce_sum += ce.item() * len(ia)
                v_sum += v_loss.item()
                hits += (logits.argmax(-1) == demo.labels[ia]).sum().item()
        stats = {"imitation_ce": ce_sum / n_act, "imitation_v_loss": v_sum / batches,
                 "imitation_accuracy": hits / n_act}
    return stats
