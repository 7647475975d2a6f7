"""``/swarm/tasks`` and intentions on the wire, and their validation.

``/swarm/tasks`` (std_msgs/String, latched, on change and every second) carries one JSON
object, documented in docs/interfaces.md::

    {"version": 1, "stamp_s": 12.0, "tasks": [{"id": 7, "position_m": [x, y, z], "level": 2}],
     "completed_by_level": [3, 1, 0], "return": 7.0}

An intention (``/cfN/intention``, nav_msgs/Path) is the planned path of
:func:`sim.mrta.intention.intention_path`, one pose per decision step, with the target task's
position appended as the last pose when the path stops short of it (DESIGN.md: the last pose
is the target). A receiver recovers the target id by matching that last pose to the task list
(tasks do not move), within :data:`MATCH_TOL_M`.
"""
import json
import math

import numpy as np

from ros_nodes import messages as m
from sim.mrta.decide import Task
from sim.mrta.intention import NO_TASK, Intention

TASKS_VERSION = 1
MATCH_TOL_M = 0.05
"""Horizontal distance within which an intention's last pose names a task."""
MAX_TASKS = 1000


def encode_tasks(stamp_s: float, tasks: list[Task], completed_by_level: list[int],
                 team_return: float) -> m.String:
    return m.String(json.dumps({
        "version": TASKS_VERSION, "stamp_s": stamp_s,
        "tasks": [{"id": t.task_id, "position_m": list(t.position_m), "level": t.level}
                  for t in tasks],
        "completed_by_level": list(completed_by_level), "return": team_return}))


def decode_tasks(msg: m.String) -> tuple[float, list[Task]]:
    """(stamp, tasks) of a ``/swarm/tasks`` message; ``ValueError`` says what is wrong."""
    try:
        doc = json.loads(msg.data)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"/swarm/tasks: not JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("version") != TASKS_VERSION:
        raise ValueError(f"/swarm/tasks: expected an object with version {TASKS_VERSION}")
    stamp = doc.get("stamp_s")
    raw = doc.get("tasks")
    if not isinstance(stamp, (int, float)) or not math.isfinite(stamp):
        raise ValueError("/swarm/tasks: stamp_s: not a finite number")
    if not isinstance(raw, list) or len(raw) > MAX_TASKS:
        raise ValueError(f"/swarm/tasks: tasks: expected a list of at most {MAX_TASKS}")
    tasks = []
    for k, item in enumerate(raw):
        try:
            tasks.append(Task(item["id"], tuple(item["position_m"]), item["level"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"/swarm/tasks: tasks[{k}]: {exc}") from None
    if len({t.task_id for t in tasks}) != len(tasks):
        raise ValueError("/swarm/tasks: task ids are not unique")
    return float(stamp), tasks


def intention_to_path(intention: Intention, target_m: np.ndarray | None) -> m.Path:
    """The Path of an intention; ``target_m``: the target task's position (appended when the
    planned path ends short of it)."""
    points = [np.asarray(p, float) for p in intention.path_m]
    if target_m is not None and np.linalg.norm(points[-1][:2] - target_m[:2]) > MATCH_TOL_M:
        points.append(np.asarray(target_m, float))
    t = intention.stamp_s
    return m.Path(m.header(t), [m.pose_stamped(t, p) for p in points])


def intention_from_path(sender: str, msg: m.Path, tasks: list[Task]) -> Intention:
    """The :class:`Intention` a Path carries, its target matched against ``tasks``. The
    result may still be malformed (NaN points...): :class:`IntentionInbox` checks it."""
    path = np.array([m.vec(p.pose.position) for p in msg.poses], dtype=float).reshape(-1, 3)
    target = NO_TASK
    if len(path) > 1:
        for t in tasks:
            if np.linalg.norm(path[-1, :2] - np.asarray(t.position_m[:2])) <= MATCH_TOL_M:
                target = t.task_id
                break
    return Intention(sender, m.from_time(msg.header.stamp), target, path)
