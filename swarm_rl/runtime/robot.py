"""One robot's decision step: what a robot node calls every control tick.

:meth:`RobotController.step` takes the robot's own state (:class:`OwnState`), its goal and an
optional obstacle patch, reads its neighbours from a :class:`~swarm_rl.runtime.neighbours.
NeighbourTable`, and returns a :class:`Command`: a world-frame velocity setpoint and a yaw rate
for the ``cmd_velocity_world`` topic, with diagnostics. On a good tick:

1. the observation is built by :func:`sim.observation.build_observation` (the one observation
   function; neighbours through :func:`sim.observation.nearest_neighbours`), exactly as the
   simulator builds it on the same states;
2. the ONNX policy (:class:`~swarm_rl.runtime.policy.OnnxPolicy`, ``velocity`` mode only:
   robots command velocity over the radio) gives a normalised action, scaled to SI by the
   policy's own metadata;
3. the setpoint goes through the shield, if one is given (:class:`VelocityShield`).

Safety rules (DESIGN.md, "Safety, faults and bad input"): the command is always finite.

- Own state missing, malformed, non-finite, implausible (``|pos| >= 1e3`` m, ``|vel| >= 50``
  m/s, ``|omega| >= 100`` rad/s, a matrix that is not a rotation), older than ``own_stale_s``
  or stamped more than that ahead of ``now_s``: **hover** (zero velocity and yaw rate; the
  shield cannot run without an own position). Once that has lasted ``land_after_s`` on the
  ``now_s`` clock: **land** (``vz = -landing_speed_mps``). A good own state resumes normal
  control (landing for good is the bridge watchdog's job). A non-finite ``now_s`` is treated
  the same way, but cannot advance the landing timer.
- Goal invalid (not 3 finite numbers, ``|goal| >= 1e3`` m), obstacle patch invalid (not 9
  values, NaN, or below ``-OBSTACLE_RANGE_M``; ``inf`` means nothing there), the policy failing
  or giving a non-finite action: hover, through the shield.
- The shield raising or returning something other than a finite 3-vector: hover, flagged as a
  shield fallback (a shield that reports ``fallback`` itself keeps its own setpoint).

Every rejected input is counted by reason (:attr:`RobotController.rejected`, plus the
neighbour table's counts as ``neighbour_<reason>``) and each command says why it is not the
plain policy command (:attr:`CommandDiagnostics.reasons`).

Imports neither torch nor pybullet.
"""
from __future__ import annotations

import enum
import logging
import math
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from sim.observation import OBSTACLE_RANGE_M, ObsLayout, build_observation
from swarm_rl.errors import PolicyMismatchError
from swarm_rl.runtime.neighbours import (MAX_POSITION_M, MAX_SPEED_MPS, NeighbourSnapshot,
                                         NeighbourTable, SnapshotStack, too_large)
from swarm_rl.runtime.own_state_kernel import own_states_pass
from swarm_rl.runtime.policy import NonFiniteObservation, OnnxPolicy
from swarm_rl.runtime.shield import (CBFShield, ShieldBatch, ShieldConfig, ShieldInput,
                                     compile_stacked_pass, filter_batch, filter_many)

log = logging.getLogger(__name__)

ROTATION_TOL = 1e-3
"""Largest ``|R^T R - I|`` entry and ``|det R - 1|`` of an accepted rotation matrix."""
MAX_BODY_RATE_RAD_S = 100.0
"""Own body rates with ``|omega| >= MAX_BODY_RATE_RAD_S`` are rejected (the Crazyflie's gyro
saturates at 2000 deg/s, 35 rad/s)."""
OBSTACLE_PATCH_SIZE = 9
MIN_OBSTACLE_DISTANCE_M = -OBSTACLE_RANGE_M
"""Patch distances below this are rejected: a point inside a column is at most its radius
(well under 2 m) from the surface."""


class CommandMode(enum.Enum):
    POLICY = "policy"
    """The policy's setpoint (shielded if a shield is set)."""
    HOVER = "hover"
    """Zero velocity: a fault or bad input this tick (see the reasons)."""
    LAND = "land"
    """Descend at ``landing_speed_mps``: own state bad for ``land_after_s`` or longer."""


@dataclass(frozen=True)
class OwnState:
    """The robot's own state at ``stamp_s`` (same clock as ``now_s``)."""

    pos_m: np.ndarray
    """(3,) world frame (ENU)."""
    vel_mps: np.ndarray
    """(3,) world frame."""
    rot: np.ndarray
    """(3, 3) rotation matrix body (FLU) -> world."""
    omega_rad_s: np.ndarray
    """(3,) angular velocity in the body frame."""
    stamp_s: float


class VelocityShield(Protocol):
    """What :class:`RobotController` needs of a safety shield: a velocity filter.

    Arguments, world frame, SI: own position (3,), own velocity (3,), nominal velocity
    setpoint (3,), neighbours' positions (M, 3) and velocities (M, 3), and their extra safety
    radii (M,) for stale data. Returns the safe velocity setpoint (3,) and a diagnostics
    mapping; its keys ``intervened`` and ``fallback`` (bools) are read if present, and the
    whole mapping is passed on in :attr:`CommandDiagnostics.shield_info`.
    """

    def __call__(self, own_pos: np.ndarray, own_vel: np.ndarray, v_nominal: np.ndarray,
                 neighbour_pos: np.ndarray, neighbour_vel: np.ndarray,
                 neighbour_extra_radius: np.ndarray) -> tuple[np.ndarray, Mapping[str, Any]]:
        ...


@dataclass(frozen=True)
class CommandDiagnostics:
    reasons: tuple[str, ...] = ()
    """Why this command is not the plain policy command (empty on a normal tick)."""
    shielded: bool = False
    """The setpoint went through the shield."""
    shield_intervened: bool = False
    shield_fallback: bool = False
    """The shield failed, or reported falling back to its own safe command."""
    policy_latency_us: float | None = None
    """Wall time of the policy call; None when the policy did not run."""
    neighbours: int = 0
    """Neighbours in range and not dropped (policy and shield)."""
    rejected: dict[str, int] = field(default_factory=dict)
    """Rejected inputs so far, by reason (own, goal, patch and ``neighbour_*``)."""
    shield_info: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Command:
    """One tick's output: a setpoint for ``/cfN/cmd_velocity_world``."""

    velocity_mps: np.ndarray
    """(3,) world frame, always finite."""
    yaw_rate_rad_s: float
    mode: CommandMode
    diagnostics: CommandDiagnostics

    @property
    def landing(self) -> bool:
        return self.mode is CommandMode.LAND


@dataclass
class _Tick:
    """One robot's tick between its input checks and its shield (world frame, SI)."""

    own: OwnState
    pos: np.ndarray
    vel: np.ndarray
    goal: np.ndarray
    patch: np.ndarray
    stack: SnapshotStack | None = None
    """The stacked neighbour snapshot of the tick's table (row ``row`` is this robot's)."""
    row: int = 0
    neighbours: int = 0
    """Neighbours in this robot's snapshot."""
    reasons: list[str] = field(default_factory=list)
    obs: np.ndarray | None = None
    """The policy's observation; None when an input was rejected (the tick hovers)."""
    v_nominal: np.ndarray = field(default_factory=lambda: np.zeros(3))
    yaw_rate: float = 0.0
    mode: CommandMode = CommandMode.HOVER
    latency_us: float | None = None

    def snapshot(self) -> NeighbourSnapshot:
        """This robot's neighbour snapshot (built on demand from the stack)."""
        return self.stack.snapshot(self.row)


class RobotController:
    """The decision step of robot ``name``.

    ``policy``: a ``velocity``-mode policy whose observation layout has ``neighbours.k``
    neighbour slots (else :class:`~swarm_rl.errors.PolicyMismatchError` naming the field).
    ``neighbours``: the table the node fills from its subscriptions. ``shield``: optional
    velocity filter. ``own_stale_s``: the oldest own state acted on. ``land_after_s``: how long
    the own state may stay bad (hovering) before landing at ``landing_speed_mps``.
    """

    def __init__(self, policy: OnnxPolicy, neighbours: NeighbourTable, name: str,
                 shield: VelocityShield | None = None, own_stale_s: float = 0.1,
                 land_after_s: float = 2.0, landing_speed_mps: float = 0.3) -> None:
        for key, value in (("own_stale_s", own_stale_s), ("land_after_s", land_after_s),
                           ("landing_speed_mps", landing_speed_mps)):
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{key}: must be a finite number >= 0, got {value}")
        if policy.action_mode != "velocity":
            raise PolicyMismatchError(
                f"{policy.path}: policy expects action_mode={policy.action_mode}, the robot "
                "runtime uses velocity (robots send velocity setpoints over the radio)",
                [("action_mode", policy.action_mode, "velocity")])
        policy.check_layout(ObsLayout(neighbours.k), "velocity", against="the robot runtime")
        if not math.isclose(policy.neighbour_range_m, neighbours.range_m, rel_tol=1e-9):
            log.warning("%s: %s: policy was trained with neighbour_range_m=%s, the neighbour "
                        "table uses %s", name, policy.path, policy.neighbour_range_m,
                        neighbours.range_m)
        self.policy = policy
        self.neighbours = neighbours
        self.name = name
        self.shield = shield
        self.own_stale_s = float(own_stale_s)
        self.land_after_s = float(land_after_s)
        self.landing_speed_mps = float(landing_speed_mps)
        self.rejected: Counter[str] = Counter()
        """Rejected own-state, goal and obstacle-patch inputs, by reason."""
        self._bad_since_s: float | None = None
        self._bad_for_s = 0.0
        self._default_patch = np.full(OBSTACLE_PATCH_SIZE, OBSTACLE_RANGE_M)

    # --- the tick --------------------------------------------------------------------------

    def step(self, now_s: float, own: OwnState | None, goal_m: np.ndarray,
             obstacle_patch_m: np.ndarray | None = None) -> Command:
        """This tick's command at time ``now_s``. ``goal_m``: (3,) world frame.
        ``obstacle_patch_m``: the 9 distances of the observation's obstacle patch
        (:data:`sim.observation.PATCH_OFFSETS_M`; ``inf`` = nothing there), None when no
        obstacles are known. The same code as :func:`step_robots` with one robot."""
        return step_robots([self], now_s, [own], [goal_m], [obstacle_patch_m])[0]

    def _prepare(self, now_s: float, own: OwnState | None, goal_m: np.ndarray,
                 obstacle_patch_m: np.ndarray | None, own_ok: bool = False,
                 goal_ok: bool = False) -> Command | _Tick:
        """The input checks: the blind command when the own state cannot be acted on, else
        the tick (with a reason when the goal or the patch was rejected: hover, shielded).
        ``own_ok``: :func:`_owns_acceptable` already passed ``own`` at ``now_s``; ``goal_ok``:
        :func:`_goals_acceptable` already passed ``goal_m`` (a float64 array, used as it is)."""
        reason = None if own_ok else self._check_own(own, now_s)
        if reason is not None:
            self.rejected[reason] += 1
            return self._blind_command(now_s, reason)
        self._bad_since_s, self._bad_for_s = None, 0.0
        assert own is not None  # _check_own returned None
        goal, why_goal = ((goal_m, None) if goal_ok
                          else _vector3(goal_m, MAX_POSITION_M, "goal"))
        patch, why_patch = self._patch(obstacle_patch_m)
        tick = _Tick(own, np.asarray(own.pos_m, float), np.asarray(own.vel_mps, float), goal,
                     patch)
        for why in (why_goal, why_patch):
            if why is not None:
                self.rejected[why] += 1
                tick.reasons.append(why)
        return tick

    def _run_policy(self, tick: _Tick) -> None:
        """The policy on this tick's observation alone."""
        start = time.perf_counter_ns()
        try:
            action, why = self.policy(tick.obs), None
        except NonFiniteObservation as exc:  # inputs were checked: float32 overflow
            action, why = None, "observation_nonfinite"
            log.warning("%s: %s", self.name, exc)
        except Exception:  # onnxruntime's own errors: hover, never crash the loop
            action, why = None, "policy_error"
            log.exception("%s: policy failed", self.name)
        self._use_action(tick, action, why, (time.perf_counter_ns() - start) / 1e3)

    def _use_action(self, tick: _Tick, action: np.ndarray | None, why: str | None,
                    latency_us: float) -> None:
        """The policy's action (None: it failed for reason ``why``) as the nominal command."""
        tick.latency_us = latency_us
        if action is not None and not np.isfinite(action).all():
            action, why = None, "policy_action_nonfinite"
        if action is None:
            tick.reasons.append(why)
        else:
            tick.v_nominal, tick.yaw_rate = self.policy.to_velocity_setpoint(action)
            tick.mode = CommandMode.POLICY

    def observe(self, now_s: float, own: OwnState, goal_m: np.ndarray,
                obstacle_patch_m: np.ndarray | None = None) -> np.ndarray:
        """The observation (obs_dim,) float32 that :meth:`step` would feed the policy for these
        inputs; ``ValueError`` where :meth:`step` would not run the policy."""
        reason = self._check_own(own, now_s)
        goal, why_goal = _vector3(goal_m, MAX_POSITION_M, "goal")
        patch, why_patch = self._patch(obstacle_patch_m)
        if reason or why_goal or why_patch:
            raise ValueError(f"{self.name}: no observation: {reason or why_goal or why_patch}")
        tick = _Tick(own, np.asarray(own.pos_m, float), np.asarray(own.vel_mps, float), goal,
                     patch)
        _observe([self], [tick], now_s)
        return tick.obs

    # --- pieces ----------------------------------------------------------------------------

    def _check_own(self, own: OwnState | None, now_s: float) -> str | None:
        """None if ``own`` can be acted on at ``now_s``, else the reason."""
        if not _finite(now_s):
            return "clock_nonfinite"
        if own is None:
            return "own_state_missing"
        try:
            pos = np.asarray(own.pos_m, dtype=float)
            vel = np.asarray(own.vel_mps, dtype=float)
            rot = np.asarray(own.rot, dtype=float)
            omega = np.asarray(own.omega_rad_s, dtype=float)
        except (TypeError, ValueError):
            return "own_state_bad_shape"
        if pos.shape != (3,) or vel.shape != (3,) or rot.shape != (3, 3) or omega.shape != (3,):
            return "own_state_bad_shape"
        if not (np.isfinite(pos).all() and np.isfinite(vel).all() and np.isfinite(rot).all()
                and np.isfinite(omega).all() and _finite(own.stamp_s)):
            return "own_state_nonfinite"
        if too_large(pos, MAX_POSITION_M):
            return "own_position_implausible"
        if too_large(vel, MAX_SPEED_MPS):
            return "own_velocity_implausible"
        if too_large(omega, MAX_BODY_RATE_RAD_S):
            return "own_body_rate_implausible"
        if (np.abs(rot).max() > 1.0 + ROTATION_TOL
                or np.abs(rot.T @ rot - np.eye(3)).max() > ROTATION_TOL
                or abs(np.linalg.det(rot) - 1.0) > ROTATION_TOL):
            return "own_rotation_invalid"
        age_s = float(now_s) - float(own.stamp_s)
        if age_s > self.own_stale_s:
            return "own_state_stale"
        if age_s < -self.own_stale_s:
            return "own_state_from_future"
        return None

    def _blind_command(self, now_s: float, reason: str) -> Command:
        """Hover, then land, while the own state cannot be acted on."""
        if _finite(now_s):  # without a clock the timer keeps its last value
            if self._bad_since_s is None:
                self._bad_since_s = float(now_s)
            self._bad_for_s = float(now_s) - self._bad_since_s
        if self._bad_for_s >= self.land_after_s:
            mode, velocity = CommandMode.LAND, np.array([0.0, 0.0, -self.landing_speed_mps])
        else:
            mode, velocity = CommandMode.HOVER, np.zeros(3)
        return Command(velocity, 0.0, mode,
                       CommandDiagnostics(reasons=(reason,), rejected=self._rejected()))

    def _patch(self, patch: np.ndarray | None) -> tuple[np.ndarray, str | None]:
        if patch is None:
            return self._default_patch, None
        try:
            arr = np.asarray(patch, dtype=float)
        except (TypeError, ValueError):
            return self._default_patch, "obstacle_patch_invalid"
        if (arr.shape != (OBSTACLE_PATCH_SIZE,) or np.isnan(arr).any()
                or (arr < MIN_OBSTACLE_DISTANCE_M).any()):
            return self._default_patch, "obstacle_patch_invalid"
        return np.minimum(arr, OBSTACLE_RANGE_M), None

    def _shielded(self, tick: _Tick,
                  shield_result: tuple[np.ndarray, Mapping[str, Any]] | None = None,
                  checked: bool = False,
                  neighbour_rejected: Mapping[str, int] | None = None) -> Command:
        """The tick's command through the shield; ``shield_result``: the shield's answer,
        when :func:`step_robots` has already asked it for several robots at once; ``checked``:
        its setpoint is known to be a finite float (3,) array (step_robots checks the stacked
        pass's setpoints in one call); ``neighbour_rejected``: the table's counts as
        :func:`_neighbour_rejected` gives them, when already read this tick."""
        reasons, v_nominal, yaw_rate, mode = tick.reasons, tick.v_nominal, tick.yaw_rate, tick.mode
        velocity, info = v_nominal, {}
        shielded = intervened = fallback = False
        if self.shield is not None:
            try:
                out, info = (shield_result if shield_result is not None
                             else self._ask_shield(tick))
                out = np.asarray(out, dtype=float)
                info = dict(info) if info is not None else {}
            except Exception:  # any shield failure: stop, never crash the loop
                log.exception("%s: shield failed", self.name)
                out, info = None, {}
                reasons.append("shield_error")
            if out is not None and not (checked or (out.shape == (3,)
                                                    and np.isfinite(out).all())):
                reasons.append("shield_output_invalid")
                out = None
            if out is None:
                velocity, fallback, mode = np.zeros(3), True, CommandMode.HOVER
            else:
                velocity, shielded = out, True
                intervened = bool(info["intervened"] if "intervened" in info
                                  else float(np.abs(out - v_nominal).max()) > 1e-9)
                fallback = bool(info.get("fallback", False))
                if fallback:
                    reasons.append("shield_fallback")
        # defence in depth (a shielded setpoint has just been checked finite)
        if not (math.isfinite(yaw_rate) and (shielded or np.isfinite(velocity).all())):
            velocity, yaw_rate, mode = np.zeros(3), 0.0, CommandMode.HOVER
            reasons.append("output_nonfinite")
        return Command(np.array(velocity, dtype=float), float(yaw_rate), mode,
                       CommandDiagnostics(tuple(reasons), shielded, intervened, fallback,
                                          tick.latency_us, tick.neighbours,
                                          self._rejected(neighbour_rejected), info))

    def _ask_shield(self, tick: _Tick) -> tuple[np.ndarray, Mapping[str, Any]]:
        """This robot's shield on the tick alone (world frame, SI): the safe setpoint and the
        shield's diagnostics."""
        snap = tick.snapshot()
        return self.shield(tick.pos, tick.vel, tick.v_nominal, snap.pos_m, snap.vel_mps,
                           snap.extra_radius_m)

    def _rejected(self, neighbour: Mapping[str, int] | None = None) -> dict[str, int]:
        """Rejected inputs so far: this robot's, then the table's (``neighbour``: those as
        :func:`_neighbour_rejected` gives them, if already read)."""
        out = dict(self.rejected)
        out.update(_neighbour_rejected(self.neighbours) if neighbour is None else neighbour)
        return out


def _neighbour_rejected(table: NeighbourTable) -> dict[str, int]:
    """The table's rejected updates by reason, keyed ``neighbour_<reason>``."""
    return {f"neighbour_{k}": v for k, v in table.rejected.items()}


def step_robots(controllers: Sequence[RobotController], now_s: float,
                owns: Sequence[OwnState | None], goals: Sequence[np.ndarray],
                obstacle_patches: Sequence[np.ndarray | None] | None = None, *,
                own_arrays: OwnArrays | None = None) -> list[Command]:
    """The commands of the robots one process hosts (each as :meth:`RobotController.step`
    describes), computed together: own states and goals screened at once, one neighbour-table
    query (a stacked snapshot, no per-robot snapshot objects) and one observation build per
    shared table, one policy call for every robot that shares the first one's policy, and one
    stacked shield pass (:func:`~swarm_rl.runtime.shield.filter_batch`, on the ticks' states
    and the stacked snapshot's rows) for those with a
    :class:`~swarm_rl.runtime.shield.CBFShield`, whose setpoints are checked finite at once.
    A failing batched policy call falls back to one call per robot (so each failure is
    named); ``policy_latency_us`` is each robot's share of the batched call. The batched
    network may differ from single calls in float32 rounding (~1e-7). ``own_arrays``: the
    own states' fields already stacked (see :data:`OwnArrays`), for a caller that built them
    from such rows; the screen then need not stack and type-check them again."""
    patches = obstacle_patches if obstacle_patches is not None else [None] * len(controllers)
    own_ok = _owns_acceptable(controllers, owns, now_s, own_arrays)
    goal_ok = _goals_acceptable(goals).tolist()
    ticks = [c._prepare(now_s, own, goal, patch, ok, good)
             for c, own, goal, patch, ok, good in zip(controllers, owns, goals, patches, own_ok,
                                                       goal_ok)]
    live = [k for k, t in enumerate(ticks) if isinstance(t, _Tick)]
    by_table: dict[int, list[int]] = {}
    for k in live:
        by_table.setdefault(id(controllers[k].neighbours), []).append(k)
    for group in by_table.values():
        _observe([controllers[k] for k in group], [ticks[k] for k in group], now_s)
    ready = [k for k in live if ticks[k].obs is not None]
    policy = controllers[ready[0]].policy if ready else None
    shared = [k for k in ready if controllers[k].policy is policy]
    if shared:
        start = time.perf_counter_ns()
        try:
            actions = policy(np.array([ticks[k].obs for k in shared]))  # rows as np.stack
        except Exception:  # one robot's bad observation: find it robot by robot
            actions = None
        share_us = (time.perf_counter_ns() - start) / 1e3 / len(shared)
        if actions is None:
            for k in shared:
                controllers[k]._run_policy(ticks[k])
        else:
            _use_actions(policy, [controllers[k] for k in shared], [ticks[k] for k in shared],
                         actions, share_us)
    for k in ready:
        if k not in shared:
            controllers[k]._run_policy(ticks[k])
    results, checked = _shield_results(controllers, ticks)
    tables = {id(c.neighbours): c.neighbours for c in controllers}
    rejected = {key: _neighbour_rejected(table) for key, table in tables.items()}  # once each
    return [t if isinstance(t, Command) else c._shielded(t, results.get(k), k in checked,
                                                         rejected[id(c.neighbours)])
            for k, (c, t) in enumerate(zip(controllers, ticks))]


def _use_actions(policy: OnnxPolicy, controllers: Sequence[RobotController],
                 ticks: Sequence[_Tick], actions: np.ndarray, share_us: float) -> None:
    """The batched policy call's actions (B, 4) as the ticks' nominal commands: the finite
    rows scaled to setpoints in one :meth:`OnnxPolicy.to_velocity_setpoint` call (the same
    elementwise arithmetic as one row alone), the others robot by robot (with their reason).
    ``share_us``: each robot's share of the call (us)."""
    finite = np.isfinite(actions).all(axis=1)
    velocity, yaw_rate = policy.to_velocity_setpoint(actions[finite])
    rows = iter(zip(velocity, yaw_rate.tolist()))
    for ctrl, tick, action, ok in zip(controllers, ticks, actions, finite.tolist()):
        if not ok:
            ctrl._use_action(tick, action, None, share_us)
            continue
        tick.latency_us = share_us
        tick.v_nominal, tick.yaw_rate = next(rows)
        tick.mode = CommandMode.POLICY


_MARGIN = 1e-9
"""Relative margin by which :func:`_owns_acceptable` stays inside every limit, so that its
stacked arithmetic (rounded differently from :meth:`RobotController._check_own`'s) can only
send a borderline state to the exact check, never pass one that the check would reject."""
SCREEN_MIN_ROBOTS = 4
"""Fewer robots than this are checked one by one: the stacked pass costs about as much as
three exact checks (measured: ~150 us against ~50 us each)."""


OwnArrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
"""The fields of B own states stacked: positions (B, 3), velocities (B, 3), rotations
(B, 3, 3) and body rates (B, 3), float64, row b exactly ``owns[b]``'s (which are then
:class:`OwnState` of float64 arrays of those shapes with float stamps), as a robot host has
them from a swarm-state message."""


def _owns_acceptable(controllers: Sequence[RobotController],
                     owns: Sequence[OwnState | None], now_s: float,
                     own_arrays: OwnArrays | None = None) -> np.ndarray:
    """(B,) True where ``RobotController._check_own`` would certainly pass ``owns[b]``,
    decided for all robots at once; False means "check it alone" (the exact check, with its
    reason). Only well-typed states (float64 arrays of the right shapes) are screened;
    ``own_arrays``: their fields already stacked (:data:`OwnArrays`: well typed)."""
    ok = np.zeros(len(owns), bool)
    if len(owns) < SCREEN_MIN_ROBOTS or not _finite(now_s):
        return ok
    if own_arrays is not None:
        pos, vel, rot, omega = own_arrays
    elif not _well_typed(owns):
        return ok
    else:
        pos = np.array([o.pos_m for o in owns])  # np.array: np.stack's rows, a third of its cost
        vel = np.array([o.vel_mps for o in owns])
        omega = np.array([o.omega_rad_s for o in owns])
        rot = np.array([o.rot for o in owns])
    age = float(now_s) - np.array([float(o.stamp_s) for o in owns])
    stale = np.array([float(c.own_stale_s) for c in controllers])
    contiguous = np.ascontiguousarray
    return own_states_pass(contiguous(pos), contiguous(vel), contiguous(rot), contiguous(omega),
                           age, stale, 1.0 - _MARGIN, MAX_POSITION_M, MAX_SPEED_MPS,
                           MAX_BODY_RATE_RAD_S, ROTATION_TOL)


def compile_kernels(shield: ShieldConfig | None) -> None:
    """Compile the hosted robots' compiled passes (the own-state screen and, with a shield
    config, the shield's stacked pass): seconds on a fresh install, ~0.4 s from numba's cache.
    A robot host calls this before its first tick, so that no tick pays it."""
    own_states_pass(np.zeros((1, 3)), np.zeros((1, 3)), np.eye(3)[None], np.zeros((1, 3)),
                    np.zeros(1), np.ones(1), 1.0 - _MARGIN, MAX_POSITION_M, MAX_SPEED_MPS,
                    MAX_BODY_RATE_RAD_S, ROTATION_TOL)
    if shield is not None:
        compile_stacked_pass(shield)


_F64 = np.dtype(np.float64)


def _goals_acceptable(goals: Sequence[object]) -> np.ndarray:
    """(B,) True where :func:`_vector3` would certainly accept ``goals[b]`` (world frame, m)
    as it is: a float64 (3,) array, finite, clearly inside ``MAX_POSITION_M``; decided for
    all robots at once (False: check it alone, with its reason)."""
    ok = np.zeros(len(goals), bool)
    if len(goals) < SCREEN_MIN_ROBOTS or not all(
            isinstance(g, np.ndarray) and g.dtype == _F64 and g.shape == (3,) for g in goals):
        return ok
    arr = np.array(goals)
    with np.errstate(all="ignore"):  # non-finite rows fail the tests below
        return (np.isfinite(arr).all(1)
                & (np.einsum("bi,bi->b", arr, arr) < ((1.0 - _MARGIN) * MAX_POSITION_M) ** 2))


def _well_typed(owns: Sequence[OwnState | None]) -> bool:
    """Every entry an :class:`OwnState` of float64 arrays of the right shapes ((3,), and (3, 3)
    for ``rot``) with a float or int stamp: the states :func:`_owns_acceptable` screens."""
    for o in owns:
        if not (isinstance(o, OwnState) and isinstance(o.stamp_s, float | int)):
            return False
        p, v, w, r = o.pos_m, o.vel_mps, o.omega_rad_s, o.rot
        if not (isinstance(p, np.ndarray) and isinstance(v, np.ndarray)
                and isinstance(w, np.ndarray) and isinstance(r, np.ndarray)
                and p.dtype == v.dtype == w.dtype == r.dtype == _F64
                and p.shape == v.shape == w.shape == (3,) and r.shape == (3, 3)):
            return False
    return True


def _observe(controllers: Sequence[RobotController], ticks: Sequence[_Tick],
             now_s: float) -> None:
    """Each tick's row of the stacked neighbour snapshot, and for those without a rejected
    input the layout observation, built by the one observation function (height = own z
    above the floor at z = 0, as in the simulator); the controllers share one neighbour
    table. (``np.array`` on the ticks' equal-shaped rows gives ``np.stack``'s array at a third
    of its cost.)"""
    table = controllers[0].neighbours
    pos = np.array([t.pos for t in ticks])
    stack = table.snapshot_stack([c.name for c in controllers], pos, now_s)
    for b, (t, count) in enumerate(zip(ticks, stack.count.tolist())):
        t.stack, t.row, t.neighbours = stack, b, count
    rows = np.array([b for b, t in enumerate(ticks) if not t.reasons], int)
    if not rows.size:
        return
    ready = [ticks[b] for b in rows]
    pos = pos[rows]
    vel = np.array([t.vel for t in ready])
    feats, mask = table.features_stack(stack, rows, pos, vel)
    obs = build_observation(pos - np.array([t.goal for t in ready]), vel,
                            np.array([np.asarray(t.own.rot, float) for t in ready]),
                            np.array([np.asarray(t.own.omega_rad_s, float) for t in ready]),
                            pos[:, 2:3], feats, mask, np.array([t.patch for t in ready]))
    for t, row in zip(ready, obs):
        t.obs = row


def _shield_results(controllers: Sequence[RobotController], ticks: list[Command | _Tick]
                    ) -> tuple[dict[int, tuple[np.ndarray, Mapping[str, Any]]], set[int]]:
    """The CBF shields' answers for every tick that has one, from one stacked pass over the
    ticks' states and snapshots (:func:`~swarm_rl.runtime.shield.filter_batch`, no per-robot
    :class:`~swarm_rl.runtime.shield.ShieldInput`), and the ticks whose setpoint (world frame,
    m/s) was found finite, all in one call; empty (each robot asks its own shield) if building
    the stacked inputs fails."""
    idx = [k for k, t in enumerate(ticks)
           if isinstance(t, _Tick) and isinstance(controllers[k].shield, CBFShield)]
    if not idx:
        return {}, set()
    shields = [controllers[k].shield for k in idx]
    live = [ticks[k] for k in idx]
    try:
        if len(live) == 1:  # one robot: its input alone costs less than a batch
            t = live[0]
            snap = t.snapshot()
            outs = filter_many(shields, [ShieldInput(t.pos, t.vel, t.v_nominal, snap.pos_m,
                                                     snap.vel_mps, snap.extra_radius_m)])
        else:
            outs = filter_batch(shields, _shield_batch(live))
    except Exception:
        log.exception("stacked shield pass failed; filtering robot by robot")
        return {}, set()
    setpoints = [out.velocity_setpoint_mps for out in outs]
    finite = (np.isfinite(np.array(setpoints)).all(axis=1).tolist()
              if all(v.shape == (3,) for v in setpoints) else [False] * len(outs))
    checked = {k for k, ok in zip(idx, finite) if ok}
    return ({k: (out.velocity_setpoint_mps, out.diagnostics()) for k, out in zip(idx, outs)},
            checked)


def _shield_batch(ticks: list[_Tick]) -> ShieldBatch:
    """The ticks' shield inputs stacked (world frame, SI): own rows, then every tick's seen
    neighbours one tick after the other, read from the ticks' stacked snapshot in one pass
    when they share one (the same arrays as their snapshots concatenated)."""
    pos = np.array([t.pos for t in ticks])
    vel = np.array([t.vel for t in ticks])
    nominal = np.array([t.v_nominal for t in ticks])
    stack = ticks[0].stack
    if all(t.stack is stack for t in ticks):
        nb_pos, nb_vel, extra = stack.neighbour_rows(np.array([t.row for t in ticks], np.intp))
        return ShieldBatch.of_rows(pos, vel, nominal, [t.neighbours for t in ticks], nb_pos,
                                   nb_vel, extra)
    snaps = [t.snapshot() for t in ticks]
    return ShieldBatch.of_arrays(pos, vel, nominal, [s.pos_m for s in snaps],
                                 [s.vel_mps for s in snaps], [s.extra_radius_m for s in snaps])


def _finite(value: object) -> bool:
    try:
        return math.isfinite(float(value))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


def _vector3(value: object, limit: float, what: str) -> tuple[np.ndarray, str | None]:
    """``value`` as a finite (3,) array with norm below ``limit``, or (zeros, reason)."""
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        return np.zeros(3), f"{what}_invalid"
    if arr.shape != (3,) or not np.isfinite(arr).all() or too_large(arr, limit):
        return np.zeros(3), f"{what}_invalid"
    return arr, None
