"""Observation layout 3 (coalition features) and negotiation rounds (several intention
exchanges per decision step): sim/mrta/observation.py, sim/mrta/env.py, the trainer, export
and evaluation."""
import dataclasses
from pathlib import Path

import numpy as np
import pytest

from sim.errors import ConfigError
from sim.mrta.config import MRTAConfig, load_mrta_env
from sim.mrta.env import MRTAVecEnv
from sim.mrta.observation import MRTALayout
from swarm_rl.mrta.config import load_mrta_preset

REPO = Path(__file__).resolve().parents[1]


def line_world(**kw):
    """One level-3 task at the origin and four robots, everything in view and range."""
    base = dict(world_size_m=(20.0, 20.0), num_robots=4, initial_tasks=[0, 0, 1], max_tasks=2,
                task_mode="arrival", arrival_rate=0.0, arrival_region_m=(-5.0, -5.0, 5.0, 5.0),
                view_range_m=9.0, comm_range_m=9.0, task_slots=2, neighbour_slots=3,
                obs_layout=3)
    base.update(kw)
    cfg = MRTAConfig(**base).validate()
    env = MRTAVecEnv(cfg, 1)
    env.reset([0])
    env.tasks.xy[0, 0] = [0.0, 0.0]
    # robot 0 is 3 m away; robot 1 heads there from 2 m (eta 2), robot 2 from 5 m (eta 5);
    # robot 3 has no target and is 1 m away.
    env.robot_xy[0] = [[3.0, 0.0], [0.0, 2.0], [-5.0, 0.0], [0.0, -1.0]]
    env.target[0] = [-1, 0, 0, -1]
    return cfg, env


def task_row(cfg, obs, robot=0, slot=0):
    layout = MRTALayout.of(cfg)
    rows = obs.obs[0, robot, layout.slices["tasks"]].reshape(cfg.task_slots, -1)
    return rows[slot]


def test_layout_three_adds_the_order_robots_would_reach_a_task_in():
    cfg, env = line_world()
    row = task_row(cfg, env.observe())
    assert row.shape == (14,)
    assert row[8] == pytest.approx(2 / 3)   # two neighbours heading there (layout 2 part)
    assert row[10] == pytest.approx(1 / 3)  # only robot 1 (eta 2 <= my 3) arrives before me
    assert row[11] == pytest.approx(2 / 3)  # so two of the three places are still mine to take
    assert row[12] == pytest.approx(1 / 3)  # robot 3: no target, closer than me
    assert row[13] == pytest.approx(2 / 3)  # robots 1 and 3 are closer; robot 2 is not
    # Without sharing nothing intention-derived is left; positions still order the robots.
    cfg_off, env_off = line_world(intention_sharing=False)
    row = task_row(cfg_off, env_off.observe())
    assert row[10] == row[12] == 0.0 and row[11] == pytest.approx(1.0)
    assert row[13] == pytest.approx(2 / 3)


def test_layout_two_is_still_built_for_old_policies():
    cfg, env = line_world(obs_layout=2)
    assert MRTALayout.of(cfg).task_feats == 10
    assert env.observe().obs.shape[-1] == MRTALayout(2, 3, 2).dim
    assert MRTALayout(2, 3, 3).dim == MRTALayout(2, 3, 2).dim + 2 * 4
    with pytest.raises(ValueError, match="layout v7"):
        MRTALayout(2, 3, 7)


@pytest.mark.parametrize("field, value", [("negotiation_rounds", 0), ("obs_layout", 6)])
def test_bad_negotiation_and_layout_fields_are_named(field, value):
    with pytest.raises(ConfigError, match=field):
        MRTAConfig(**{field: value}).validate()


def test_a_negotiation_round_announces_without_moving_and_the_step_acts_on_the_last():
    cfg, env = line_world(negotiation_rounds=3)
    obs0 = env.observe()
    env.last_obs = obs0
    xy, target = env.robot_xy.copy(), env.target.copy()
    # Round 1: everybody announces the task (slot 0 is the task for all four robots).
    assert (obs0.slot_task[0, :, 0] == 0).all()
    obs1 = env.propose(np.zeros((1, 4), int))
    assert np.array_equal(env.robot_xy, xy) and np.array_equal(env.target, target)
    row = task_row(cfg, obs1)
    assert row[6] == 1.0                    # its own announcement is its current choice
    assert row[8] == pytest.approx(1.0)     # it hears the three others heading there
    assert row[10] == pytest.approx(2 / 3)  # robots 1 (2 m) and 3 (1 m) arrive before it
    # Round 2: everybody announces "no task"; the task is then no longer heard of.
    obs2 = env.propose(np.full((1, 4), cfg.task_slots))
    assert task_row(cfg, obs2)[8] == 0.0 and task_row(cfg, obs2)[6] == 0.0
    calls = []

    def choose(obs):
        calls.append(obs)
        return np.zeros((1, 4), int)

    env.last_obs = obs0
    final_obs, actions = env.negotiate(choose)
    assert len(calls) == 3 and final_obs is env.last_obs
    env.step(actions)
    assert (env.target[0] == 0).all()  # all four act on the last round's choice


def test_negotiation_keeps_the_revision_off_lock_on_committed_targets_only():
    cfg, env = line_world(negotiation_rounds=2, revision=False)
    env.last_obs = env.observe()
    obs = env.propose(np.array([[0, 0, 0, 0]]))  # robot 0 and 3 choose the task tentatively
    mask = obs.action_mask[0]
    assert mask[1].tolist() == [True, False, False] and mask[2].tolist() == [True, False, False]
    assert mask[0].sum() > 1 and mask[3].sum() > 1  # not committed: still free to choose


def test_mix_presets_get_the_runs_layout_and_rounds():
    cfg = load_mrta_preset("mrta_paper", ["env.obs_layout=3", "env.negotiation_rounds=2"])
    assert cfg.env.obs_layout == 3 and cfg.env.negotiation_rounds == 2
    assert all(m.obs_layout == 3 and m.negotiation_rounds == 2 for m in cfg.mix_envs)


def test_mix_presets_get_the_runs_market_so_that_a_run_clones_one_teacher():
    cfg = load_mrta_preset("mrta_room_8", ["env.market_lambda=0.25"])
    assert cfg.mix_envs and all(m.market_lambda == 0.25 for m in cfg.mix_envs)


def test_rounds_policy_trains_exports_and_evaluates_with_its_own_rounds(tmp_path):
    from swarm_rl.mrta.evaluate import policy_methods, run_method
    from swarm_rl.mrta.export import export_task_policy
    from swarm_rl.mrta.onnx_policy import TaskPolicy
    from swarm_rl.mrta.train import MRTATrainer

    cfg = load_mrta_preset("mrta_small", ["total_steps=320", "ppo.num_envs=2",
                                          "env.obs_layout=3", "env.negotiation_rounds=2"])
    MRTATrainer(cfg, tmp_path / "run").train(progress_bar=False)
    export_task_policy(tmp_path / "run", tmp_path / "p.onnx")
    policy = TaskPolicy(tmp_path / "p.onnx")
    assert policy.metadata["obs_layout_version"] == "3" and policy.negotiation_rounds == 2
    plain = load_mrta_env("mrta_small")  # layout 2, one round: evaluation uses the policy's
    methods = policy_methods(tmp_path / "p.onnx", plain, ablations=True)
    labels = [m.label for m in methods]
    assert labels == ["p", "p, revision off", "p, one negotiation round",
                      "p, sharing off at test time"]
    assert methods[0].cfg.obs_layout == 3 and methods[0].cfg.negotiation_rounds == 2
    assert methods[2].cfg.negotiation_rounds == 1
    result = run_method(methods[0], [0], 2, progress=False)
    assert result.switches["negotiation_rounds"] == 2
    # The layout-2 policy still loads and is evaluated in layout 2, one round.
    old = policy_methods(REPO / "policies" / "mrta_paper_no_sharing.onnx",
                         load_mrta_env("mrta_paper"), ablations=False)
    assert old[0].cfg.obs_layout == 2 and old[0].cfg.negotiation_rounds == 1
    with pytest.raises(Exception, match="obs_layout"):
        policy.check_compatible(dataclasses.replace(plain, obs_layout=2))


def test_the_robot_that_arrives_after_a_full_coalition_is_redundant():
    cfg, env = line_world()
    env.target[0] = [0, 0, 0, 0]  # etas 3, 2, 5, 1 for a level-3 task
    assert env.redundant()[0].tolist() == [False, False, True, False]
    env.target[0] = [0, 0, -1, -1]
    assert not env.redundant().any()


def test_redundancy_shaping_is_a_per_robot_potential(tmp_path):
    from swarm_rl.mrta.train import MRTATrainer

    with pytest.raises(ConfigError, match="redundancy_shaping"):
        load_mrta_preset("mrta_small", ["redundancy_shaping=-1"])
    cfg = load_mrta_preset("mrta_small", ["ppo.num_envs=1", "redundancy_shaping=0.5"])
    trainer = MRTATrainer(cfg, tmp_path / "run")
    env = trainer.env
    env.target[0] = [0, 0, 0, -1]
    env.robot_xy[0, :3] = env.tasks.xy[0, 0] + np.array([[1.0, 0.0], [2.0, 0.0], [3.0, 0.0]])
    level = env.tasks.level[0, 0]
    phi = trainer._potential()
    assert phi.tolist() == [0.0] * level + [-0.5] * (3 - level) + [0.0]


@pytest.mark.parametrize("revision", [True, False])
def test_robot_decision_api_builds_a_negotiation_rounds_observation(revision):
    from sim.mrta.decide import Task, choose_target, make_intention, observe_robot

    cfg, env = line_world(negotiation_rounds=2, revision=revision)
    env.tasks.xy[0, 1], env.tasks.level[0, 1] = [2.0, 2.0], 1
    env.tasks.active[0, 1], env.tasks.uid[0, 1] = True, 7
    env.last_obs = env.observe()
    slot_of_task = lambda i, m: int(np.flatnonzero(env.last_obs.slot_task[0, i] == m)[0])  # noqa
    # robot 1 is committed to task 0: without revision it may only keep it
    actions = np.array([[slot_of_task(0, 1), slot_of_task(1, 1) if revision else 0, 0, 0]])
    tentative = env.actions_to_targets(actions)[0]
    obs = env.propose(actions)
    uid = {m: int(env.tasks.uid[0, m]) for m in (0, 1)}
    tasks = [Task(uid[m], (*env.tasks.xy[0, m], cfg.flight_height_m),
                  int(env.tasks.level[0, m])) for m in (0, 1)]
    pos3 = lambda xy: np.array([*xy, cfg.flight_height_m])  # noqa: E731
    for i in range(4):
        heard = [make_intention(f"cf{k}", 1.0, pos3(env.robot_xy[0, k]), uid[tentative[k]],
                                tasks, cfg) for k in range(4) if k != i]
        committed = int(env.target[0, i])
        own = uid[tentative[i]] if revision or committed < 0 else uid[committed]
        ro = observe_robot(pos3(env.robot_xy[0, i]), own, tasks, heard, cfg,
                           locked=committed >= 0)
        np.testing.assert_allclose(ro.obs, obs.obs[0, i], atol=1e-6)
        assert choose_target(pos3(env.robot_xy[0, i]), own, tasks, heard, cfg,
                             locked=committed >= 0) in (uid[0], uid[1], -1)
