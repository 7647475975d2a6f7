"""The pooled centralised critic: its global state, its symmetry, and the trainer's
minibatches of whole environments that it needs."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from sim.errors import ConfigError
from sim.swarm_env import CRITIC_FEATS, SwarmVecEnv
from swarm_rl.models import Critic, ModelConfig
from swarm_rl.train.config import load_preset
from swarm_rl.train.ppo import Trainer

SMALL = ["ppo.num_envs=8", "ppo.rollout_steps=20", "ppo.minibatch_size=600", "ppo.epochs=2",
         "threads=1", "init_from=", "curriculum.num_drones=[]", "env.num_drones=4",
         "model.critic=pooled"]


def _flown_env(envs: int = 3) -> tuple[SwarmVecEnv, np.ndarray]:
    """Eight-drone swap environments after five noisy hover steps, and their observations."""
    cfg = load_preset("swap_goals_8", ["curriculum.num_drones=[]"]).env
    env = SwarmVecEnv(cfg, envs, "batched", seed=0)
    env.reset(seed=1)
    rng = np.random.default_rng(2)
    for _ in range(5):
        obs = env.step(env.hover_action() + 0.1 * rng.standard_normal((envs, 8, 4))).obs
    return env, obs


def test_drone_state_is_centroid_position_velocity_and_goal_error() -> None:
    env, _ = _flown_env()
    s = env.physics.state()
    want = np.concatenate([s.pos - s.pos.mean(axis=1, keepdims=True), s.vel,
                           s.pos - env.goals()], axis=-1).astype(np.float32)
    got = env.drone_state()
    assert got.shape == (3, 8, CRITIC_FEATS) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


def test_pooled_values_follow_the_drones_not_their_order() -> None:
    """Renumbering the drones of an environment renumbers its values and leaves the other
    environments' values alone: the pool is permutation-invariant, the agent's own part
    follows the agent."""
    env, raw = _flown_env()
    torch.manual_seed(0)
    critic = Critic(env.layout, ModelConfig(critic="pooled"), CRITIC_FEATS)
    obs = torch.from_numpy(raw).reshape(24, -1)
    drones = torch.from_numpy(env.drone_state())
    with torch.no_grad():
        base = critic(obs, drones).reshape(3, 8)
        perm = torch.tensor([3, 0, 7, 1, 6, 2, 5, 4])
        obs2 = obs.reshape(3, 8, -1).clone()
        drones2 = drones.clone()
        obs2[1], drones2[1] = obs2[1, perm], drones2[1, perm]
        moved = critic(obs2.reshape(24, -1), drones2).reshape(3, 8)
    assert torch.equal(moved[0], base[0]) and torch.equal(moved[2], base[2])
    torch.testing.assert_close(moved[1], base[1, perm], rtol=1e-6, atol=1e-6)
    assert base.std() > 0  # not a constant


def test_pooled_update_minibatches_hold_whole_environments(tmp_path: Path,
                                                           monkeypatch) -> None:
    """Every critic call of an update sees complete environments, rows grouped in order;
    with a minibatch that is not a multiple of the drone count the last one is short."""
    tr = Trainer(load_preset("swap_goals_8", SMALL), tmp_path)
    ro = tr.collect()
    calls: list[tuple[int, int]] = []
    forward = tr.critic.forward

    def spy(obs, swarm=None, swarm_mask=None):
        calls.append((obs.shape[0], swarm.shape[0]))
        assert swarm_mask is None and swarm.shape[1:] == (4, CRITIC_FEATS)
        return forward(obs, swarm, swarm_mask)

    monkeypatch.setattr(tr.critic, "forward", spy)
    stats = tr.update(ro)
    groups = 8 * 20  # envs x steps
    assert all(rows == 4 * g for rows, g in calls)
    assert [g for _, g in calls] == [150, 10] * 2  # 600 samples = 150 environments
    assert sum(g for _, g in calls) == 2 * groups
    assert np.isfinite(list(stats.values())).all()


def test_pooled_run_resumes_bit_for_bit(tmp_path: Path) -> None:
    one, two = 8 * 20 * 4, 8 * 20 * 4 * 2
    straight = Trainer(load_preset("swap_goals_8", SMALL + [f"total_steps={two}"]),
                       tmp_path / "a")
    straight.train(progress_bar=False)
    Trainer(load_preset("swap_goals_8", SMALL + [f"total_steps={one}"]),
            tmp_path / "b").train(progress_bar=False)
    resumed = Trainer.resume(tmp_path / "b",
                             load_preset("swap_goals_8", SMALL + [f"total_steps={two}"]))
    resumed.train(progress_bar=False)
    a, b = straight.critic.state_dict(), resumed.critic.state_dict()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_pooled_minibatch_smaller_than_the_swarm_is_refused() -> None:
    with pytest.raises(ConfigError, match="ppo.minibatch_size"):
        load_preset("swap_goals_8", ["model.critic=pooled", "ppo.minibatch_size=4"])


@pytest.mark.parametrize("critic", ["pooled", "centralised", "local"])
def test_rollout_values_are_the_critic_at_each_step(tmp_path: Path, critic: str) -> None:
    """The rollout's values, taken in one batched pass after collection, are the critic's
    values of each step's own observations (rows and environments line up)."""
    tr = Trainer(load_preset("swap_goals_8", SMALL + [f"model.critic={critic}"]), tmp_path)
    tr.update(tr.collect())  # a trained critic: values that differ between samples
    ro = tr.collect()
    mask = ro.swarm_mask or [None] * len(ro.obs)
    swarm = ro.swarm or [None] * len(ro.obs)
    with torch.no_grad():
        for t in (0, 7, len(ro.obs) - 1):
            want = tr._value(ro.obs[t], swarm[t], mask[t])
            torch.testing.assert_close(ro.values[t], want, rtol=1e-5, atol=1e-5)
    assert torch.stack(ro.values).std() > 0
