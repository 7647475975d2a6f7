"""The PettingZoo ParallelEnv wrapper: API conformance, seeding and episode ends."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from pettingzoo.test import parallel_api_test

from sim.config import make_config
from sim.pettingzoo_env import SwarmParallelEnv


def _api_test(env: SwarmParallelEnv, num_cycles: int) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        parallel_api_test(env, num_cycles=num_cycles)
    pz_warnings = [str(w.message) for w in caught if "pettingzoo" in w.filename]
    assert pz_warnings == []


@pytest.mark.parametrize("action_mode", ["motors", "velocity"])
def test_parallel_api_batched(action_mode):
    env = SwarmParallelEnv(num_drones=4, episode_s=0.5, action_mode=action_mode)
    # more cycles than the episode has steps: the episode end is part of the check
    _api_test(env, num_cycles=env.cfg.episode_steps + 10)
    env.close()


def test_parallel_api_pybullet():
    env = SwarmParallelEnv(backend="pybullet", num_drones=3, episode_s=0.3)
    _api_test(env, num_cycles=40)
    env.close()


def test_agents_spaces_and_metadata():
    env = SwarmParallelEnv(num_drones=3, action_mode="velocity", neighbours_k=2)
    assert env.possible_agents == ["cf1", "cf2", "cf3"]
    assert env.agents == []
    assert env.metadata["name"] == "swarm_rl_v0"
    assert env.metadata["is_parallelizable"] is True
    space = env.observation_space("cf2")
    assert space is env.observation_space("cf2")
    assert space.shape == (env.vec_env.obs_dim,) and space.dtype == np.float32
    act = env.action_space("cf1")
    assert act is env.action_space("cf1")
    np.testing.assert_array_equal(act.low, -np.ones(4))
    np.testing.assert_array_equal(act.high, np.ones(4))
    assert SwarmParallelEnv(num_drones=1).action_space("cf1").low.min() == 0.0  # motors
    obs, infos = env.reset(seed=3)
    assert env.agents == ["cf1", "cf2", "cf3"]
    assert set(obs) == set(infos) == set(env.agents)
    assert all(space.contains(o) for o in obs.values())


def test_cfg_and_overrides():
    cfg = make_config(num_drones=2)
    env = SwarmParallelEnv(cfg, episode_s=0.1)
    assert env.cfg.num_drones == 2 and env.cfg.episode_steps == 10
    assert SwarmParallelEnv(cfg).cfg is cfg


def _first_obs(seed: int) -> np.ndarray:
    env = SwarmParallelEnv(num_drones=4, scenario="hover")
    obs, _ = env.reset(seed=seed)
    return np.stack([obs[a] for a in env.possible_agents])


def test_seeding():
    np.testing.assert_array_equal(_first_obs(7), _first_obs(7))
    assert not np.allclose(_first_obs(7), _first_obs(8))
    # reseeding the same env reproduces the episode, including after steps
    env = SwarmParallelEnv(num_drones=4)
    first, _ = env.reset(seed=11)
    env.step({})
    again, _ = env.reset(seed=11)
    for agent in env.possible_agents:
        np.testing.assert_array_equal(first[agent], again[agent])


def test_episode_end_and_final_observation():
    env = SwarmParallelEnv(num_drones=3, episode_s=0.2, noise={"enabled": False})
    obs, _ = env.reset(seed=0)
    steps = env.cfg.episode_steps
    assert steps == 20
    for t in range(steps):
        assert env.agents == env.possible_agents
        obs, rewards, terms, truncs, infos = env.step({})  # everyone hovers
        assert all(isinstance(r, float) for r in rewards.values())
        assert not any(terms.values())
        if t < steps - 1:
            assert not any(truncs.values())
            assert all("episode" not in i for i in infos.values())
    assert all(truncs.values()) and set(truncs) == set(env.possible_agents)
    assert env.agents == []
    # the final observations, not the auto-reset ones: a hovering drone stays near its spawn
    # (goal error, height) and the spawn/goals of a fresh episode would differ
    state = env.vec_env.physics.state()  # already reset to the next episode's spawn
    fresh_height = state.pos[0, :, 2]
    final_height = np.array([obs[a][env.vec_env.layout.slices["height"]][0]
                             for a in env.possible_agents])
    assert not np.allclose(final_height, fresh_height)
    # per-agent info: reward terms summing to the reward, and the episode metrics
    for agent, info in infos.items():
        terms_ = info["reward_terms"]
        assert set(terms_) >= {"distance", "effort", "collision", "total"}
        assert all(isinstance(v, float) for v in terms_.values())
        assert terms_["total"] == pytest.approx(rewards[agent])
        assert set(info["episode"]) >= {"success_rate", "collisions_per_drone_minute",
                                        "distance_last_1s_m", "min_separation_m"}
        assert all(isinstance(v, float) for v in info["episode"].values())
    with pytest.raises(RuntimeError, match="reset"):
        env.step({})
    env.reset()
    assert env.agents == env.possible_agents


def test_final_obs_is_the_pre_reset_observation():
    """The last step's observations equal those of a longer episode at the same step."""
    short = SwarmParallelEnv(num_drones=3, episode_s=0.05, noise={"enabled": False})
    long = SwarmParallelEnv(num_drones=3, episode_s=1.0, noise={"enabled": False})
    short.reset(seed=5)
    long.reset(seed=5)
    for _ in range(short.cfg.episode_steps):
        obs_short, _, _, trunc_short, _ = short.step({})
        obs_long, _, _, trunc_long, _ = long.step({})
    assert all(trunc_short.values()) and not any(trunc_long.values())
    for agent in short.possible_agents:
        np.testing.assert_array_equal(obs_short[agent], obs_long[agent])


def test_missing_agent_hovers_and_bad_actions():
    env = SwarmParallelEnv(num_drones=2, action_mode="velocity", noise={"enabled": False})
    env.reset(seed=0)
    env.step({"cf1": np.array([1.0, 0.0, 0.0, 0.0])})  # cf2 missing: hover (zero velocity)
    vel = env.vec_env.physics.state().vel[0]
    assert vel[0, 0] > vel[1, 0]
    with pytest.raises(KeyError, match="cf9"):
        env.step({"cf9": np.zeros(4)})
    with pytest.raises(ValueError, match="cf1"):
        env.step({"cf1": np.zeros(3)})
    with pytest.raises(RuntimeError, match="reset"):
        SwarmParallelEnv(num_drones=1).step({})
