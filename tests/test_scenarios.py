"""Scenarios: separated spawns inside the room, obstacle fields, formations and moving goals."""
from __future__ import annotations

import numpy as np
import pytest

from sim.config import FORMATIONS, SCENARIOS, make_config
from sim.errors import ConfigError
from sim.scenarios import (MIN_GOAL_HEIGHT_M, ROOM_MARGIN_M, SCATTER_CLEARANCE_M, formation,
                           make_scenario)
from sim.swarm_env import SwarmVecEnv
from sim.world import min_pairwise_distance, obstacle_distance_xy

NUM_ENVS = 256
EPS = 1e-9
STATIC = [s for s in SCENARIOS if s != "dynamic_goals"]


def _sample(seed: int = 0, num_envs: int = NUM_ENVS, **overrides):
    cfg = make_config(**overrides)
    return cfg, make_scenario(cfg, np.random.default_rng(seed), num_envs)


def _assert_inside(cfg, points: np.ndarray, min_height_m: float) -> None:
    half = np.array(cfg.room_size_m[:2]) / 2 - ROOM_MARGIN_M
    assert (np.abs(points[..., :2]) <= half + EPS).all()
    assert (points[..., 2] >= min_height_m - EPS).all()
    assert (points[..., 2] <= cfg.room_size_m[2] - ROOM_MARGIN_M + EPS).all()


@pytest.mark.parametrize("scenario", SCENARIOS)
@pytest.mark.parametrize("n", [1, 2, 8, 32])
def test_spawns_separated_and_inside_the_room(scenario, n):
    density = 0.5 if scenario == "obstacles" else 0.0
    cfg, inst = _sample(scenario=scenario, num_drones=n, obstacle_density=density)
    assert inst.spawn.shape == inst.goals.base.shape == (NUM_ENVS, n, 3)
    sep = cfg.spawn_min_separation_m
    if n > 1:
        assert min_pairwise_distance(inst.spawn).min() >= sep - EPS
        # goals: spawn separation (random goals) or formation spacing (rigid formations)
        goal_sep = min(sep, 0.9 * cfg.formation_spacing_m)
        assert min_pairwise_distance(inst.goals.base).min() >= goal_sep - EPS
    else:
        assert np.isinf(min_pairwise_distance(inst.spawn)).all()
    _assert_inside(cfg, inst.spawn, cfg.spawn_height_m[0])
    for t in np.linspace(0.0, 30.0, 61):
        _assert_inside(cfg, inst.goals.at(t), MIN_GOAL_HEIGHT_M)


def test_same_seed_same_scenario():
    _, a = _sample(seed=3, num_envs=4, scenario="dynamic_goals")
    _, b = _sample(seed=3, num_envs=4, scenario="dynamic_goals")
    _, c = _sample(seed=4, num_envs=4, scenario="dynamic_goals")
    np.testing.assert_array_equal(a.spawn, b.spawn)
    np.testing.assert_array_equal(a.goals.at(2.0), b.goals.at(2.0))
    assert not np.allclose(a.spawn, c.spawn)


@pytest.mark.parametrize("density", [0.2, 0.8, 1.0])
def test_obstacles_keep_clear_of_spawns_and_goals(density):
    cfg, inst = _sample(scenario="obstacles", num_drones=16, obstacle_density=density)
    world = inst.world
    assert world.obstacle_radius_m == cfg.obstacle_radius_m
    for points in (inst.spawn, inst.goals.base):
        # distance from the drone's axis to the nearest column surface
        clearance = obstacle_distance_xy(points[..., :2], world)
        assert clearance.min() >= 0.3
    # columns lie inside the obstacle field
    ax, ay = cfg.obstacle_area_m
    assert (np.abs(world.obstacle_xy[..., 0]) <= ax / 2).all()
    assert (np.abs(world.obstacle_xy[..., 1]) <= ay / 2).all()


@pytest.mark.parametrize("density", [0.0, 0.2, 0.8])
def test_column_count_follows_density(density):
    _, inst = _sample(scenario="obstacles", num_drones=4, obstacle_density=density)
    cells = inst.world.obstacle_mask.shape[1]
    assert cells == 6 * 4  # 6 m x 4 m field, 1 m spacing
    counts = inst.world.obstacle_mask.sum(axis=1)
    if density == 0.0:
        assert (counts == 0).all()
    else:
        # mean of 256 binomial(24, p) counts: standard error < 0.13 columns
        assert counts.mean() == pytest.approx(density * cells, abs=0.5)
        assert counts.std() > 0  # columns are drawn per environment


@pytest.mark.parametrize("shape", [s for s in FORMATIONS if s != "random"])
def test_formations_keep_their_spacing(shape):
    spacing = 0.6
    for n in range(1, 17):
        offsets = formation(shape, n, spacing)
        assert offsets.shape == (n, 3)
        if n > 1:
            assert min_pairwise_distance(offsets[None])[0] >= 0.9 * spacing, (shape, n)


def test_unknown_formation():
    with pytest.raises(ConfigError, match="formation.*allowed: circle"):
        formation("star", 4, 0.6)


@pytest.mark.parametrize("n", [1, 8, 32])
def test_dynamic_goals_move_within_the_speed_limit(n):
    cfg, inst = _sample(num_envs=64 if n < 32 else 16, scenario="dynamic_goals", num_drones=n)
    dt = 0.01
    times = np.arange(0.0, 20.0, dt)
    goals = np.stack([inst.goals.at(t) for t in times])  # (T, E, N, 3)
    speed = np.linalg.norm(np.diff(goals, axis=0), axis=-1) / dt
    assert speed.max() <= cfg.goal_speed_mps * 1.05
    assert speed.max() >= 0.5 * cfg.goal_speed_mps
    moved = np.linalg.norm(goals - goals[:1], axis=-1).max(axis=0)  # (E, N)
    assert (moved > 0.3).all()  # every goal of every environment moves
    # the formation moves rigidly: offsets between goals stay fixed
    np.testing.assert_allclose(goals - goals[:, :, :1], np.broadcast_to(
        goals[:1] - goals[:1, :, :1], goals.shape), atol=1e-9)


@pytest.mark.parametrize("scenario", STATIC)
def test_static_goals_do_not_move(scenario):
    _, inst = _sample(num_envs=16, scenario=scenario, num_drones=8, obstacle_density=0.3)
    for t in (0.1, 1.0, 7.3, 15.0):
        np.testing.assert_array_equal(inst.goals.at(t), inst.goals.base)


def test_swap_goals_mirror_spawns_through_the_centre():
    _, inst = _sample(scenario="swap_goals", num_drones=8)
    goals = inst.goals.base
    np.testing.assert_allclose(goals[..., :2], -inst.spawn[..., :2], atol=1e-12)
    np.testing.assert_array_equal(goals[..., 2], inst.spawn[..., 2])


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_too_small_room_raises_config_error(scenario):
    cfg = make_config(scenario=scenario, num_drones=32, room_size_m=(3.0, 3.0, 2.5),
                      obstacle_density=0.5)
    with pytest.raises(ConfigError, match="room_size_m"):
        make_scenario(cfg, np.random.default_rng(0), 8)


def test_too_small_spawn_area_names_the_field():
    cfg = make_config(scenario="hover", num_drones=32, spawn_area_m=0.5)
    with pytest.raises(ConfigError, match="^spawn_area_m: 32 drones do not fit"):
        make_scenario(cfg, np.random.default_rng(0), 8)


def test_formation_too_large_for_the_room():
    cfg = make_config(scenario="static_formation", num_drones=32, formation="line")
    with pytest.raises(ConfigError, match="^formation: .*room_size_m"):
        make_scenario(cfg, np.random.default_rng(0), 8)


def test_env_reset_reports_the_small_room():
    env = SwarmVecEnv(make_config(scenario="swap_goals", num_drones=32,
                                  room_size_m=(3.0, 3.0, 2.5)))
    with pytest.raises(ConfigError, match="room_size_m"):
        env.reset()


def test_step_without_observations_flies_the_same_episode():
    """``step(observe=False)`` (the sim bridge's) changes nothing within the episode but the
    missing observations: same states, rewards and metrics; the episode still ends and resets
    (its spawns differ: no observation noise was drawn from the random stream)."""
    cfg = make_config(scenario="static_formation", num_drones=4, action_mode="velocity",
                      episode_s=0.5)
    envs = [SwarmVecEnv(cfg, num_envs=2, seed=3) for _ in range(2)]
    for env in envs:
        env.reset(seed=3)
    actions = np.random.default_rng(0).uniform(-0.5, 0.5, (cfg.episode_steps, 2, 4, 4))
    for a in actions:
        full, bare = envs[0].step(a), envs[1].step(a, observe=False)
        np.testing.assert_array_equal(full.reward, bare.reward)
        if not full.truncated.all():
            assert full.obs is not None and bare.obs is None
            np.testing.assert_array_equal(envs[0].physics.state().pos,
                                          envs[1].physics.state().pos)
    assert full.truncated.all() and bare.truncated.all()
    assert bare.info["final_obs"] is None and bare.obs is not None  # reset observes
    assert full.info["episode"].keys() == bare.info["episode"].keys()
    for key, value in full.info["episode"].items():
        np.testing.assert_array_equal(value, bare.info["episode"][key])


def _mixed(seed: int = 0, num_envs: int = NUM_ENVS, mix: float = 0.5, density: float = 0.3,
           num_drones: int = 8):
    return _sample(seed=seed, num_envs=num_envs, scenario="obstacles", num_drones=num_drones,
                   obstacle_density=density, obstacle_mix=mix)


def _scattered(cfg, inst) -> np.ndarray:
    """(E,) True where an environment scatters its spawns and goals (crossing spawns lie west
    of the field, its goals east of it, beyond a column radius and 0.5 m); with 8 drones a
    scattered episode looks like a crossing one with a probability below 1e-10."""
    x_edge = cfg.obstacle_area_m[0] / 2 + cfg.obstacle_radius_m + 0.5
    return ((inst.spawn[..., 0] > -x_edge + EPS).any(axis=1)
            | (inst.goals.base[..., 0] < x_edge - EPS).any(axis=1))


@pytest.mark.parametrize("density", [0.1, 0.3, 1.0])
@pytest.mark.parametrize("num_drones", [1, 8, 16])
def test_mixed_obstacle_episodes_keep_clear_of_columns_and_each_other(density, num_drones):
    cfg, inst = _mixed(mix=1.0, density=density, num_drones=num_drones)
    if num_drones >= 8:
        assert _scattered(cfg, inst).all()
    for points in (inst.spawn, inst.goals.base):
        assert obstacle_distance_xy(points[..., :2], inst.world).min() >= SCATTER_CLEARANCE_M
        if num_drones > 1:
            assert min_pairwise_distance(points).min() >= cfg.spawn_min_separation_m - EPS
    _assert_inside(cfg, inst.spawn, cfg.spawn_height_m[0])
    _assert_inside(cfg, inst.goals.base, max(cfg.spawn_height_m[0], MIN_GOAL_HEIGHT_M))
    # scattered over the field and its surroundings (among the columns unless the field is
    # full), not just beside it
    ax, ay = cfg.obstacle_area_m
    for points in (inst.spawn, inst.goals.base):
        assert (np.abs(points[..., 0]) <= ax / 2 + 1.0 + EPS).all()
        assert (np.abs(points[..., 1]) <= ay / 2 + 1.0 + EPS).all()
        inside = (np.abs(points[..., 0]) < ax / 2) & (np.abs(points[..., 1]) < ay / 2)
        assert inside.mean() > (0.2 if density < 1.0 else 0.02)


def test_obstacle_mix_share_is_respected():
    for mix in (0.0, 0.25, 0.5, 1.0):
        cfg, inst = _mixed(num_envs=2000, mix=mix)
        # binomial(2000, mix): standard error <= 0.012
        assert _scattered(cfg, inst).mean() == pytest.approx(mix, abs=0.04)


def test_obstacle_mix_is_deterministic_per_seed():
    _, a = _mixed(seed=7, num_envs=32)
    _, b = _mixed(seed=7, num_envs=32)
    _, c = _mixed(seed=8, num_envs=32)
    np.testing.assert_array_equal(a.spawn, b.spawn)
    np.testing.assert_array_equal(a.goals.base, b.goals.base)
    np.testing.assert_array_equal(a.world.obstacle_mask, b.world.obstacle_mask)
    assert not np.allclose(a.spawn, c.spawn)


def test_no_mix_keeps_the_crossing_episodes():
    """``obstacle_mix: 0`` (the default, the eval scenario obstacles_8) draws no extra random
    numbers: the crossing episodes are those of a plain obstacles config."""
    _, plain = _sample(seed=2, num_envs=32, scenario="obstacles", obstacle_density=0.3)
    cfg, zero = _mixed(seed=2, num_envs=32, mix=0.0)
    np.testing.assert_array_equal(plain.spawn, zero.spawn)
    np.testing.assert_array_equal(plain.goals.base, zero.goals.base)
    assert not _scattered(cfg, zero).any()


@pytest.mark.parametrize(("overrides", "message"), [
    ({"scenario": "obstacles", "obstacle_mix": 1.5}, "^obstacle_mix: must be in \\[0, 1\\]"),
    ({"scenario": "obstacles", "obstacle_mix": -0.1}, "^obstacle_mix: must be in \\[0, 1\\]"),
    ({"scenario": "hover", "obstacle_mix": 0.5}, "^obstacle_mix: only the obstacles scenario"),
])
def test_bad_obstacle_mix_is_rejected(overrides, message):
    with pytest.raises(ConfigError, match=message):
        make_config(**overrides)


def test_crowded_scattered_episodes_name_the_room():
    cfg = make_config(scenario="obstacles", num_drones=64, obstacle_density=1.0,
                      obstacle_mix=1.0, obstacle_area_m=(2.0, 2.0), room_size_m=(4.0, 4.0, 2.0),
                      spawn_height_m=(0.5, 0.6))
    with pytest.raises(ConfigError, match="^room_size_m"):
        make_scenario(cfg, np.random.default_rng(0), 4)
