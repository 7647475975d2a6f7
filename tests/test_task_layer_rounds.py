"""Negotiation rounds in the robot node's task layer (ros_nodes/task_layer.py), over real DDS
(loopback, multicast off): R tentative intentions per decision step, the goal set on the last
round only, and the same decisions as the simulator's environment (sim/mrta/env.py) with the
shipped policy and its three rounds.

The clock is the test's (the transport's ``now_s`` replaced), and each round waits until its
messages are delivered, so nothing here depends on timing margins."""
import copy
import dataclasses
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from ros_nodes import messages as m
from ros_nodes.dds_transport import DdsTransport
from ros_nodes.task_layer import TaskLayer, coalition_slot
from ros_nodes.task_messages import (encode_tasks, intention_from_path, intention_round,
                                     intention_to_path)
from ros_nodes.task_server import TaskServer, TaskServerParams
from ros_nodes.transport import QosKind, robot_topic
from sim.mrta.config import load_mrta_env
from sim.mrta.decide import Task, make_intention
from sim.mrta.env import MRTAVecEnv
from swarm_rl.mrta.onnx_policy import TaskPolicy
from swarm_rl.runtime.neighbours import NeighbourTable

REPO = Path(__file__).resolve().parents[1]
POLICY = REPO / "policies" / "mrta_paper.onnx"
WAIT_S = 10.0


class Clock:
    def __init__(self, t: float = 0.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def fake_host(transport: DdsTransport, names: list[str], table=None) -> SimpleNamespace:
    """What the task layer needs of a RobotHost: hosted robots (own state, goal, intention
    publisher) and, optionally, the odometry table."""
    robots = {n: SimpleNamespace(name=n, own=None, goal_m=None, intention_pub=transport
                                 .create_publisher(m.Path, robot_topic(n, "intention"),
                                                   QosKind.COMMAND))
              for n in names}
    return SimpleNamespace(robots=robots, table=table)


def place(robot, xyz) -> None:
    robot.own = SimpleNamespace(pos_m=np.asarray(xyz, float))


def spin_until(transports, done, what: str) -> None:
    for _ in range(int(WAIT_S / 0.01)):
        if done():
            return
        for t in transports:
            t.spin_until(lambda: False, 0.01)
    assert done(), f"timed out waiting for {what}"


def received(layer: TaskLayer, r: int) -> int:
    inbox = layer.inbox if r == layer.rounds else layer.tentative[r]
    return inbox.counts["received"]


def wait_matched(transports, pubs_and_subs) -> None:
    spin_until(transports, lambda: all(t.matched(e) > 0 for t, e in pubs_and_subs),
               "DDS matching")


def test_task_layer_sends_r_tentative_intentions_and_sets_the_goal_on_the_last_round():
    dom = 100 + (os.getpid() * 7 + 29) % 120
    cfg = load_mrta_env("mrta_paper")  # three negotiation rounds (greedy: the preset's)
    assert cfg.negotiation_rounds == 3
    near_a, near_b = Task(3, (2.0, 1.0, 1.0), 2), Task(9, (-3.0, 0.5, 1.0), 1)
    tasks = [near_a, near_b]
    host_t, peer = DdsTransport("host", domain_id=dom), DdsTransport("peer", domain_id=dom)
    clock = Clock(100.0)
    host_t.now_s = clock
    peer.now_s = clock
    try:
        host = fake_host(host_t, ["cf1"])
        layer = TaskLayer(host_t, host, ["cf1", "cf2"], cfg, "greedy")
        assert layer.rounds == 3 and layer.round_dt_s == pytest.approx(1.0 / 3)
        tasks_pub = peer.create_publisher(m.String, "/swarm/tasks", QosKind.LATCHED)
        cf2 = peer.create_publisher(m.Path, "/cf2/intention", QosKind.COMMAND)
        seen: list[m.Path] = []
        watch = peer.create_subscription(m.Path, "/cf1/intention", seen.append,
                                         QosKind.COMMAND)
        wait_matched([host_t, peer], [(peer, tasks_pub), (peer, cf2), (peer, watch)])
        tasks_pub.publish(encode_tasks(clock.t, tasks, [0, 0, 0], 0.0))
        spin_until([host_t], lambda: layer.tasks == tasks, "the task list")
        robot = host.robots["cf1"]
        place(robot, (1.0, 1.0, 1.0))  # nearest: task 3

        goals, tags, targets = [], [], []
        for step in (100, 101):
            if step == 101:
                place(robot, (-2.0, 0.6, 1.0))  # now task 9 is the nearest
            for r in (1, 2, 3):
                clock.t = step + (r - 1) / 3 + 1e-3
                count = len(seen)
                layer.tick()
                layer.tick()  # a second poll in the same slot runs nothing
                spin_until([peer], lambda: len(seen) > count, f"round {r}'s intention")
                assert len(seen) == count + 1
                msg = seen[-1]
                tags.append(intention_round(msg))
                targets.append(intention_from_path("cf1", msg, tasks).target_id)
                assert msg.header.frame_id == m.WORLD_FRAME
                assert m.from_time(msg.header.stamp) == pytest.approx(clock.t)
                goals.append(None if robot.goal_m is None else tuple(robot.goal_m))
        # R intentions per decision step: two tentative ones with their round, then the
        # committed one (untagged, as every intention before rounds)
        assert tags == [(1, 3), (2, 3), None] * 2
        assert targets == [3, 3, 3, 9, 9, 9]
        # the goal changes on the last round only: none until the first commit, then task 3
        # while the next step's tentative rounds already name task 9
        assert goals == [None, None, (2.0, 1.0, 1.0), (2.0, 1.0, 1.0), (2.0, 1.0, 1.0),
                         (-3.0, 0.5, 1.0)]
        assert layer.decisions == 2 and layer.steps_done == 2 and layer.rounds_run == 6

        # Receiving: a neighbour's round-1 tentative intention is what round 2 uses, its
        # committed one what round 1 uses; bad round tags are malformed, counted, unused.
        clock.t = 102.0 + 1e-3
        here = np.array([-2.0, 0.6, 1.0])
        committed = make_intention("cf2", clock.t - 0.5, np.array([0.0, 0.0, 1.0]), 3,
                                   tasks, cfg)
        cf2.publish(intention_to_path(committed, np.array(near_a.position_m)))
        spin_until([host_t], lambda: "cf2" in layer.inbox.latest, "committed")
        layer.tick()  # round 1 of step 102
        tentative = make_intention("cf2", clock.t, np.array([0.0, 0.0, 1.0]), 9, tasks, cfg)
        cf2.publish(intention_to_path(tentative, np.array(near_b.position_m), 1, 3))
        spin_until([host_t], lambda: "cf2" in layer.tentative[1].latest, "tentative")
        bad = intention_to_path(tentative, np.array(near_b.position_m), 1, 3)
        for frame in ("world#round=x/3", "world#round=1/2", "map#round=1/3",
                      "world#round=3/3"):
            bad.poses[0].header.frame_id = frame
            before = layer.inbox.counts["malformed"]
            cf2.publish(bad)
            spin_until([host_t], lambda: layer.inbox.counts["malformed"] > before, frame)
        clock.t = 102.0 + 1 / 3 + 1e-3
        assert [(i.sender, i.target_id) for i in layer.heard("cf1", 1, clock.t)] == [("cf2", 3)]
        assert [(i.sender, i.target_id) for i in layer.heard("cf1", 2, clock.t)] == [("cf2", 9)]
        status = layer.status_values("cf1")
        assert status["intentions_malformed"] == 4
        assert status["intentions_tentative"] == 2  # cf1's own round 1 and cf2's
        assert status["task_rounds"] == 3 and status["task_target"] == 9
        np.testing.assert_allclose(layer._own["cf1"], here)

        # A step whose first round was missed (a stalled node) is skipped, not half-run.
        clock.t = 103.0 + 2 / 3 + 1e-3
        count = len(seen)
        layer.tick()
        assert layer.rounds_skipped == 1 and len(seen) == count
    finally:
        host_t.close()
        peer.close()


def test_rounds_come_from_the_policy_metadata_unless_given():
    dom = 100 + (os.getpid() * 7 + 31) % 120
    cfg = dataclasses.replace(load_mrta_env("mrta_paper"), negotiation_rounds=1)
    t = DdsTransport("host", domain_id=dom)
    try:
        host = fake_host(t, ["cf1"])
        assert TaskLayer(t, host, ["cf1"], cfg, str(POLICY)).rounds == 3  # its metadata
        assert TaskLayer(t, host, ["cf1"], cfg, str(POLICY), rounds=1).rounds == 1
        assert TaskLayer(t, host, ["cf1"], cfg, "greedy").rounds == 1  # the preset's
        with pytest.raises(ValueError, match="rounds"):
            TaskLayer(t, host, ["cf1"], cfg, "greedy", rounds=0)
    finally:
        t.close()


def test_task_server_reads_committed_intentions_only():
    dom = 100 + (os.getpid() * 7 + 43) % 120
    t = DdsTransport("server", domain_id=dom)
    try:
        server = TaskServer(t, TaskServerParams(robots=["cf1"], preset="mrta_room_8"))
        cfg, task = server.cfg, server.tasks()[0]
        at = np.array(task.position_m)
        intention = make_intention("cf1", 1.0, at - [1.0, 0.0, 0.0], task.task_id,
                                   server.tasks(), cfg)
        server._on_intention(0, intention_to_path(intention, at, 1, 3))  # tentative
        assert server.target_uid[0] == -1
        bad = intention_to_path(intention, at, 1, 3)
        bad.poses[0].header.frame_id = "world#round=one/3"
        server._on_intention(0, bad)
        assert server.target_uid[0] == -1 and server.bad_messages == 1
        server._on_intention(0, intention_to_path(intention, at))  # committed
        assert server.target_uid[0] == task.task_id
    finally:
        t.close()


def env_tasks(env: MRTAVecEnv) -> list[Task]:
    """The environment's active tasks as /swarm/tasks lists them (table order, uid ids)."""
    tb, h = env.tasks, env.cfg.flight_height_m
    return [Task(int(tb.uid[0, j]), (float(tb.xy[0, j, 0]), float(tb.xy[0, j, 1]), h),
                 int(tb.level[0, j])) for j in np.flatnonzero(tb.active[0])]


def uids(env: MRTAVecEnv, slots: np.ndarray) -> list[int]:
    return [int(env.tasks.uid[0, s]) if s >= 0 else -1 for s in slots[0]]


@pytest.mark.parametrize("policy_file", [POLICY, POLICY.with_name("mrta_paper_dagger.onnx")])
def test_task_layer_decides_as_the_simulator_with_three_rounds(policy_file):
    """Six robots hosted by one task layer, their intentions over DDS, the environment's state
    fed in at every decision step (tasks, positions as odometry): the committed targets equal
    the environment's :meth:`MRTAVecEnv.negotiate` choices with a shipped policy (layout 3,
    and layout 4 with its shared sightings, which the layer derives from the neighbours'
    odometry), step after step. In this scenario, with mrta_paper.onnx, one round decides
    differently (steps 1, 2 and 5), and so does a layer that ignores its own previous-round
    choice (steps 0, 1 and 5): the test fails if the layer stops negotiating or builds the
    later rounds' observations otherwise; with the layout-4 policy robots know tasks that only
    a neighbour sees at several steps, so the parity covers the sightings."""
    dom = 100 + (os.getpid() * 7 + 37) % 120
    policy = TaskPolicy(policy_file)
    cfg = dataclasses.replace(load_mrta_env("mrta_paper"), num_robots=6,
                              world_size_m=(10.0, 10.0), obs_layout=policy.layout.version)
    cfg.validate()
    assert cfg.negotiation_rounds == 3
    n, steps, seed = cfg.num_robots, 6, 5
    env = MRTAVecEnv(cfg, 1, seed=seed)
    env.reset(seeds=[seed])

    def choose(obs):  # one robot at a time, as each robot node runs it
        return np.array([[int(policy(obs.obs[0, i:i + 1])[0]) for i in range(n)]])

    names = [f"cf{i + 1}" for i in range(n)]
    t = DdsTransport("host", domain_id=dom)
    clock = Clock(0.0)
    t.now_s = clock
    table = NeighbourTable(0, 1e3, 10.0, 1e3, 0.0)
    try:
        host = fake_host(t, names, table)
        layer = TaskLayer(t, host, names, cfg, str(policy_file),
                          mission_steps=cfg.decision_steps)
        assert layer.rounds == 3
        wait_matched([t], [(t, r.intention_pub) for r in host.robots.values()])
        one_round_differs, sightings_matter = [], []
        as_layout_3 = copy.copy(env)
        as_layout_3.cfg = dataclasses.replace(cfg, obs_layout=3)
        for step in range(steps):
            clock.t = step * cfg.decision_dt_s + 1e-3
            layer.tasks = env_tasks(env)
            for i, name in enumerate(names):
                pos = np.array([*env.robot_xy[0, i], cfg.flight_height_m])
                place(host.robots[name], pos)
                table.update(name, clock.t, pos, np.zeros(3), now_s=clock.t)
            one_round = uids(env, env.actions_to_targets(choose(env.last_obs)))
            sightings_matter.append(bool(
                (as_layout_3.observe().slot_task != env.last_obs.slot_task).any()))
            _, actions = env.negotiate(choose)
            sim = uids(env, env.actions_to_targets(actions))
            for r in range(1, layer.rounds + 1):
                clock.t = step * cfg.decision_dt_s + (r - 1) * layer.round_dt_s + 1e-3
                before = received(layer, r)
                layer.tick()
                spin_until([t], lambda: received(layer, r) >= before + n,
                           f"step {step} round {r}")
            assert [layer.targets[k] for k in names] == sim, f"step {step}"
            one_round_differs.append(one_round != sim)
            env.step(actions)
        assert layer.decisions == n * steps
        if policy.layout.version == 3:
            assert sum(one_round_differs) >= 2, one_round_differs
        else:  # robots here know tasks only a neighbour sees, so the parity covers sightings
            assert sum(sightings_matter) >= 2, sightings_matter
        counts = layer.status_values("cf1")
        assert counts["intentions_malformed"] == 0 and counts["intentions_stale"] == 0
    finally:
        t.close()


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 8])
def test_coalition_members_take_distinct_slots_inside_the_completion_radius(n):
    """Robots serving one task get their own goal around it: each member, knowing the same
    coalition, picks a different slot; neighbouring slots are >= the spacing apart where the
    radius cap allows; all lie within the cap; a robot alone flies to the task itself."""
    task = np.array([1.5, -2.0])
    members = [f"cf{i}" for i in (7, 2, 11, 4, 9, 1, 3, 5)[:n]]
    slots = np.array([coalition_slot(task, 7, list(reversed(members)), me, 0.4, 0.4)
                      for me in members])
    if n == 1:
        assert np.array_equal(slots[0], task)
        return
    radius = np.linalg.norm(slots - task, axis=1)
    assert np.allclose(radius, radius[0]) and radius[0] <= 0.4 + 1e-12
    gaps = np.linalg.norm(slots[:, None] - slots[None], axis=-1)[~np.eye(n, dtype=bool)]
    assert gaps.min() >= min(0.4, 2 * 0.4 * np.sin(np.pi / n)) - 1e-9
    other_task = coalition_slot(task, 8, members, members[0], 0.4, 0.4)
    assert not np.allclose(other_task, slots[0]), "the phase depends on the task"


def test_coalition_members_fly_to_their_own_slots():
    """Two co-hosted robots that choose one level-2 task get different goals around it,
    each inside the completion radius (not one shared point to fight over)."""
    dom = 100 + (os.getpid() * 7 + 31) % 120
    cfg = load_mrta_env("mrta_paper")
    task = Task(4, (2.0, 1.0, 1.0), 2)
    host_t = DdsTransport("host", domain_id=dom)
    clock = Clock(50.0)
    host_t.now_s = clock
    try:
        host = fake_host(host_t, ["cf1", "cf2"])
        layer = TaskLayer(host_t, host, ["cf1", "cf2"], cfg, "greedy")
        layer.tasks = [task]
        place(host.robots["cf1"], (1.0, 1.0, 1.0))
        place(host.robots["cf2"], (3.0, 1.2, 1.0))
        wait_matched([host_t], [(host_t, r.intention_pub) for r in host.robots.values()])
        for r in (1, 2, 3):
            clock.t = 50.0 + (r - 1) / 3 + 1e-3
            layer.tick()
            if r < 3:  # both hear each other's tentative choice before the next round
                spin_until([host_t], lambda: received(layer, r) >= 2, f"round {r} intentions")
    finally:
        host_t.close()
    assert layer.targets == {"cf1": 4, "cf2": 4}
    goals = np.array([host.robots[n].goal_m for n in ("cf1", "cf2")])
    assert np.linalg.norm(goals[0] - goals[1]) >= 0.4 - 1e-9
    assert (np.linalg.norm(goals[:, :2] - task.position_m[:2], axis=1)
            <= cfg.completion_radius_m).all()
