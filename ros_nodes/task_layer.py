"""The robot node's task layer: which task to serve, what to tell the neighbours.

Enabled by ``robot_node``'s ``mission:=tasks``. Every decision step (the preset's
``decision_dt_s``), for each hosted robot with a usable own state:

1. the intentions heard on the swarm-mates' ``/cfN/intention`` (validated, stale or out of
   range ones ignored and counted: :class:`sim.mrta.intention.IntentionInbox`) and the task
   list of ``/swarm/tasks`` go into :func:`sim.mrta.decide.choose_target` (the greedy rule, or
   a learned task policy through onnxruntime), the same decision logic as the simulator's;
2. the robot publishes its intention (target and planned path) and flies to the target at the
   preset's flight height (its goal; no target: it holds where it is), under its flight
   policy and CBF shield as always.
"""
import logging
import math

import numpy as np

from ros_nodes import messages as m
from ros_nodes.task_messages import decode_tasks, intention_from_path, intention_to_path
from ros_nodes.transport import QosKind, Transport, robot_topic
from sim.mrta.config import MRTAConfig
from sim.mrta.decide import Task, choose_target, make_intention, task_position
from sim.mrta.intention import NO_TASK, IntentionInbox

log = logging.getLogger(__name__)
STALE_DECISIONS = 3.0
"""Intentions older than this many decision steps are stale."""


class TaskLayer:
    """Task choice for the robots of one :class:`ros_nodes.robot_node.RobotHost`."""

    def __init__(self, transport: Transport, host, swarm: list[str], cfg: MRTAConfig,
                 policy: str) -> None:
        self.transport = transport
        self.host = host
        self.cfg = cfg
        self.chooser = policy
        if policy != "greedy":
            from swarm_rl.mrta.onnx_policy import TaskPolicy

            chooser = TaskPolicy(policy)
            chooser.check_compatible(cfg)
            self.chooser = chooser
        self.tasks: list[Task] = []
        self.tasks_stamp_s = -math.inf
        self.targets = {name: NO_TASK for name in host.robots}
        self.inbox = IntentionInbox(cfg.comm_range_m, STALE_DECISIONS * cfg.decision_dt_s)
        self.bad_tasks = 0
        self.decisions = 0
        transport.create_subscription(m.String, "/swarm/tasks", self._on_tasks, QosKind.LATCHED)
        for name in swarm:
            transport.create_subscription(m.Path, robot_topic(name, "intention"),
                                          lambda msg, n=name: self._on_intention(n, msg),
                                          QosKind.COMMAND)
        transport.create_timer(cfg.decision_dt_s, self.decide)

    def _on_tasks(self, msg: m.String) -> None:
        try:
            stamp, tasks = decode_tasks(msg)
        except ValueError as exc:
            self.bad_tasks += 1
            log.warning("%s", exc)
            return
        if stamp >= self.tasks_stamp_s:
            self.tasks_stamp_s, self.tasks = stamp, tasks

    def _on_intention(self, sender: str, msg: m.Path) -> None:
        self.inbox.receive(intention_from_path(sender, msg, self.tasks))

    def decide(self) -> None:
        now = self.transport.now_s()
        for name, robot in self.host.robots.items():
            own = robot.own
            if own is None:
                continue
            pos = np.asarray(own.pos_m, dtype=float)
            if pos.shape != (3,) or not np.isfinite(pos).all() or np.abs(pos).max() >= 1e3:
                continue
            heard = self.inbox.current(pos, now, own_name=name)  # co-hosted robots included
            try:
                target = choose_target(pos, self.targets[name], self.tasks, heard, self.cfg,
                                       self.chooser)
            except ValueError:  # a broken policy choice: keep the target, never crash
                log.exception("%s: task choice failed", name)
                target = self.targets[name]
            self.targets[name] = target
            goal = task_position(self.tasks, target)
            if goal is not None:
                goal = np.array([goal[0], goal[1], self.cfg.flight_height_m])
                robot.goal_m = goal
            elif robot.goal_m is None:
                robot.goal_m = pos.copy()
            intention = make_intention(name, now, pos, target, self.tasks, self.cfg)
            robot.intention_pub.publish(intention_to_path(intention, goal))
            self.decisions += 1

    def status_values(self, name: str) -> dict[str, object]:
        out: dict[str, object] = {"task_target": self.targets.get(name, NO_TASK),
                                  "tasks_known": len(self.tasks),
                                  "tasks_malformed": self.bad_tasks}
        out.update({f"intentions_{k}": v for k, v in self.inbox.counts.items()})
        return out
