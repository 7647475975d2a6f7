"""Coalition completion rules on hand-made cases (sim/mrta/coalition.py) and their effect
in the environment (release of robots, respawn, arrivals)."""
import numpy as np
import pytest

from sim.mrta.coalition import NO_TARGET, complete
from sim.mrta.config import MRTAConfig
from sim.mrta.env import MRTAVecEnv
from sim.mrta.tasks import TaskTable, replenish

R = 0.5


def one_env(robots, targets, tasks, levels, active=None):
    robots = np.asarray(robots, float)[None]
    targets = np.asarray(targets)[None]
    tasks = np.asarray(tasks, float)[None]
    levels = np.asarray(levels)[None]
    active = np.ones(levels.shape, bool) if active is None else np.asarray(active)[None]
    return complete(robots, targets, tasks, levels, active, R)


def test_level_two_needs_two_servers_at_once():
    alone = one_env([[0.0, 0.0], [5.0, 5.0]], [0, 0], [[0.1, 0.0]], [2])
    assert not alone.completed.any() and alone.reward[0] == 0.0
    together = one_env([[0.0, 0.0], [0.3, 0.0]], [0, 0], [[0.1, 0.0]], [2])
    assert together.completed[0].tolist() == [True]
    assert together.reward[0] == 4.0
    assert together.served[0].tolist() == [True, True]
    assert together.by_level[0].tolist() == [0, 1, 0]


def test_robot_nearby_but_targeting_another_task_does_not_count():
    result = one_env([[0.0, 0.0], [0.2, 0.0]], [0, 1], [[0.1, 0.0], [8.0, 8.0]], [2, 1])
    assert not result.completed.any()
    assert result.reward[0] == 0.0


def test_radius_is_inclusive_and_just_outside_does_not_count():
    on_edge = one_env([[R, 0.0]], [0], [[0.0, 0.0]], [1])
    outside = one_env([[R + 0.01, 0.0]], [0], [[0.0, 0.0]], [1])
    assert on_edge.reward[0] == 1.0 and outside.reward[0] == 0.0


def test_extra_robots_are_released_and_reward_is_level_squared():
    result = one_env([[0.0, 0.0], [0.3, 0.0], [0.0, 0.3], [0.2, 0.2]], [0, 0, 0, 0],
                     [[0.1, 0.1]], [3])
    assert result.reward[0] == 9.0
    assert result.served[0].all()


def test_two_tasks_in_one_step_sum_their_rewards_and_inactive_tasks_never_complete():
    result = one_env([[0.0, 0.0], [5.0, 5.0], [5.2, 5.0], [9.0, 9.0]], [0, 1, 1, 2],
                     [[0.0, 0.0], [5.1, 5.0], [9.0, 9.0]], [1, 2, 1], [True, True, False])
    assert result.completed[0].tolist() == [True, True, False]
    assert result.reward[0] == 1.0 + 4.0
    assert result.served[0].tolist() == [True, True, True, False]


def test_robots_without_target_never_serve():
    result = one_env([[0.0, 0.0]], [NO_TARGET], [[0.0, 0.0]], [1])
    assert result.reward[0] == 0.0 and not result.served.any()


def small_cfg(**kw):
    base = dict(world_size_m=(10.0, 10.0), num_robots=3, initial_tasks=[1, 1, 0], max_tasks=6,
                decision_steps=20, view_range_m=20.0, comm_range_m=20.0, task_slots=4,
                neighbour_slots=2)
    base.update(kw)
    return MRTAConfig(**base).validate()


def test_env_completion_releases_every_robot_heading_there_and_respawns_same_level():
    env = MRTAVecEnv(small_cfg(), 1)
    env.reset([3])
    l1 = int(np.flatnonzero(env.tasks.level[0] == 1)[0])
    env.robot_xy[0] = [env.tasks.xy[0, l1], env.tasks.xy[0, l1] + [3.0, 0.0], [4.0, 4.0]]
    env.robot_xy[0, 1] = np.clip(env.robot_xy[0, 1], -5, 5)
    old_uid = env.tasks.uid[0, l1]
    step = env.step_targets(np.array([[l1, l1, NO_TARGET]]))
    assert step.reward[0] == 1.0
    assert env.target[0].tolist() == [NO_TARGET, NO_TARGET, NO_TARGET]  # en-route one too
    assert env.tasks.active[0, l1] and env.tasks.level[0, l1] == 1
    assert env.tasks.uid[0, l1] != old_uid
    assert sorted(env.tasks.level[0][env.tasks.active[0]].tolist()) == [1, 2]


def test_no_revision_keeps_targets_until_completion():
    env = MRTAVecEnv(small_cfg(revision=False), 1)
    env.reset([4])
    l1, l2 = (int(np.flatnonzero(env.tasks.level[0] == lv)[0]) for lv in (1, 2))
    env.step_targets(np.array([[l2, NO_TARGET, NO_TARGET]]))
    env.step_targets(np.array([[l1, l1, NO_TARGET]]))
    assert env.target[0, 0] == l2  # kept: revision is off
    obs = env.observe()
    assert obs.action_mask[0, 0].tolist() == [True, False, False, False, False]


@pytest.mark.parametrize("rate", [0.01, 0.04])
def test_arrivals_follow_the_rate_per_free_square_metre(rate):
    cfg = small_cfg(task_mode="arrival", arrival_rate=rate, max_tasks=200,
                    arrival_region_m=(0.0, 0.0, 5.0, 5.0), task_min_spacing_m=0.0)
    rngs = [np.random.default_rng([7, e]) for e in range(200)]
    table = TaskTable.empty(200, cfg.max_tasks)
    replenish(table, cfg, np.zeros((200, cfg.max_tasks), bool), rngs)
    arrived = table.active.sum(axis=1)
    expected = rate * 25.0
    assert abs(arrived.mean() - expected) < 4 * np.sqrt(expected / 200)
    inside = table.xy[table.active]
    assert (inside >= 0).all() and (inside <= 5).all()
    assert set(table.level[table.active].tolist()) <= {1, 2}  # weights [1, 1, 0]
