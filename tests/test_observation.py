"""The one observation function, checked on a hand-made swarm whose answer is worked out here."""
from __future__ import annotations

import numpy as np
import pytest

from sim.observation import (LAYOUT_VERSION, OBSTACLE_RANGE_M, OWN_DIM, ObsLayout, SensorNoise,
                             build_observation, nearest_neighbours, observe_swarm)
from sim.world import World, obstacle_distance_xy

RANGE_M = 4.0
COLUMN_XY = (0.3, 0.0)
COLUMN_R = 0.15


@pytest.mark.parametrize("k", [0, 1, 2, 6, 10])
def test_layout_dim_slices_and_metadata(k):
    layout = ObsLayout(k)
    slices = layout.slices
    assert list(slices) == ["goal_error", "velocity", "rotation", "body_rates", "height",
                            "neighbours", "neighbour_mask", "obstacles"]
    sizes = {name: s.stop - s.start for name, s in slices.items()}
    assert sizes == {"goal_error": 3, "velocity": 3, "rotation": 9, "body_rates": 3, "height": 1,
                     "neighbours": 6 * k, "neighbour_mask": k, "obstacles": 9}
    assert layout.dim == sum(sizes.values()) == OWN_DIM + 7 * k + 9
    # contiguous, in order, covering [0, dim)
    stops = [0] + [s.stop for s in slices.values()]
    assert [s.start for s in slices.values()] == stops[:-1] and stops[-1] == layout.dim
    meta = layout.metadata()
    assert meta["obs_layout_version"] == str(LAYOUT_VERSION)
    assert meta["obs_neighbours_k"] == str(k)
    assert meta["obs_dim"] == str(layout.dim)
    parsed = {name: slice(int(a), int(b)) for name, a, b in
              (part.split(":") for part in meta["obs_slices"].split(";"))}
    assert parsed == slices


def _hand_swarm():
    """4 drones of one environment; drone 1 is yawed by +90 deg, drone 3 is far away."""
    pos = np.array([[[0.0, 0.0, 1.0], [1.0, 0.0, 1.0], [0.0, 2.0, 1.5], [5.0, 5.0, 1.0]]])
    vel = np.array([[[0.1, 0.0, 0.0], [0.0, 0.2, 0.0], [0.0, 0.0, -0.3], [1.0, 1.0, 0.0]]])
    rot = np.broadcast_to(np.eye(3), (1, 4, 3, 3)).copy()
    rot[0, 1] = [[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]  # body x -> world y
    omega = np.zeros((1, 4, 3))
    omega[0, 0] = [0.1, 0.2, 0.3]
    goal = np.array([[[1.0, 1.0, 1.0], [1.0, 0.0, 2.0], [0.0, 0.0, 1.0], [5.0, 5.0, 1.0]]])
    world = World((10.0, 10.0, 4.0), np.array([[COLUMN_XY]]), np.array([[True]]), COLUMN_R)
    return pos, vel, rot, omega, goal, world


def _observe(k: int, noise: SensorNoise = SensorNoise(), rng=None, copies: int = 1):
    pos, vel, rot, omega, goal, world = _hand_swarm()
    if copies > 1:
        pos, vel, rot, omega, goal = (np.repeat(a, copies, axis=0)
                                      for a in (pos, vel, rot, omega, goal))
        world = World(world.room_size_m, np.repeat(world.obstacle_xy, copies, axis=0),
                      np.repeat(world.obstacle_mask, copies, axis=0), world.obstacle_radius_m)
    layout = ObsLayout(k)
    obs = observe_swarm(pos, vel, rot, omega, goal, lambda p: obstacle_distance_xy(p, world),
                        layout, RANGE_M, noise, rng)
    return obs, layout


def test_hand_made_swarm_own_state():
    obs, layout = _observe(k=4)
    assert obs.shape == (1, 4, layout.dim) and obs.dtype == np.float32
    s = layout.slices
    o = obs[0]
    np.testing.assert_array_equal(o[0, s["goal_error"]], [-1.0, -1.0, 0.0])
    np.testing.assert_array_equal(o[1, s["goal_error"]], [0.0, 0.0, -1.0])
    np.testing.assert_array_equal(o[2, s["goal_error"]], [0.0, 2.0, 0.5])
    np.testing.assert_array_equal(o[3, s["goal_error"]], [0.0, 0.0, 0.0])
    np.testing.assert_array_equal(o[:, s["velocity"]], np.float32(
        [[0.1, 0, 0], [0, 0.2, 0], [0, 0, -0.3], [1, 1, 0]]))
    np.testing.assert_array_equal(o[0, s["rotation"]], [1, 0, 0, 0, 1, 0, 0, 0, 1])
    np.testing.assert_array_equal(o[1, s["rotation"]], [0, -1, 0, 1, 0, 0, 0, 0, 1])  # row-major
    np.testing.assert_array_equal(o[0, s["body_rates"]], np.float32([0.1, 0.2, 0.3]))
    np.testing.assert_array_equal(o[1:, s["body_rates"]], 0.0)
    np.testing.assert_array_equal(o[:, s["height"]][:, 0], [1.0, 1.0, 1.5, 1.0])


def test_hand_made_swarm_neighbours():
    obs, layout = _observe(k=4)
    s = layout.slices
    nb = obs[0][:, s["neighbours"]].reshape(4, 4, 6)
    mask = obs[0][:, s["neighbour_mask"]]
    f = np.float32
    # drone 0: drone 1 at 1 m, drone 2 at sqrt(4.25) m, drone 3 at 7.07 m is out of range;
    # relative values are world-frame, whatever the observer's yaw
    np.testing.assert_array_equal(mask[0], [1, 1, 0, 0])
    np.testing.assert_array_equal(nb[0, 0], f([1, 0, 0, -0.1, 0.2, 0]))
    np.testing.assert_array_equal(nb[0, 1], f([0, 2, 0.5, -0.1, 0, -0.3]))
    np.testing.assert_array_equal(nb[0, 2:], 0.0)
    # drone 1 (yawed): drone 0 at 1 m, drone 2 at sqrt(5.25) m, drone 3 at sqrt(41) m: out
    np.testing.assert_array_equal(mask[1], [1, 1, 0, 0])
    np.testing.assert_array_equal(nb[1, 0], f([-1, 0, 0, 0.1, -0.2, 0]))
    np.testing.assert_array_equal(nb[1, 1], f([-1, 2, 0.5, 0, -0.2, -0.3]))
    np.testing.assert_array_equal(nb[1, 2:], 0.0)
    # drone 2: drone 0 (2.06 m) before drone 1 (2.29 m); drone 3 at 5.85 m is out of range
    np.testing.assert_array_equal(mask[2], [1, 1, 0, 0])
    np.testing.assert_array_equal(nb[2, 0], f([0, -2, -0.5, 0.1, 0, 0.3]))
    np.testing.assert_array_equal(nb[2, 1], f([1, -2, -0.5, 0, 0.2, 0.3]))
    # drone 3: nobody in range
    np.testing.assert_array_equal(mask[3], 0.0)
    np.testing.assert_array_equal(nb[3], 0.0)


def test_fewer_slots_than_neighbours_keeps_the_nearest():
    obs, layout = _observe(k=1)
    s = layout.slices
    np.testing.assert_array_equal(obs[0, 2, s["neighbours"]],
                                  np.float32([0, -2, -0.5, 0.1, 0, 0.3]))
    np.testing.assert_array_equal(obs[0, :, s["neighbour_mask"]][:, 0], [1, 1, 1, 0])
    obs0, layout0 = _observe(k=0)
    assert obs0.shape == (1, 4, layout0.dim) == (1, 4, OWN_DIM + 9)
    full, _ = _observe(k=4)
    own = slice(0, OWN_DIM)
    np.testing.assert_array_equal(obs0[..., own], full[..., own])


def test_hand_made_swarm_obstacle_patch():
    obs, layout = _observe(k=2)
    patch = obs[0][:, layout.slices["obstacles"]]
    r = COLUMN_R
    # drone 0 at (0, 0), column centre (0.3, 0): patch points (dx, dy) in 0.2 m steps, x-major
    expected = np.array([
        np.hypot(0.5, 0.2) - r, 0.5 - r, np.hypot(0.5, 0.2) - r,      # dx = -0.2
        np.hypot(0.3, 0.2) - r, 0.3 - r, np.hypot(0.3, 0.2) - r,      # dx = 0
        np.hypot(0.1, 0.2) - r, 0.1 - r, np.hypot(0.1, 0.2) - r,      # dx = +0.2
    ])
    np.testing.assert_allclose(patch[0], expected, atol=1e-6)
    # drone 1 at (1, 0): the patch is in the world frame, not rotated with the drone's yaw
    expected_1 = np.array([np.hypot(0.7 + dx, dy) - r for dx in (-0.2, 0.0, 0.2)
                           for dy in (-0.2, 0.0, 0.2)])
    np.testing.assert_allclose(patch[1], expected_1, atol=1e-6)
    # drone 3 is 6.7 m away: clipped to the sensing range
    np.testing.assert_array_equal(patch[3], OBSTACLE_RANGE_M)


def test_no_columns_reads_as_out_of_range():
    pos, vel, rot, omega, goal, _ = _hand_swarm()
    empty = World.empty((10.0, 10.0, 4.0), 1)
    layout = ObsLayout(2)
    obs = observe_swarm(pos, vel, rot, omega, goal, lambda p: obstacle_distance_xy(p, empty),
                        layout, RANGE_M)
    np.testing.assert_array_equal(obs[..., layout.slices["obstacles"]], OBSTACLE_RANGE_M)


def test_matches_the_reference_composition_on_random_swarms():
    """observe_swarm == nearest_neighbours + build_observation (the documented parts)."""
    rng = np.random.default_rng(0)
    e, n, k, range_m = 3, 10, 4, 1.5
    pos = rng.uniform(0.0, 3.0, (e, n, 3))
    vel = rng.normal(size=(e, n, 3))
    rot = np.linalg.qr(rng.normal(size=(e, n, 3, 3)))[0]
    omega = rng.normal(size=(e, n, 3))
    goal = rng.uniform(0.0, 3.0, (e, n, 3))
    layout = ObsLayout(k)
    patch = rng.uniform(0.0, 3.0, (e, n, 9))
    obs = observe_swarm(pos, vel, rot, omega, goal, lambda p: patch, layout, range_m)
    rel_pos = (pos[:, None] - pos[:, :, None]).reshape(e * n, n, 3)
    rel_vel = (vel[:, None] - vel[:, :, None]).reshape(e * n, n, 3)
    valid = np.broadcast_to(~np.eye(n, dtype=bool), (e, n, n)).reshape(e * n, n)
    feats, mask = nearest_neighbours(rel_pos, rel_vel, valid, k, range_m)
    assert 0 < mask.sum() < mask.size  # some slots masked, some filled
    expected = build_observation((pos - goal).reshape(-1, 3), vel.reshape(-1, 3),
                                 rot.reshape(-1, 3, 3), omega.reshape(-1, 3),
                                 pos[..., 2].reshape(-1), feats, mask,
                                 np.minimum(patch, OBSTACLE_RANGE_M).reshape(-1, 9))
    np.testing.assert_allclose(obs.reshape(e * n, -1), expected, atol=1e-6)


def test_noise_has_the_configured_sigma():
    noise = SensorNoise(pos_sigma_m=0.05, vel_sigma_mps=0.1, gyro_sigma_rad_s=0.02)
    copies = 2000
    clean, layout = _observe(k=4, copies=copies)
    noisy, _ = _observe(k=4, noise=noise, rng=np.random.default_rng(1), copies=copies)
    diff = (noisy - clean).astype(float)  # (copies, 4, dim)
    s = layout.slices

    def std(part, drone=slice(None)):
        return diff[:, drone, s[part]].std()

    assert std("goal_error") == pytest.approx(noise.pos_sigma_m, rel=0.2)
    assert std("height") == pytest.approx(noise.pos_sigma_m, rel=0.2)
    assert std("velocity") == pytest.approx(noise.vel_sigma_mps, rel=0.2)
    assert std("body_rates") == pytest.approx(noise.gyro_sigma_rad_s, rel=0.2)
    np.testing.assert_array_equal(diff[:, :, s["rotation"]], 0.0)
    # neighbour features are differences of two independently perturbed states
    nb = diff[:, :3, s["neighbours"]].reshape(copies, 3, 4, 6)[:, :, :2]  # the real neighbours
    assert nb[..., :3].std() == pytest.approx(np.sqrt(2) * noise.pos_sigma_m, rel=0.2)
    assert nb[..., 3:].std() == pytest.approx(np.sqrt(2) * noise.vel_sigma_mps, rel=0.2)
    np.testing.assert_array_equal(diff[:, :, s["neighbour_mask"]], 0.0)
    # the distance to a column moves with the perceived position (unit gradient)
    assert std("obstacles", drone=0) == pytest.approx(noise.pos_sigma_m, rel=0.2)
    # noise without an rng, or an rng without noise, leaves the observation exact
    np.testing.assert_array_equal(_observe(k=4, noise=noise)[0], clean[:1])
    np.testing.assert_array_equal(_observe(k=4, rng=np.random.default_rng(2))[0], clean[:1])
