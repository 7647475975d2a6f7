"""``task_server``: the mission of the task-allocation scenario.

Holds the task list of an MRTA preset (``config/mrta/``; tasks of level L need L robots at
once), publishes it on ``/swarm/tasks`` (std_msgs/String with JSON, latched, on change and
every second; :mod:`ros_nodes.task_messages`), and every decision step applies the completion
rule of the simulator (:func:`sim.mrta.coalition.complete`) to the robots' poses
(``/cfN/pose``) and targets (the last pose of each committed ``/cfN/intention``; tentative
ones, tagged with their negotiation round, are skipped): a task is completed
when at least L robots that target it are within ``completion_radius_m`` of it. Completed tasks
respawn or new ones arrive as the preset says (:func:`sim.mrta.tasks.replenish`). Team return:
the sum of L^2 over completed tasks. On shutdown it writes ``task_report.json`` into
``report_dir``.
"""
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ros_nodes import messages as m
from ros_nodes.node_main import run_node
from ros_nodes.params import ParamError, spec
from ros_nodes.task_messages import encode_tasks, intention_from_path, intention_round
from ros_nodes.transport import QosKind, Transport, check_robot_name, robot_topic
from sim.mrta.coalition import complete
from sim.mrta.config import LEVELS, load_mrta_env
from sim.mrta.decide import Task
from sim.mrta.tasks import initial_tasks, replenish
from swarm_rl import files

log = logging.getLogger(__name__)
REPORT_FILE = "task_report.json"
REPUBLISH_S = 1.0


@dataclass(frozen=True)
class TaskServerParams:
    robots: list[str] = spec([], "Robots that can serve tasks.")
    preset: str = spec("mrta_room_8", "MRTA preset (config/mrta/ name or YAML path).")
    seed: int = spec(0, "Seed of task placement.", min=0)
    report_dir: str = spec("", "Write task_report.json here on exit.")


class TaskServer:
    def __init__(self, transport: Transport, params: TaskServerParams) -> None:
        if not params.robots:
            raise ParamError("task_server: parameter robots: list the robots")
        try:
            self.names = [check_robot_name(n) for n in params.robots]
        except ValueError as exc:
            raise ParamError(f"task_server: parameter robots: {exc}") from None
        self.transport = transport
        self.params = params
        self.cfg = load_mrta_env(params.preset)
        self.rngs = [np.random.default_rng(params.seed)]
        self.table = initial_tasks(self.cfg, self.rngs)
        n = len(self.names)
        self.pos = np.full((n, 3), np.nan)
        self.target_uid = np.full(n, -1)
        self.by_level = np.zeros(LEVELS, int)
        self.team_return = 0.0
        self.steps = 0
        self.bad_messages = 0
        self._pub = transport.create_publisher(m.String, "/swarm/tasks", QosKind.LATCHED)
        self._last_publish_s = -np.inf
        for i, name in enumerate(self.names):
            transport.create_subscription(m.PoseStamped, robot_topic(name, "pose"),
                                          lambda msg, i=i: self._on_pose(i, msg),
                                          QosKind.SENSOR)
            transport.create_subscription(m.Path, robot_topic(name, "intention"),
                                          lambda msg, i=i: self._on_intention(i, msg),
                                          QosKind.COMMAND)
        transport.create_timer(self.cfg.decision_dt_s, self.step)
        transport.create_timer(0.2, self._republish)
        self.publish()

    def tasks(self) -> list[Task]:
        t = self.table
        return [Task(int(t.uid[0, j]), (float(t.xy[0, j, 0]), float(t.xy[0, j, 1]),
                                        self.cfg.flight_height_m), int(t.level[0, j]))
                for j in np.flatnonzero(t.active[0])]

    def _on_pose(self, i: int, msg: m.PoseStamped) -> None:
        p = m.vec(msg.pose.position)
        if np.isfinite(p).all():
            self.pos[i] = p
        else:
            self.bad_messages += 1

    def _on_intention(self, i: int, msg: m.Path) -> None:
        try:
            if intention_round(msg) is not None:
                return  # a tentative choice of a negotiation round: not a target yet
        except ValueError:
            self.bad_messages += 1
            return
        intention = intention_from_path(self.names[i], msg, self.tasks())
        if not np.isfinite(intention.path_m).all():
            self.bad_messages += 1
            return
        self.target_uid[i] = intention.target_id

    def step(self) -> None:
        """One decision step: the completion rule, then replenishment."""
        t = self.table
        slot_of = {int(uid): j for j, uid in enumerate(t.uid[0]) if t.active[0, j]}
        target = np.array([slot_of.get(int(u), -1) for u in self.target_uid])[None]
        known = np.isfinite(self.pos).all(axis=1)
        target[0, ~known] = -1
        xy = np.where(known[:, None], self.pos[:, :2], 0.0)[None]
        done = complete(xy, target, t.xy, t.level, t.active, self.cfg.completion_radius_m)
        self.steps += 1
        if done.completed.any():
            self.by_level += done.by_level[0]
            self.team_return += float(done.reward[0])
            log.info("completed %s (return %.0f)", done.by_level[0].tolist(), self.team_return)
            replenish(t, self.cfg, done.completed, self.rngs)
            self.publish()

    def publish(self) -> None:
        now = self.transport.now_s()
        self._pub.publish(encode_tasks(now, self.tasks(), self.by_level.tolist(),
                                       self.team_return))
        self._last_publish_s = now

    def _republish(self) -> None:
        if self.transport.now_s() - self._last_publish_s >= REPUBLISH_S:
            self.publish()

    def report(self) -> dict:
        return {"preset": self.params.preset, "decision_steps": self.steps,
                "completed_by_level": self.by_level.tolist(), "return": self.team_return,
                "bad_messages": self.bad_messages, "robots": self.names}

    def shutdown(self) -> None:
        if self.params.report_dir:
            out = Path(self.params.report_dir)
            out.mkdir(parents=True, exist_ok=True)
            files.write_json(out / REPORT_FILE, self.report())


def main(argv: list[str] | None = None) -> int:
    return run_node("task_server", TaskServerParams, TaskServer,
                    sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
