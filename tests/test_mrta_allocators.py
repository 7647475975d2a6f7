"""Greedy and market allocators on small cases with known best answers, and the deploy-side
decision API (sim/mrta/decide.py) against the simulator's own observation."""
import itertools

import numpy as np
import pytest

from sim.errors import ConfigError
from sim.mrta.allocators import greedy_actions, market_env
from sim.mrta.coalition import NO_TARGET
from sim.mrta.config import MRTAConfig
from sim.mrta.decide import (Task, choose_target, make_intention, market_assign,
                             observe_robot)
from sim.mrta.env import MRTAVecEnv
from sim.mrta.intention import Intention
from swarm_rl.mrta.evaluate import greedy_allocator, market_allocator


def cfg_for(**kw):
    base = dict(world_size_m=(10.0, 10.0), num_robots=2, initial_tasks=[1, 1, 0],
                max_tasks=4, task_mode="arrival", arrival_rate=0.0,
                arrival_region_m=(-5.0, -5.0, 5.0, 5.0), decision_steps=4, view_range_m=20.0,
                comm_range_m=20.0, task_slots=4, neighbour_slots=2, separation_m=0.3)
    base.update(kw)
    return MRTAConfig(**base).validate()


def staged_env(cfg, robots, tasks, levels):
    """One environment with hand-placed robots and tasks (no arrivals: rate 0)."""
    env = MRTAVecEnv(cfg, 1)
    env.reset([0])
    env.robot_xy[0] = robots
    m = cfg.max_tasks
    env.tasks.active[0] = False
    env.tasks.level[0] = 0
    for j, (xy, lv) in enumerate(zip(tasks, levels)):
        env.tasks.xy[0, j], env.tasks.level[0, j], env.tasks.active[0, j] = xy, lv, True
        env.tasks.uid[0, j] = j
    assert len(tasks) <= m
    env.last_obs = env.observe()
    return env


def episode_return(env, allocator):
    obs, total = env.last_obs, 0.0
    for _ in range(env.cfg.decision_steps):
        step = env.step_targets(allocator(env, obs))
        total += float(step.reward[0])
        obs = step.obs
        if step.done:
            break
    return total


def best_static_return(cfg, robots, tasks, levels):
    """Brute force over every fixed assignment of robots to tasks (or none) for the whole
    episode: the known best answer on these small cases."""
    robots, tasks = np.asarray(robots), np.asarray(tasks)
    best = 0.0
    for plan in itertools.product(range(-1, len(tasks)), repeat=len(robots)):
        total = 0.0
        for m, lv in enumerate(levels):
            crew = [i for i, p in enumerate(plan) if p == m]
            if len(crew) >= lv:
                gaps = [np.linalg.norm(robots[i] - tasks[m]) - cfg.completion_radius_m
                        for i in crew]
                eta = max(np.ceil(max(g, 0.0) / cfg.step_length_m - 1e-9) for g in gaps)
                total += lv ** 2 if eta <= cfg.decision_steps else 0.0
        best = max(best, total)
    return best


ROBOTS = [[-4.0, 0.0], [4.0, 0.0]]
TASKS = [[0.0, 0.0], [-4.0, -1.0]]  # a level-2 task between the robots, a level-1 by one
LEVELS = [2, 1]


def test_market_forms_the_coalition_the_greedy_robot_misses():
    cfg = cfg_for()
    best = best_static_return(cfg, ROBOTS, TASKS, LEVELS)
    assert best == 4.0
    assert episode_return(staged_env(cfg, ROBOTS, TASKS, LEVELS), market_allocator) == best
    # Greedy: robot 1 takes the level-1 task next to it (1, step 1) and reaches the level-2
    # task, where the other waits, only at step 5: one step too late.
    assert episode_return(staged_env(cfg, ROBOTS, TASKS, LEVELS), greedy_allocator) == 1.0


def test_greedy_is_best_for_one_robot_and_level_one_tasks():
    cfg = cfg_for(num_robots=1, initial_tasks=[2, 0, 0], decision_steps=4)
    robots, tasks, levels = [[0.0, 0.0]], [[1.5, 0.0], [-2.5, 0.0]], [1, 1]
    env = staged_env(cfg, robots, tasks, levels)
    # Nearest first: 1.5 m (step 1), then 4 m back (steps 2-4): both within 4 steps.
    assert episode_return(env, greedy_allocator) == 2.0
    assert best_static_return(cfg, robots, tasks, levels) == 1.0  # a fixed plan does only one


def test_market_needs_a_manager_in_radio_range_of_the_bidders():
    cfg = cfg_for(view_range_m=3.0, comm_range_m=3.0, decision_steps=6)
    robots, tasks, levels = [[-4.0, 0.0], [4.0, 0.0]], [[-3.0, 0.0]], [2]
    out = market_env(np.array(robots), np.array([NO_TARGET] * 2), np.array(tasks),
                     np.array(levels), np.ones(1, bool), cfg)
    assert out.tolist() == [NO_TARGET, NO_TARGET]  # the far robot never hears of the task
    near = cfg_for(view_range_m=3.0, comm_range_m=10.0)
    out = market_env(np.array(robots), np.array([NO_TARGET] * 2), np.array(tasks),
                     np.array(levels), np.ones(1, bool), near)
    assert out.tolist() == [0, 0]


@pytest.mark.parametrize("lam, expected", [
    (0.1, [1, 1, 1]),  # 9 exp(-0.1 x 2.06) = 7.3 beats 1 exp(-0.1 x 1) = 0.9
    (3.0, [0, NO_TARGET, NO_TARGET]),  # 9 exp(-3 x 2.06) = 0.019 loses to exp(-3) = 0.050,
])                                     # and two robots left cannot form the level-3 coalition
def test_market_prefers_the_higher_fitness_coalition(lam, expected):
    cfg = cfg_for(num_robots=3, initial_tasks=[1, 0, 1], market_lambda=lam)
    robots = np.array([[0.0, 0.0], [0.5, 0.0], [1.0, 0.0]])
    tasks = np.array([[0.0, 1.0], [0.5, 2.0]])  # L1 at ~1 m, L3 at ~2 m from everyone
    out = market_env(robots, np.full(3, NO_TARGET), tasks, np.array([1, 3]), np.ones(2, bool),
                     cfg)
    assert out.tolist() == expected


def test_market_lambda_must_be_a_number_at_least_zero():
    for bad in (-0.1, float("nan")):
        with pytest.raises(ConfigError, match="market_lambda: must be >= 0"):
            cfg_for(market_lambda=bad)


@pytest.mark.parametrize("layout", [2, 3, 4, 5])
def test_robot_decision_api_sees_what_the_simulator_sees(layout):
    cfg = MRTAConfig(obs_layout=layout).validate()
    env = MRTAVecEnv(cfg, 1)
    env.reset([11])
    rng = np.random.default_rng(0)
    for _ in range(5):  # a few random steps so robots hold targets
        mask = env.last_obs.action_mask
        env.step(np.where(mask, rng.random(mask.shape), -1).argmax(-1))
    tasks = [Task(int(env.tasks.uid[0, m]), (*env.tasks.xy[0, m], cfg.flight_height_m),
                  int(env.tasks.level[0, m])) for m in np.flatnonzero(env.tasks.active[0])]
    slot_of = {int(env.tasks.uid[0, m]): m for m in np.flatnonzero(env.tasks.active[0])}
    uid_of = {m: u for u, m in slot_of.items()}
    heard = env.heard()[0]
    pos3 = lambda xy: np.array([*xy, cfg.flight_height_m])  # noqa: E731
    for i in range(cfg.num_robots):
        intentions = []
        for k in np.flatnonzero(heard[i]):
            target = int(env.target[0, k])
            tid = uid_of[target] if target >= 0 else -1
            intentions.append(make_intention(f"cf{k + 1}", 1.0, pos3(env.robot_xy[0, k]), tid,
                                             tasks, cfg))
        own_tid = uid_of.get(int(env.target[0, i]), -1)
        ro = observe_robot(pos3(env.robot_xy[0, i]), own_tid, tasks, intentions, cfg,
                           time_left_frac=1.0 - env.step_count / cfg.decision_steps)
        np.testing.assert_allclose(ro.obs, env.last_obs.obs[0, i], atol=1e-6)
        sim_ids = [uid_of[s] if s >= 0 else -1 for s in env.last_obs.slot_task[0, i]]
        assert list(ro.slot_ids) == sim_ids
        greedy = int(greedy_actions(env.last_obs.obs[0, i][None], env.layout)[0])
        expect = -1 if greedy == cfg.task_slots else sim_ids[greedy]
        assert choose_target(pos3(env.robot_xy[0, i]), own_tid, tasks, intentions, cfg) \
            == expect


def test_market_assign_names_robots_and_task_ids():
    cfg = cfg_for()
    tasks = [Task(17, (0.0, 0.0, 1.0), 2), Task(4, (-4.0, -1.0, 1.0), 1)]
    out = market_assign({"cf1": np.array([-4.0, 0.0, 1.0]), "cf2": np.array([4.0, 0.0, 1.0])},
                        {}, tasks, cfg)
    assert out == {"cf1": 17, "cf2": 17}


def test_intention_of_a_robot_without_target_is_a_one_point_hold():
    cfg = cfg_for()
    msg = make_intention("cf3", 2.0, np.array([1.0, 1.0, 1.0]), 99, [], cfg)
    assert isinstance(msg, Intention) and msg.target_id == -1 and msg.path_m.shape == (1, 3)
