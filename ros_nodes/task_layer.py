"""The robot node's task layer: which task to serve, what to tell the neighbours.

Enabled by ``robot_node``'s ``mission:=tasks``. It runs the simulator's negotiation protocol
(``negotiation_rounds`` R, docs/mrta.md; :meth:`sim.mrta.env.MRTAVecEnv.negotiate`): every
decision step (the preset's ``decision_dt_s``) has R rounds, ``decision_dt_s / R`` apart on
the node's clock (slot k of length ``decision_dt_s / R`` since clock zero is round
``k mod R + 1`` of step ``k div R``, so nodes on one clock, ``/clock`` or synchronised wall
time, negotiate in step). R is the task policy's ``negotiation_rounds`` metadata (the
greedy rule: the preset's), or the ``rounds`` argument. In each round, for each hosted robot
with a usable own state at the step's first round:

1. its observation is built as the simulator builds it for that round and goes into
   :func:`sim.mrta.decide.choose_target` (the greedy rule, or a learned task policy through
   onnxruntime), the same decision logic as the simulator's. Round 1: the neighbours'
   committed intentions and the robot's committed target. Round r > 1: each neighbour's
   round r - 1 tentative intention (its committed one where that is missing) and, with
   revision, the robot's own round r - 1 choice as its current target; without revision a
   committed target stays locked (``locked``). Positions are those of the step's first round
   (in the simulator nothing moves between rounds): the robot's own, and its neighbours' from
   the host's odometry table where it has them, each heard intention re-planned from there
   (its eta, as the simulator computes etas from where robots are); the intentions come
   validated, stale or out of range ones ignored and counted
   (:class:`sim.mrta.intention.IntentionInbox`);
2. rounds before the last publish the choice as a tentative intention (tagged with its round,
   :func:`ros_nodes.task_messages.intention_to_path`); the last round commits it: the robot
   publishes its committed intention (target and planned path) and flies to the target at the
   preset's flight height (its goal, set only here; no target: it holds where it is), under
   its flight policy and CBF shield as always. Robots that serve one task together do not
   share one goal point: each takes its own slot around the task (:func:`coalition_slot`),
   inside the completion radius, so the flight policy (trained on distinct goals) and the
   shields do not fight over one point.
"""
import dataclasses
import logging
import math

import numpy as np

from ros_nodes import messages as m
from ros_nodes.task_messages import (decode_tasks, intention_from_path, intention_round,
                                     intention_to_path)
from ros_nodes.transport import QosKind, Transport, robot_topic
from sim.mrta.config import MRTAConfig
from sim.mrta.decide import Task, choose_target, make_intention, task_goal
from sim.mrta.intention import NO_TASK, Intention, IntentionInbox

log = logging.getLogger(__name__)
STALE_DECISIONS = 3.0
"""Committed intentions older than this many decision steps are stale."""
SLOT_SPACING_M = 0.4
"""Coalition members' goals around their task are this far apart (m), more than the shields'
safety distance (0.3 m by default)."""
SLOT_RADIUS_FRAC = 0.8
"""Slots lie at most this share of the task's completion radius from it."""
TICKS_PER_ROUND = 4
"""The round timer polls the clock this often per round; a round runs at the first poll in
its slot."""


def coalition_slot(task_xy: np.ndarray, task_id: int, members: list[str], me: str,
                   spacing_m: float, max_radius_m: float) -> np.ndarray:
    """Goal (x, y) in m, world frame, for robot ``me`` serving the task at ``task_xy`` with
    ``members`` (every robot it knows to target the task, itself included): slot k (its rank
    by name) of n on a circle around the task whose radius puts neighbouring slots
    ``spacing_m`` apart, capped at ``max_radius_m``. The circle's phase depends on the task
    id alone, so members that know the same coalition choose the same n slots. Alone: the
    task's own position."""
    task_xy = np.asarray(task_xy, float)
    n = len(set(members))
    if n < 2:
        return task_xy.copy()
    k = sorted(set(members)).index(me)
    radius = min(spacing_m / (2.0 * math.sin(math.pi / n)), max_radius_m)
    angle = 2.0 * math.pi * k / n + 2.399963 * task_id  # golden angle: tasks differ in phase
    return task_xy + radius * np.array([math.cos(angle), math.sin(angle)])


class TaskLayer:
    """Task choice for the robots of one :class:`ros_nodes.robot_node.RobotHost`.

    ``rounds``: negotiation rounds per decision step (None: the policy's, see the module
    docstring). ``mission_steps``: decision steps of the mission, for the observation's share
    of the mission left (``1 - steps done / mission_steps``, as in the simulator's episode);
    None: an open-ended mission, always 1."""

    def __init__(self, transport: Transport, host, swarm: list[str], cfg: MRTAConfig,
                 policy: str, rounds: int | None = None,
                 mission_steps: int | None = None) -> None:
        self.transport = transport
        self.host = host
        self.chooser = policy
        trained = cfg.negotiation_rounds
        if policy != "greedy":
            from swarm_rl.mrta.onnx_policy import TaskPolicy

            chooser = TaskPolicy(policy)
            # The observation layout the policy was trained with (as evaluation builds it).
            cfg = dataclasses.replace(cfg, obs_layout=chooser.layout.version)
            chooser.check_compatible(cfg)
            self.chooser = chooser
            trained = chooser.negotiation_rounds
        self.cfg = cfg
        if rounds is None:
            rounds = trained
        if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
            raise ValueError(f"rounds: must be an integer >= 1, got {rounds!r}")
        if rounds != trained:
            log.warning("task layer: %d negotiation rounds per decision step, the policy was "
                        "trained with %d; its decisions may differ from evaluation", rounds,
                        trained)
        if mission_steps is not None and mission_steps < 1:
            raise ValueError(f"mission_steps: must be >= 1, got {mission_steps}")
        self.rounds = rounds
        self.round_dt_s = cfg.decision_dt_s / rounds
        self.mission_steps = mission_steps
        self.tasks: list[Task] = []
        self.tasks_stamp_s = -math.inf
        self.targets = {name: NO_TASK for name in host.robots}
        """Committed targets (task id, -1: none)."""
        self.proposed = {name: NO_TASK for name in host.robots}
        """Each robot's choice in the latest round."""
        self.inbox = IntentionInbox(cfg.comm_range_m, STALE_DECISIONS * cfg.decision_dt_s)
        """Committed intentions."""
        # Round r's tentative intentions: one round old when round r + 1 reads them; older
        # than half a step more they belong to an earlier step (stale).
        self.tentative = {r: IntentionInbox(cfg.comm_range_m,
                                            self.round_dt_s + 0.5 * cfg.decision_dt_s)
                          for r in range(1, rounds)}
        self.bad_tasks = 0
        self.decisions = 0
        """Committed decisions (one per robot and decision step)."""
        self.steps_done = 0
        self.rounds_run = 0
        self.rounds_skipped = 0
        """Rounds not run because the step's first round was missed (a stalled node)."""
        self.step = None
        """Index of the decision step being negotiated."""
        self.round = 0
        """Latest round run (1..R)."""
        self._last_slot = None
        self._own: dict[str, np.ndarray] = {}
        self._neighbours: dict[str, dict[str, np.ndarray]] = {}
        transport.create_subscription(m.String, "/swarm/tasks", self._on_tasks, QosKind.LATCHED)
        for name in swarm:
            transport.create_subscription(m.Path, robot_topic(name, "intention"),
                                          lambda msg, n=name: self._on_intention(n, msg),
                                          QosKind.COMMAND)
        transport.create_timer(self.round_dt_s / TICKS_PER_ROUND, self.tick)

    # --- inputs ----------------------------------------------------------------------------
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
        try:
            tag = intention_round(msg)
            if tag is not None and tag[1] != self.rounds:
                raise ValueError(f"intention: round {tag[0]} of {tag[1]}, this robot "
                                 f"negotiates in {self.rounds} rounds")
        except ValueError as exc:  # counted with the malformed ones, never used
            self.inbox.reject(str(exc))
            return
        inbox = self.inbox if tag is None else self.tentative[tag[0]]
        inbox.receive(intention_from_path(sender, msg, self.tasks))

    # --- the schedule ----------------------------------------------------------------------
    def tick(self) -> None:
        """The round timer: run the round whose slot the clock is in, once."""
        now = self.transport.now_s()
        slot = math.floor(now / self.round_dt_s + 1e-9)
        if slot == self._last_slot:
            return
        self._last_slot = slot
        step, r = divmod(slot, self.rounds)
        if r > 0 and step != self.step:
            self.rounds_skipped += 1  # this step's first round was missed: wait for the next
            return
        self.step = step
        self.run_round(r + 1, now)

    # --- one round ---------------------------------------------------------------------------
    def run_round(self, r: int, now: float) -> None:
        """Negotiation round ``r`` (1..R) of the current decision step for every hosted
        robot (module docstring)."""
        if not 1 <= r <= self.rounds:
            raise ValueError(f"r: must be in 1..{self.rounds}, got {r}")
        if r == 1:
            self._snapshot(now)
        elif r <= self.round:
            log.warning("task layer: round %d again in one step", r)
        self.round = r
        task_ids = {t.task_id for t in self.tasks}
        left = 1.0 if self.mission_steps is None else max(
            0.0, 1.0 - self.steps_done / self.mission_steps)
        for name, robot in self.host.robots.items():
            pos = self._own.get(name)
            if pos is None:
                continue
            positions = self._neighbours.get(name, {})
            heard = self.heard(name, r, now)
            committed = self.targets[name] if self.targets[name] in task_ids else NO_TASK
            if r == 1:
                own_target, locked = committed, None
            else:
                own_target = self.proposed[name]
                if not self.cfg.revision and committed != NO_TASK:
                    own_target = committed
                locked = committed != NO_TASK
            try:
                choice = choose_target(pos, own_target, self.tasks,
                                       self._as_seen_from(heard, positions), self.cfg,
                                       self.chooser, neighbour_positions_m=positions,
                                       time_left_frac=left, locked=locked)
            except ValueError:  # a broken policy choice: keep the target, never crash
                log.exception("%s: task choice failed", name)
                choice = own_target
            self.proposed[name] = choice
            if r < self.rounds:
                self._publish(robot, name, now, pos, choice, r)
                continue
            self.targets[name] = choice
            goal = task_goal(self.tasks, choice, self.cfg)
            if goal is not None:
                members = [name] + [msg.sender for msg in heard if msg.target_id == choice]
                goal[:2] = coalition_slot(goal[:2], choice, members, name, SLOT_SPACING_M,
                                          SLOT_RADIUS_FRAC * self.cfg.completion_radius_m)
                robot.goal_m = goal
            elif robot.goal_m is None:
                robot.goal_m = pos.copy()
            self._publish(robot, name, now, self._position(robot, pos), choice, None)
            self.decisions += 1
        self.rounds_run += 1
        if r == self.rounds:
            self.steps_done += 1

    def heard(self, name: str, r: int, now: float) -> list[Intention]:
        """The intentions robot ``name`` uses in round ``r``: committed ones in round 1; later,
        each neighbour's round r - 1 tentative one, its committed one where that is missing."""
        pos, where = self._own[name], self._neighbours.get(name)
        committed = self.inbox.current(pos, now, name, where)
        if r == 1:
            return committed
        tentative = {msg.sender: msg
                     for msg in self.tentative[r - 1].current(pos, now, name, where)}
        merged = {msg.sender: msg for msg in committed} | tentative
        return [merged[k] for k in sorted(merged)]

    def _as_seen_from(self, heard: list[Intention], positions: dict[str, np.ndarray]
                      ) -> list[Intention]:
        """Heard intentions re-planned from where their senders are (odometry, when known):
        the eta the simulator would give them (planar, at the flight height)."""
        out = []
        for msg in heard:
            where = positions.get(msg.sender)
            if where is None:
                out.append(msg)
                continue
            flat = np.array([where[0], where[1], self.cfg.flight_height_m])
            out.append(make_intention(msg.sender, msg.stamp_s, flat, msg.target_id, self.tasks,
                                      self.cfg))
        return out

    def _snapshot(self, now: float) -> None:
        """Positions for the step's rounds: own (from its state) and neighbours' (odometry)."""
        self._own.clear()
        self._neighbours.clear()
        table = getattr(self.host, "table", None)
        for name, robot in self.host.robots.items():
            pos = self._position(robot, None)
            if pos is None:
                continue
            self._own[name] = pos
            if table is not None:
                snap = table.snapshot(name, pos, now)
                self._neighbours[name] = {k: np.array(p, float)
                                          for k, p in zip(snap.names, snap.pos_m)}

    @staticmethod
    def _position(robot, default: np.ndarray | None) -> np.ndarray | None:
        own = robot.own
        if own is None:
            return default
        pos = np.asarray(own.pos_m, dtype=float)
        if pos.shape != (3,) or not np.isfinite(pos).all() or np.abs(pos).max() >= 1e3:
            return default
        return pos.copy()

    def _publish(self, robot, name: str, now: float, pos: np.ndarray, target: int,
                 r: int | None) -> None:
        intention = make_intention(name, now, pos, target, self.tasks, self.cfg)
        robot.intention_pub.publish(intention_to_path(
            intention, task_goal(self.tasks, target, self.cfg), r, self.rounds))

    def status_values(self, name: str) -> dict[str, object]:
        out: dict[str, object] = {"task_target": self.targets.get(name, NO_TASK),
                                  "tasks_known": len(self.tasks),
                                  "tasks_malformed": self.bad_tasks,
                                  "task_rounds": self.rounds,
                                  "task_rounds_skipped": self.rounds_skipped}
        for k, v in self.inbox.counts.items():
            out[f"intentions_{k}"] = v + sum(t.counts[k] for t in self.tentative.values())
        out["intentions_tentative"] = sum(t.counts["received"] for t in self.tentative.values())
        return out
