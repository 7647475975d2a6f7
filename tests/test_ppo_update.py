"""The PPO update and the critic's inputs against their versions of commit c43641f
(per-tensor Adam, each normaliser computing its own batch moments, critic features
concatenated then cast): the same numbers bit for bit, the fused Adam within rounding."""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from sim.swarm_env import SwarmVecEnv
from swarm_rl.train.config import load_preset
from swarm_rl.train.ppo import Rollout, Trainer, gae

SMALL = ["ppo.num_envs=8", "ppo.rollout_steps=20", "ppo.minibatch_size=600", "ppo.epochs=2",
         "threads=1", "init_from=", "curriculum.num_drones=[]", "env.num_drones=4",
         "model.critic=centralised"]  # the pairwise critic of c43641f


def reference_update(tr: Trainer, ro: Rollout) -> dict[str, float]:
    """``Trainer.update`` of commit c43641f, verbatim but for names."""
    ppo = tr.cfg.ppo
    values = torch.stack(ro.values)
    adv = gae(torch.stack(ro.rewards), values, torch.stack(ro.dones), ro.next_value,
              ppo.gamma, ppo.gae_lambda)
    returns = (adv + values).reshape(-1)
    adv = adv.reshape(-1)
    obs = torch.cat(ro.obs)
    actions, old_logp = torch.cat(ro.actions), torch.cat(ro.logp)
    swarm = torch.cat(ro.swarm) if ro.swarm else None
    swarm_mask = torch.cat(ro.swarm_mask) if ro.swarm_mask else None
    tr.value_norm.update(returns[:, None])
    v_mean, v_std = tr.value_norm.mean, torch.sqrt(tr.value_norm.var + 1e-8)
    target = (returns - v_mean) / v_std
    total = obs.shape[0]
    warmup = tr.update_index < ppo.critic_warmup_updates
    stats: dict[str, list[float]] = {k: [] for k in ("pg_loss", "v_loss", "entropy",
                                                      "approx_kl", "clipfrac")}
    for _ in range(ppo.epochs):
        perm = torch.randperm(total, generator=tr.gen)
        for start in range(0, total, ppo.minibatch_size):
            idx = perm[start:start + ppo.minibatch_size]
            mb_obs = obs.index_select(0, idx)
            dist = tr._dist(mb_obs)
            logp = dist.log_prob(actions.index_select(0, idx)).sum(-1)
            log_ratio = logp - old_logp.index_select(0, idx)
            ratio = log_ratio.exp()
            mb_adv = adv.index_select(0, idx)
            mb_adv = (mb_adv - mb_adv.mean()) / (mb_adv.std() + 1e-8)
            pg_loss = torch.max(-mb_adv * ratio,
                                -mb_adv * ratio.clamp(1 - ppo.clip, 1 + ppo.clip)).mean()
            pred = tr.critic(mb_obs, None if swarm is None else swarm.index_select(0, idx),
                             None if swarm_mask is None else swarm_mask.index_select(0, idx))
            v_loss = 0.5 * ((pred - target.index_select(0, idx)) ** 2).mean()
            entropy = dist.entropy().sum(-1).mean()
            loss = pg_loss - ppo.entropy_coef * entropy + ppo.value_coef * v_loss
            if warmup:
                loss = ppo.value_coef * v_loss
            tr.optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(list(tr.actor.parameters())
                                     + list(tr.critic.parameters()), ppo.max_grad_norm)
            tr.optimizer.step()
            with torch.no_grad():
                stats["pg_loss"].append(pg_loss.item())
                stats["v_loss"].append(v_loss.item())
                stats["entropy"].append(entropy.item())
                stats["approx_kl"].append(((ratio - 1) - log_ratio).mean().item())
                stats["clipfrac"].append(((ratio - 1).abs() > ppo.clip).float().mean().item())
    tr.actor.norm.update(obs, tr.norm_frozen)
    tr.critic.norm.update(obs)
    if swarm is not None:
        tr.critic.swarm_norm.update(swarm)
    var_y = returns.var()
    explained = 1.0 - (returns - values.reshape(-1)).var() / var_y if var_y > 0 else 0.0
    out = {k: float(np.mean(v)) for k, v in stats.items()}
    out["explained_var"] = float(explained)
    out["lr"] = tr.optimizer.param_groups[0]["lr"]
    out["std"] = float(tr.actor.log_std.detach().exp().mean())
    return out


def _pair(tmp_path: Path, extra: list[str]) -> tuple[Trainer, Trainer, Rollout]:
    """Two identical trainers after one update (the second with the per-tensor Adam of
    c43641f), and the next rollout."""
    tr = Trainer(load_preset("swap_goals_8", SMALL + extra), tmp_path)
    tr.update(tr.collect())
    ro = tr.collect()
    ref = copy.deepcopy(tr)
    _per_tensor_adam(ref)
    return tr, ref, ro


def _state(tr: Trainer) -> dict[str, torch.Tensor]:
    state = {f"actor.{k}": v for k, v in tr.actor.state_dict().items()}
    state.update({f"critic.{k}": v for k, v in tr.critic.state_dict().items()})
    state.update({f"value_norm.{k}": v for k, v in tr.value_norm.state_dict().items()})
    return state


def _per_tensor_adam(tr: Trainer) -> None:
    """Switch ``tr`` to the per-tensor Adam loop (the default on the CPU), state kept."""
    for group in tr.optimizer.param_groups:
        group["fused"] = None


@pytest.mark.parametrize("extra", [
    [], ["ppo.critic_warmup_updates=5"],
    ["init_from=policies/hover_precise_motors.actor.pt", "init_norm=freeze_seen"]])
def test_update_matches_the_reference_bit_for_bit(tmp_path: Path, extra: list[str]) -> None:
    """With the same Adam loop: the same weights, normalisers, optimiser state, reported
    losses and random stream (a 600-sample minibatch leaves a short last one)."""
    fast, ref, ro = _pair(tmp_path, extra)
    _per_tensor_adam(fast)
    got, want = fast.update(ro), reference_update(ref, ro)
    assert got == want
    a, b = _state(fast), _state(ref)
    assert a.keys() == b.keys()
    for key in b:
        assert torch.equal(a[key], b[key]), key
    for p, q in zip(fast.optimizer.state.values(), ref.optimizer.state.values()):
        for key in q:
            assert torch.equal(p[key], q[key]), key
    assert torch.equal(fast.gen.get_state(), ref.gen.get_state())


def test_fused_adam_matches_the_reference_within_rounding(tmp_path: Path) -> None:
    """The trainer's fused Adam against the per-tensor loop: last-bit differences only."""
    fast, ref, ro = _pair(tmp_path, [])
    assert fast.optimizer.param_groups[0]["fused"]
    got, want = fast.update(ro), reference_update(ref, ro)
    assert got == pytest.approx(want, rel=1e-5, abs=1e-7)
    a, b = _state(fast), _state(ref)
    for key in b:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-7, msg=key)


def test_old_optimiser_state_resumes_in_the_fused_optimiser(tmp_path: Path) -> None:
    """Checkpoints written with the per-tensor Adam load (and keep stepping that way)."""
    tr, _, ro = _pair(tmp_path, [])
    old = torch.optim.Adam(list(tr.actor.parameters()) + list(tr.critic.parameters()),
                           lr=1e-3, eps=1e-5)
    for p in old.param_groups[0]["params"]:
        p.grad = torch.ones_like(p)
    old.step()
    tr.optimizer.load_state_dict(old.state_dict())
    tr.update(ro)
    assert all(torch.isfinite(p).all() for p in tr.actor.parameters())


def test_critic_state_matches_the_concatenated_features() -> None:
    cfg = load_preset("swap_goals_8", ["curriculum.num_drones=[]"]).env
    env = SwarmVecEnv(cfg, 3, "batched", seed=0)
    env.reset(seed=1)
    rng = np.random.default_rng(2)
    for _ in range(5):
        env.step(env.hover_action() + 0.1 * rng.standard_normal((3, 8, 4)))
    s = env.physics.state()
    rel_pos = s.pos[:, None, :, :] - s.pos[:, :, None, :]
    rel_vel = s.vel[:, None, :, :] - s.vel[:, :, None, :]
    goal_err = np.broadcast_to((s.pos - env.goals())[:, None, :, :], rel_pos.shape)
    want = np.concatenate([rel_pos, rel_vel, goal_err], axis=-1).astype(np.float32)
    feats, mask = env.critic_state()
    assert feats.dtype == np.float32 and np.array_equal(feats, want)
    assert np.array_equal(mask, np.broadcast_to(1.0 - np.eye(8), (3, 8, 8)))
