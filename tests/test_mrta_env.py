"""The MRTA world: presets, config errors, determinism, motion and the observation's
intention features (sim/mrta/)."""
import dataclasses

import numpy as np
import pytest

from sim.errors import ConfigError
from sim.mrta.allocators import greedy_actions
from sim.mrta.config import MRTAConfig, load_mrta_env
from sim.mrta.env import MRTAVecEnv
from sim.mrta.observation import REACH_CAP, TASK_FEATS, MRTALayout
from swarm_rl.evaluate import episode_rng


def test_mrta_paper_preset_mirrors_the_seed_paper():
    cfg = load_mrta_env("mrta_paper")
    assert cfg.world_size_m == (20.0, 20.0) and cfg.num_robots == 10
    assert cfg.initial_tasks == [4, 3, 3] and cfg.decision_steps == 100
    assert (cfg.view_range_m, cfg.comm_range_m, cfg.intention_discount) == (5.0, 8.0, 0.67)
    assert cfg.task_mode == "respawn"
    for name, rate in (("mrta_paper_arrival_001", 0.01), ("mrta_paper_arrival_004", 0.04)):
        arr = load_mrta_env(name)
        assert arr.task_mode == "arrival" and arr.arrival_rate == rate
        assert arr.arrival_region_m == (0.0, 0.0, 10.0, 10.0)  # one 10 x 10 quadrant


@pytest.mark.parametrize("env_text, field", [
    ("  view_range_m: -1.0\n", "env.view_range_m"),
    ("  task_mode: sometimes\n", "env.task_mode"),
    ("  colour: blue\n", "env.colour"),
    ("  initial_tasks: [1, 2]\n", "env.initial_tasks"),
    ("  num_robots: 2.5\n", "env.num_robots"),
])
def test_bad_preset_fields_are_named(tmp_path, env_text, field):
    path = tmp_path / "bad.yaml"
    path.write_text("kind: mrta\nenv:\n" + env_text)
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        load_mrta_env(path)


def test_bad_train_field_is_named(tmp_path):
    from swarm_rl.mrta.config import load_mrta_preset

    path = tmp_path / "bad.yaml"
    path.write_text("kind: mrta\nenv:\n  num_robots: 4\ntrain:\n  ppo:\n    lr: -1.0\n")
    with pytest.raises(ConfigError, match=r"ppo\.lr"):
        load_mrta_preset(path)
    with pytest.raises(ConfigError, match=r"ppo\.gamma"):
        load_mrta_preset("mrta_small", ["ppo.gamma=2"])


def run_greedy(cfg, seeds):
    env = MRTAVecEnv(cfg, len(seeds))
    obs = env.reset([episode_rng(s) for s in seeds])
    while True:
        step = env.step(greedy_actions(obs.obs, env.layout))
        obs = step.obs
        if step.done:
            return step.info["episode"]


def test_an_episode_depends_on_its_seed_only():
    cfg = load_mrta_env("mrta_small")
    together = run_greedy(cfg, [5, 6, 7])
    alone = run_greedy(cfg, [6])
    assert together["return"][1] == alone["return"][0]
    assert together["travel_per_robot_m"][1] == alone["travel_per_robot_m"][0]
    assert run_greedy(cfg, [6])["return"][0] == alone["return"][0]


def test_robots_keep_their_separation_and_still_form_a_level_three_coalition():
    cfg = MRTAConfig(world_size_m=(10.0, 10.0), num_robots=3, initial_tasks=[0, 0, 1],
                     max_tasks=2, task_mode="arrival", arrival_rate=0.0,
                     arrival_region_m=(-5.0, -5.0, 5.0, 5.0), decision_steps=12,
                     view_range_m=20.0, comm_range_m=20.0, task_slots=2,
                     neighbour_slots=2).validate()
    env = MRTAVecEnv(cfg, 1)
    env.reset([0])
    env.robot_xy[0] = [[-4.0, -4.0], [4.0, -4.0], [0.0, 4.0]]
    env.tasks.xy[0, 0] = [0.0, 0.0]
    total, closest = 0.0, np.inf
    for _ in range(8):
        step = env.step_targets(np.where(env.tasks.active[:, :1], 0, -1).repeat(3, axis=1))
        total += step.reward[0]
        d = np.linalg.norm(env.robot_xy[0, :, None] - env.robot_xy[0, None], axis=-1)
        closest = min(closest, d[~np.eye(3, dtype=bool)].min())
        if total:
            break
    assert total == 9.0
    assert closest >= cfg.separation_m - 1e-6


def test_intention_features_count_neighbours_heading_to_a_task_and_vanish_without_sharing():
    base = dict(world_size_m=(10.0, 10.0), num_robots=2, initial_tasks=[0, 1, 0], max_tasks=2,
                task_mode="arrival", arrival_rate=0.0, arrival_region_m=(-5.0, -5.0, 5.0, 5.0),
                view_range_m=5.0, comm_range_m=8.0, task_slots=2, neighbour_slots=1)
    for sharing in (True, False):
        cfg = MRTAConfig(intention_sharing=sharing, **base).validate()
        env = MRTAVecEnv(cfg, 1)
        env.reset([0])
        env.robot_xy[0] = [[0.0, 0.0], [3.2, 0.0]]
        env.tasks.xy[0, 0] = [1.0, 0.0]
        env.target[0] = [-1, 0]  # robot 2 heads to the task, 2.2 m away: eta 3 steps
        obs = env.observe().obs[0, 0]
        layout = MRTALayout.of(cfg)
        task0 = obs[layout.slices["tasks"]].reshape(2, TASK_FEATS)[0]
        nb = obs[layout.slices["neighbours"]].reshape(1, 6)[0]
        if sharing:
            assert task0[7] == pytest.approx(0.67 ** 3)
            assert task0[8] == pytest.approx(1 / 3) and task0[9] == pytest.approx(1 / 3)
            assert nb[2] == 1.0 and nb[3] == pytest.approx(1.0 / 8.0)
        else:
            assert task0[7] == task0[8] == 0.0 and task0[9] == pytest.approx(2 / 3)
            assert nb[2] == nb[3] == nb[5] == 0.0
        assert nb[0] == pytest.approx(3.2 / 8.0)  # positions come with odometry either way


def test_a_masked_choice_is_refused():
    env = MRTAVecEnv(load_mrta_env("mrta_small"), 1)
    obs = env.reset([1])
    bad = np.argmin(obs.action_mask, axis=-1)  # an illegal slot where one exists
    assert not obs.action_mask[0, 0, bad[0, 0]], "seed 1 draws a robot with a masked slot"
    with pytest.raises(ValueError, match="action mask"):
        env.step(bad)


def test_a_task_named_in_a_heard_intention_is_choosable_beyond_view_range():
    base = dict(world_size_m=(20.0, 20.0), num_robots=2, initial_tasks=[0, 0, 1], max_tasks=2,
                task_mode="arrival", arrival_rate=0.0, arrival_region_m=(0.0, 0.0, 10.0, 10.0),
                view_range_m=5.0, comm_range_m=8.0, task_slots=2, neighbour_slots=1)
    for sharing in (True, False):
        cfg = MRTAConfig(intention_sharing=sharing, **base).validate()
        env = MRTAVecEnv(cfg, 1)
        env.reset([0])
        env.robot_xy[0] = [[-4.0, 0.0], [3.0, 0.0]]
        env.tasks.xy[0, 0] = [3.5, 0.0]  # 7.5 m from robot 1: out of its view
        env.target[0] = [-1, 0]
        obs = env.observe()
        env.last_obs = obs
        known = obs.slot_task[0, 0].tolist()
        assert known == ([0, -1] if sharing else [-1, -1])
        if sharing:  # robot 1 can join robot 2's task
            assert env.actions_to_targets(np.array([[0, 2]]))[0, 0] == 0


def test_layout_5_gives_each_task_its_coalition_reach_and_nearest_neighbour():
    """Three robots on a line, one level-3 task 4 m above robot 1. Robot 1 knows robot 2
    (3 m away) but not robot 3 (10 m, beyond the 8 m radio range): two robots known, too few
    for the task (reach capped). Robot 2 knows both: its coalition's slowest member is robot 3,
    10.77 m from the task. Robot 3 knows robot 2 only, and knows the task through robot 2's
    sighting."""
    cfg = MRTAConfig(world_size_m=(30.0, 20.0), num_robots=3, initial_tasks=[0, 0, 1],
                     max_tasks=2, task_mode="arrival", arrival_rate=0.0,
                     arrival_region_m=(0.0, 0.0, 10.0, 10.0), view_range_m=5.0,
                     comm_range_m=8.0, task_slots=2, neighbour_slots=2,
                     obs_layout=5).validate()
    env = MRTAVecEnv(cfg, 1)
    env.reset([0])
    env.robot_xy[0] = [[0.0, 0.0], [3.0, 0.0], [10.0, 0.0]]
    env.tasks.xy[0, 0] = [0.0, 4.0]
    env.target[0] = [-1, -1, -1]
    obs = env.observe()
    assert (obs.slot_task[0, :, 0] == 0).all()
    feats = obs.obs[0][:, MRTALayout.of(cfg).slices["tasks"]].reshape(3, 2, -1)[:, 0, 14:]
    np.testing.assert_allclose(feats, [[REACH_CAP, 5.0 / 5.0],
                                       [np.hypot(10.0, 4.0) / 5.0, 4.0 / 5.0],
                                       [REACH_CAP, 5.0 / 5.0]], atol=1e-6)
    old = dataclasses.replace(cfg, obs_layout=4)
    env.cfg, env.layout = old, MRTALayout.of(old)
    v4, sl4, sl5 = env.observe().obs[0], MRTALayout.of(old).slices, MRTALayout.of(cfg).slices
    for part in sl4:  # everything else is layout 4's
        a, b = v4[:, sl4[part]], obs.obs[0][:, sl5[part]]
        if part == "tasks":
            a, b = a.reshape(3, 2, -1), b.reshape(3, 2, -1)[..., :14]
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("layout, sharing, robot_2_x, known", [
    (4, True, 3.0, True),     # robot 2 (in radio range) sees the task: shared sighting
    (3, True, 3.0, False),    # layout 3: only own sightings and heard intentions
    (4, False, 3.0, False),   # sharing off: nothing is told
    (4, True, 5.0, False),    # robot 2 sees it but is 9 m away, beyond comm range
])
def test_layout_4_knows_the_tasks_a_neighbour_in_radio_range_sees(layout, sharing, robot_2_x,
                                                                  known):
    cfg = MRTAConfig(world_size_m=(20.0, 20.0), num_robots=2, initial_tasks=[1, 0, 0],
                     max_tasks=2, task_mode="arrival", arrival_rate=0.0,
                     arrival_region_m=(0.0, 0.0, 10.0, 10.0), view_range_m=5.0,
                     comm_range_m=8.0, task_slots=2, neighbour_slots=1, obs_layout=layout,
                     intention_sharing=sharing).validate()
    env = MRTAVecEnv(cfg, 1)
    env.reset([0])
    env.robot_xy[0] = [[-4.0, 0.0], [robot_2_x, 0.0]]
    env.tasks.xy[0, 0] = [4.0, 3.0]  # 8.5 m from robot 1; robot 2 sees it, targets nothing
    env.target[0] = [-1, -1]
    obs = env.observe()
    assert obs.slot_task[0, 0].tolist() == ([0, -1] if known else [-1, -1])
    assert obs.slot_task[0, 1].tolist() == [0, -1]  # robot 2 sees it itself
    if known:  # the relayed task is offered with its true geometry
        task0 = obs.obs[0, 0][MRTALayout.of(cfg).slices["tasks"]].reshape(2, -1)[0]
        np.testing.assert_allclose(task0[:3], np.array([8.0, 3.0, np.hypot(8.0, 3.0)]) / 5.0,
                                   atol=1e-6)
