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

Negotiation rounds (``negotiation_rounds`` R > 1, docs/mrta.md): within one decision step a
robot announces R - 1 *tentative* choices before it commits. A tentative intention is the same
nav_msgs/Path on the same topic with its round tagged in the first pose's
``header.frame_id``: ``world#round=r/R`` (r in 1..R-1; the Path's own ``header.frame_id``
stays ``world``, so RViz draws it as before). An untagged intention is committed: what every
intention was before rounds, and what the goals mission and the last round still send, so
consumers of committed intentions (``task_server``) only skip the tagged ones.
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
ROUND_TAG = "#round="
"""Separates the frame from a tentative intention's round in ``poses[0].header.frame_id``."""
MAX_ROUNDS = 100


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


def intention_to_path(intention: Intention, target_m: np.ndarray | None,
                      round_index: int | None = None, rounds: int = 1) -> m.Path:
    """The Path of an intention; ``target_m``: the target task's position (appended when the
    planned path ends short of it). ``round_index`` r < ``rounds``: a tentative intention of
    negotiation round r (tagged, module docstring); None or r == rounds: committed
    (untagged)."""
    points = [np.asarray(p, float) for p in intention.path_m]
    if target_m is not None and np.linalg.norm(points[-1][:2] - target_m[:2]) > MATCH_TOL_M:
        points.append(np.asarray(target_m, float))
    t = intention.stamp_s
    poses = [m.pose_stamped(t, p) for p in points]
    if round_index is not None and round_index != rounds:
        if not 1 <= round_index < rounds <= MAX_ROUNDS:
            raise ValueError(f"round_index: must be in 1..{rounds}, got {round_index}")
        poses[0].header.frame_id = f"{m.WORLD_FRAME}{ROUND_TAG}{round_index}/{rounds}"
    return m.Path(m.header(t), poses)


def intention_round(msg: m.Path) -> tuple[int, int] | None:
    """``(r, R)`` of a tentative intention (negotiation round r of R), None for a committed
    one; ``ValueError`` for a malformed tag."""
    if not msg.poses:
        return None
    frame = msg.poses[0].header.frame_id
    if ROUND_TAG not in frame:
        return None
    base, _, tag = frame.partition(ROUND_TAG)
    r, slash, rounds = tag.partition("/")
    if base != m.WORLD_FRAME or not slash or not (r.isdigit() and rounds.isdigit()):
        raise ValueError(f"intention: bad round tag {frame!r}")
    r_i, rounds_i = int(r), int(rounds)
    if not 1 <= r_i < rounds_i <= MAX_ROUNDS:
        raise ValueError(f"intention: round {r_i} of {rounds_i} is not a tentative round")
    return r_i, rounds_i


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
