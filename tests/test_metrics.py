"""Rewards and episode metrics on hand-made trajectories with hand-computed answers."""
from __future__ import annotations

import numpy as np
import pytest

from sim.config import RewardConfig
from sim.metrics import SETTLED_RMS_KEY, EpisodeMetrics, aggregate
from sim.rewards import swarm_rewards
from sim.world import Collisions

HZ = 100
STEPS = 10 * HZ  # 10 s episodes
E, N = 2, 2


def _no_contact() -> dict[str, np.ndarray]:
    return {name: np.zeros((E, N), bool) for name in ("drone", "obstacle", "floor", "wall")}


def _episode() -> EpisodeMetrics:
    """Two envs of two drones, one control step at a time (step k ends at t = k / 100 s).

    env 0: the drones touch each other during t in [0.50, 0.60) (inside the 1.5 s grace),
           [4.00, 4.10) and [6.00, 6.10): three contact onsets each. Drone 0 closes in on its
           goal, d = 2 - 0.2 t (0 at the end); drone 1 holds d = 0.3 m.
    env 1: drone 0 grazes a column during [0.20, 0.30) (grace) and ends 0.1 m from its goal;
           drone 1 ends 0.2 m from its goal but touches the floor during [3.00, 3.05).
    """
    metrics = EpisodeMetrics(E, N, HZ, grace_s=1.5, success_radius_m=0.5)
    for k in range(1, STEPS + 1):
        t = k / HZ
        flags = _no_contact()
        if 50 <= k < 60 or 400 <= k < 410 or 600 <= k < 610:
            flags["drone"][0, :] = True
        if 20 <= k < 30:
            flags["obstacle"][1, 0] = True
        if 300 <= k < 305:
            flags["floor"][1, 1] = True
        dist = np.array([[2.0 - 0.2 * t, 0.3], [0.1, 0.2]])
        nearest = np.array([[0.1 if flags["drone"][0, 0] else 1.0] * 2,
                            [0.8 if k == 700 else 2.0] * 2])
        metrics.update(dist, Collisions(**flags), nearest)
    return metrics


def test_episode_metrics_by_hand():
    out = _episode().summary()
    assert set(out) == {"success_rate", "collisions_per_drone_minute", "crash_rate",
                        "min_separation_m", "final_distance_m", "distance_last_1s_m",
                        "distance_last_3s_m", "distance_last_5s_m", SETTLED_RMS_KEY}
    assert all(v.shape == (E,) for v in out.values())
    # env 0: both drones touched after the grace -> no success even though drone 0 ends at 0 m
    # env 1: drone 0 succeeds (column contact was in the grace), drone 1 crashed after it
    np.testing.assert_array_equal(out["success_rate"], [0.0, 0.5])
    # onsets of drone/column contact (grace included, floor excluded) per drone per minute:
    # env 0: 3 per drone in 10 s -> 18 / min; env 1: (1 + 0) / 2 per drone in 1/6 min -> 3
    np.testing.assert_allclose(out["collisions_per_drone_minute"], [18.0, 3.0])
    np.testing.assert_array_equal(out["crash_rate"], [0.0, 0.5])
    np.testing.assert_allclose(out["min_separation_m"], [0.1, 0.8])
    np.testing.assert_allclose(out["final_distance_m"], [0.15, 0.15], atol=1e-12)
    # drone 0 of env 0 over the last w seconds (steps k = 1001 - 100 w .. 1000):
    # mean of 2 - 0.002 k = 2 - 0.002 * (1000.5 - 50 w)
    for w in (1, 3, 5):
        d0 = 2.0 - 0.002 * (1000.5 - 50 * w)
        np.testing.assert_allclose(out[f"distance_last_{w}s_m"], [(d0 + 0.3) / 2, 0.15],
                                   atol=1e-9)


def test_contact_held_over_many_steps_is_one_collision():
    metrics = EpisodeMetrics(1, 2, HZ, grace_s=0.0, success_radius_m=0.5)
    for k in range(600):  # 6 s, touching from 1 s to 4 s
        flags = {name: np.zeros((1, 2), bool) for name in ("drone", "obstacle", "floor", "wall")}
        flags["drone"][:] = 100 <= k < 400
        metrics.update(np.zeros((1, 2)), Collisions(**flags), np.ones((1, 2)))
    out = metrics.summary()
    np.testing.assert_allclose(out["collisions_per_drone_minute"], [1.0 / 0.1])
    np.testing.assert_array_equal(out["success_rate"], [0.0])


def test_short_episode_windows_use_what_there_is():
    metrics = EpisodeMetrics(1, 1, HZ, grace_s=1.5, success_radius_m=0.5)
    for k in range(1, 51):  # 0.5 s with d = k cm
        metrics.update(np.array([[k / 100]]), Collisions(**{
            n: np.zeros((1, 1), bool) for n in ("drone", "obstacle", "floor", "wall")}),
            np.full((1, 1), np.inf))
    out = metrics.summary()
    for w in (1, 3, 5):
        np.testing.assert_allclose(out[f"distance_last_{w}s_m"], [0.255])
    np.testing.assert_allclose(out["final_distance_m"], [0.5])
    np.testing.assert_array_equal(out["success_rate"], [0.0])  # 0.5 m is not < 0.5 m
    assert np.isinf(out["min_separation_m"]).all()  # a lone drone


def test_settled_rms_error_on_a_hand_made_trajectory():
    """Over the last 2 s of a 10 s episode drone 1 (which flew in from 2 m) holds 3 cm, drone 2
    sits 4 cm off throughout and drone 3 (1 m off before) alternates 0 and 6 cm: RMS 3 cm,
    4 cm and 6 / sqrt(2) cm, whatever the first 8 s held."""
    metrics = EpisodeMetrics(1, 3, HZ, grace_s=1.5, success_radius_m=0.5)
    for k in range(1, STEPS + 1):
        settled = k > STEPS - 2 * HZ
        wave = 0.03 if settled else 2.0 - 0.002 * k
        pulse = 0.06 * (k % 2) if settled else 1.0
        metrics.update(np.array([[wave, 0.04, pulse]]), Collisions(**{
            n: np.zeros((1, 3), bool) for n in ("drone", "obstacle", "floor", "wall")}),
            np.full((1, 3), np.inf))
    out = metrics.summary()
    # drone 3: mean 3 cm, but RMS sqrt(0.06^2 / 2) = 4.243 cm
    np.testing.assert_allclose(out[SETTLED_RMS_KEY], [(0.03 + 0.04 + 0.06 / np.sqrt(2)) / 3],
                               atol=1e-12)


def test_settled_rms_error_short_episode_uses_what_there_is():
    metrics = EpisodeMetrics(1, 1, HZ, grace_s=1.5, success_radius_m=0.5)
    for k in range(1, 5):  # d = 1, 2, 3, 4 cm
        metrics.update(np.array([[k / 100]]), Collisions(**{
            n: np.zeros((1, 1), bool) for n in ("drone", "obstacle", "floor", "wall")}),
            np.full((1, 1), np.inf))
    np.testing.assert_allclose(metrics.summary()[SETTLED_RMS_KEY], [np.sqrt(30 / 4) / 100])


def test_precision_bonus_is_bounded_and_steep_near_the_goal():
    w = RewardConfig(precision=2.0, precision_scale_m=0.05)
    dist = np.array([[0.0, 0.05, 10.0]])
    terms = swarm_rewards(w, 0.01, goal_dist_m=dist,
                          rot=np.broadcast_to(np.eye(3), (1, 3, 3, 3)).copy(),
                          omega=np.zeros((1, 3, 3)), action_sq=np.zeros((1, 3)),
                          collisions=Collisions(**{n: np.zeros((1, 3), bool) for n in
                                                   ("drone", "obstacle", "floor", "wall")}),
                          nearest_m=np.full((1, 3), np.inf), contact_radius_m=0.12)
    np.testing.assert_allclose(terms["precision"][0], [0.02, 0.02 / np.e, 0.0], atol=1e-12)


def test_reset_clears_the_episode():
    metrics = _episode()
    metrics.reset()
    assert metrics.steps == 0 and metrics.contact_events.sum() == 0
    assert not metrics.touched_after_grace.any()


def test_aggregate():
    a = {"success_rate": np.array([0.0, 0.5]), "min_separation_m": np.array([0.1, 0.8])}
    b = {"success_rate": np.array([1.0]), "min_separation_m": np.array([0.3])}
    out = aggregate([a, b])
    assert out == {"success_rate": pytest.approx(0.5), "min_separation_m": pytest.approx(0.1),
                   "episodes": 3}


def test_rewards_by_hand():
    w = RewardConfig()
    dt = 0.01
    rot = np.broadcast_to(np.eye(3), (1, 2, 3, 3)).copy()
    rot[0, 1] = [[1, 0, 0], [0, 0, -1], [0, 1, 0]]  # rolled 90 deg: body z is horizontal
    omega = np.array([[[0.0, 0.0, 0.0], [3.0, 4.0, 0.0]]])
    flags = {name: np.zeros((1, 2), bool) for name in ("drone", "obstacle", "floor", "wall")}
    flags["drone"][0, 0] = True
    flags["floor"][0, 1] = True
    contact_m = 0.12
    terms = swarm_rewards(w, dt, goal_dist_m=np.array([[1.0, 2.0]]), rot=rot, omega=omega,
                          action_sq=np.array([[0.0, 0.5]]), collisions=Collisions(**flags),
                          nearest_m=np.array([[0.1, 0.25]]), contact_radius_m=contact_m,
                          collision_scale=0.5)
    closeness_1 = (w.proximity_radius_m - 0.25) / (w.proximity_radius_m - contact_m)
    expected = {
        "distance": [-1.0 * dt, -2.0 * dt],
        "precision": [0.0, 0.0],
        "effort": [0.0, -w.effort * 0.5 * dt],
        "orientation": [0.0, -w.orientation * dt],
        "spin": [0.0, -w.spin * 5.0 * dt],
        "crash": [0.0, -w.crash * dt],
        "collision": [-w.collision * 0.5 * dt, 0.0],
        "proximity": [-w.proximity * 0.5 * dt, -w.proximity * 0.5 * closeness_1 * dt],
    }
    assert set(terms) == set(expected) | {"total"}
    for name, value in expected.items():
        np.testing.assert_allclose(terms[name][0], value, atol=1e-15, err_msg=name)
    np.testing.assert_allclose(terms["total"][0], np.sum(list(expected.values()), axis=0))



@pytest.mark.filterwarnings("error")
def test_summary_before_the_first_step_is_all_nan_with_the_same_keys():
    """A flight stopped before its first tick (the sim bridge holding t = 0) still reports:
    every figure undefined, no numpy warning about means of nothing."""
    from sim.config import load_config
    from sim.swarm_env import SwarmVecEnv

    env = SwarmVecEnv(load_config("config/scenarios/swap_goals_8.yaml"), num_envs=2)
    env.reset(seed=0)
    before = env.metrics.summary()
    env.step(env.hover_action())
    after = env.metrics.summary()
    assert before.keys() == after.keys()
    assert all(v.shape == (2,) and np.isnan(v).all() for v in before.values())
    assert np.isfinite(after["min_separation_m"]).all()
