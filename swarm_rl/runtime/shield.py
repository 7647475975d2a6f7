"""Decentralised control-barrier-function (CBF) safety shield, one per robot.

Each robot filters its own nominal world-frame velocity setpoint through a small QP built only
from what it observes (its own state, its neighbours' last known states, the static map):

    minimise    |u - u_nom|^2                  u: the robot's acceleration (3,), world frame
    subject to  one row per neighbour          pairwise double-integrator barrier
                one row per obstacle column    same barrier against a static vertical cylinder
                floor, ceiling, geofence       same barrier against each axis-aligned bound
                velocity box                   |v_k + u_k / k_v| <= v_max on each axis
                acceleration box               |u_k| <= a_max on each axis

The barrier (REFERENCE.md section 6; Wang, Ames, Egerstedt 2017) for a double integrator
p' = v, v' = u with braking capability a. For robot i and neighbour j, with
dp = p_i - p_j, d = |dp|, n = dp / d, dv = v_i - v_j, v_r = n.dv (= d'), A = a_i + a_j and the
safety distance D (``safety_distance_m`` plus the neighbour's extra radius):

    h = sqrt(2 A (d - D)) + v_r                                                   [m/s]

h >= 0 says "if both brake at full acceleration along n from now, they stop before d = D".
Differentiating, with dv' = u_i - u_j:

    d/dt sqrt(2 A (d - D)) = A v_r / sqrt(2 A (d - D))
    d/dt (dp.dv / d)       = (|dv|^2 - v_r^2) / d + n.(u_i - u_j)

so h' >= -gamma h^3 becomes one linear row in the accelerations:

    -n.(u_i - u_j) <= gamma h^3 + A v_r / sqrt(2 A (d - D)) + (|dv|^2 - v_r^2) / d

This is REFERENCE's ``-dp^T (u_i - u_j) <= b_ij`` divided by d > 0 (rows in acceleration units
keep tolerances meaningful). The square root in h and the ``A / sqrt(2 A (d - D))`` in the bound
come from the same function, so h and b are consistent (the factor-2 mismatch REFERENCE warns
of cannot occur: both come from one ``root`` value in :func:`_barrier_terms`).

Responsibility split: robot i cannot choose u_j, so it takes a_i / (a_i + a_j) of the bound
(0.5 for identical robots, GCBF+'s agent value) and assumes j takes the rest; the two rows sum
to the pairwise row above. Static obstacles (columns, floor, ceiling, geofence) cannot brake:
a_j = 0, A = a_i, and the robot takes all of the bound (responsibility 1.0). An axis-aligned
bound is a 1-D barrier (the tangential term vanishes), i.e. a bound on one component of u, so
floor / ceiling / geofence / velocity / acceleration limits all end up as per-axis bounds
``lb <= u <= ub``; neighbours and columns are the general rows ``G u <= rhs``.

Inside the safety distance (d < D) the square root is continued as ``-sqrt(2 A (D - d))``
(same derivative formula, h < 0), so the constraint then demands recovery (h' >= gamma |h|^3);
the ``1 / sqrt`` is floored at a gap of ``_MIN_GAP_M`` so that rows stay finite at d = D.

Velocity setpoint. The robot's velocity loop (the Crazyflie firmware's, or sim/controller.py's)
is modelled as ``v' = k_v (v_sp - v)``. The nominal acceleration is therefore
``u_nom = k_v (v_nom - v)`` and the safe setpoint is its exact inverse, ``v_sp = v + u / k_v``:
when the shield does not intervene the output is the nominal setpoint itself. (Integrating over
the control period, ``v + u dt_s``, is the special case k_v = 1/dt_s; with a tracker slower than
the control rate it would command only a fraction k_v dt_s of the intended acceleration.) The
velocity box uses the same horizon 1/k_v, so the setpoint is within v_max by construction.

Faults (DESIGN.md "Safety, faults and bad input"): the output is always finite and within
v_max on every axis. Non-finite input, an infeasible QP or a solver failure give the braking
fallback ``u = -a_brake v/|v|`` (no reversal: it stops at zero velocity), flagged in
:class:`ShieldOutput`. A barrier already negative (h < 0) is still solved when feasible, and
flagged ``violated``.

Imports neither torch nor pybullet.
"""
from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np

from swarm_rl.runtime.qp import QPResult, QPStatus, solve_nearest_point, solve_nearest_points
from swarm_rl.runtime.shield_kernel import check_solutions, prune_rows, stacked_qp

_MIN_GAP_M = 1e-3
"""Floor on |d - D| in the barrier's 1/sqrt term, so rows stay finite at the boundary."""
_MIN_DIST_M = 1e-9
"""Below this centre distance the direction n is undefined; +x is used (deep violation)."""
ROW_TOL = 1e-6
"""A row counts as active within this slack (m/s^2); a solution may violate a row by at most
this much before it is treated as a solver error."""
_RECHECK = ROW_TOL / 2
"""A stacked solution whose largest violation (m/s^2, rounded otherwise than ``filter``'s
matrix product, by ~1e-15) exceeds this is checked again exactly, robot by robot."""
_NOT_FINITE_QP = "QP data not finite (input out of any plausible range)"


class ShieldStatus(str, Enum):
    """What the shield did; every value but OK and VIOLATED means the braking fallback."""

    OK = "ok"
    VIOLATED = "violated"
    """The QP was solved, but some barrier was already negative (h < 0)."""
    INFEASIBLE = "infeasible"
    SOLVER_ERROR = "solver_error"
    NONFINITE_INPUT = "nonfinite_input"


_FALLBACK = frozenset({ShieldStatus.INFEASIBLE, ShieldStatus.SOLVER_ERROR,
                       ShieldStatus.NONFINITE_INPUT})


def _vec3(value: Any, name: str) -> tuple[float, float, float]:
    out = tuple(float(x) for x in value)
    if len(out) != 3:
        raise ValueError(f"ShieldConfig.{name}: must be three numbers (x, y, z), got {value!r}")
    return out  # type: ignore[return-value]


@dataclass(frozen=True)
class ShieldConfig:
    """Parameters of one robot's shield. SI units, world frame ENU."""

    safety_distance_m: float = 0.3
    """Ds: smallest allowed centre-to-centre distance between two robots."""
    obstacle_clearance_m: float = 0.15
    """Smallest allowed distance from a robot's centre to a column's surface (half of Ds: the
    robot's own share of the safety distance)."""
    a_max_mps2: float = 4.0
    """Acceleration limit per axis (the QP's box) and the braking capability a_i assumed by the
    barrier. The box |u_k| <= a_max contains every vector of norm a_max, so braking at a_max
    along any direction n is always inside it."""
    neighbour_a_max_mps2: float | None = None
    """Braking capability a_j assumed for neighbours; None: the same as ``a_max_mps2``."""
    v_max_mps: float = 1.5
    """Speed limit per axis of the output setpoint (the velocity box)."""
    gamma: float = 1.0
    """Class-K gain of ``h' >= -gamma h^3`` in s/m^2 (h is in m/s), the value in the open (the
    density rule divides it in clutter). With the cubic, a row can only bind once gamma h^3 is
    comparable to the accelerations involved, i.e. below h ~ (a_max / gamma)^(1/3) = 1.6 m/s
    for the defaults: two robots closing head-on at 2 x 1.5 m/s start to be slowed about 1.3 m
    before the safety distance, roughly twice their joint braking distance (9 / 16 = 0.56 m),
    which leaves room for a velocity loop that lags the commanded acceleration; robots flying
    side by side 1 m apart (h = 3.3 m/s) are untouched. Larger is less conservative (later,
    harder braking), smaller more. 1.0 is also the value of Wang, Ames and Egerstedt's
    experiments."""
    gamma_min: float = 0.1
    """Floor of the density rule and of any gamma set at run time."""
    gamma_max: float = 100.0
    """Ceiling of any gamma set at run time."""
    density_radius_m: float = 1.5
    """Neighbours whose centres are within this distance count as clutter for the density rule."""
    density_slope: float = 1.0
    """Density rule: gamma_eff = max(gamma_min, gamma / (1 + density_slope x count)); more
    neighbours nearby -> smaller gamma -> earlier, gentler intervention. With the defaults
    (gamma halved by one neighbour within 1.5 m, a third by two, ...) the share of
    tests/test_shield.py's crowded head-on trials in which some robot's QP became infeasible
    (so that it braked blindly) fell from about 1 in 5 with a constant gamma of 1 to about 1 in
    20, with velocity-loop lags of 0.1 and 0.25 s."""
    floor_m: float = 0.2
    """Lowest allowed height of the robot's centre."""
    ceiling_m: float = 3.5
    """Highest allowed height of the robot's centre."""
    geofence_lower_m: tuple[float, float, float] = (-4.5, -4.5, -math.inf)
    """Geofence box for the robot's centre, lower corner (x, y, z); +-inf disables a side. The z
    sides combine with floor / ceiling (the tighter wins). Defaults: the simulator's 10 x 10 x 4
    m room centred at the origin, less 0.5 m."""
    geofence_upper_m: tuple[float, float, float] = (4.5, 4.5, math.inf)
    brake_accel_mps2: float = 4.0
    """Deceleration of the braking fallback (along -v, no reversal)."""
    k_v_per_s: float = 4.0
    """Gain of the velocity loop that tracks the setpoint (1/s): u_nom = k_v (v_nom - v) and
    v_sp = v + u / k_v. 4.0 is ``sim/controller.py``'s velocity P gain."""
    dt_s: float = 0.02
    """Control period of the loop calling the shield. Must satisfy k_v dt_s <= 1 (a velocity loop
    cannot converge faster than it is commanded); the setpoint horizon 1/k_v is then >= dt_s."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "geofence_lower_m", _vec3(self.geofence_lower_m,
                                                           "geofence_lower_m"))
        object.__setattr__(self, "geofence_upper_m", _vec3(self.geofence_upper_m,
                                                           "geofence_upper_m"))
        positive = ("safety_distance_m", "obstacle_clearance_m", "a_max_mps2", "v_max_mps",
                    "gamma", "gamma_min", "gamma_max", "density_radius_m", "brake_accel_mps2",
                    "k_v_per_s", "dt_s")
        for name in positive:
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"ShieldConfig.{name}: must be finite and > 0, got {value!r}")
        a_j = self.neighbour_a_max_mps2
        if a_j is not None and not (math.isfinite(a_j) and a_j > 0):
            raise ValueError(f"ShieldConfig.neighbour_a_max_mps2: must be None or finite and > 0,"
                             f" got {a_j!r}")
        if not (math.isfinite(self.density_slope) and self.density_slope >= 0):
            raise ValueError(f"ShieldConfig.density_slope: must be finite and >= 0, got "
                             f"{self.density_slope!r}")
        if not self.gamma_min <= self.gamma <= self.gamma_max:
            raise ValueError(f"ShieldConfig.gamma: must be in [gamma_min, gamma_max] = "
                             f"[{self.gamma_min}, {self.gamma_max}], got {self.gamma}")
        if not (math.isfinite(self.floor_m) and math.isfinite(self.ceiling_m)
                and self.floor_m < self.ceiling_m):
            raise ValueError(f"ShieldConfig.floor_m / ceiling_m: need finite floor_m < ceiling_m,"
                             f" got {self.floor_m} and {self.ceiling_m}")
        lo, hi = np.array(self.geofence_lower_m), np.array(self.geofence_upper_m)
        if np.isnan(lo).any() or np.isnan(hi).any() or not (lo < hi).all():
            raise ValueError(f"ShieldConfig.geofence_lower_m / geofence_upper_m: need lower < "
                             f"upper on every axis, got {self.geofence_lower_m} and "
                             f"{self.geofence_upper_m}")
        if self.k_v_per_s * self.dt_s > 1.0 + 1e-12:
            raise ValueError(f"ShieldConfig.k_v_per_s: k_v x dt_s must be <= 1, got "
                             f"{self.k_v_per_s} x {self.dt_s}")

    @property
    def agent_responsibility(self) -> float:
        """a_i / (a_i + a_j): robot i's share of a pairwise bound (0.5 for identical robots).
        Derived, not set: any other split breaks the sum the pairwise guarantee relies on."""
        a_j = self.a_max_mps2 if self.neighbour_a_max_mps2 is None else self.neighbour_a_max_mps2
        return self.a_max_mps2 / (self.a_max_mps2 + a_j)

    @property
    def obstacle_responsibility(self) -> float:
        """1.0: a static obstacle cannot brake (a_j = 0), so the robot takes all of the bound."""
        return 1.0

    @property
    def lower_bounds_m(self) -> np.ndarray:
        """Per-axis lower position bound: the geofence, with the floor on z."""
        lo = np.array(self.geofence_lower_m)
        lo[2] = max(lo[2], self.floor_m)
        return lo

    @property
    def upper_bounds_m(self) -> np.ndarray:
        """Per-axis upper position bound: the geofence, with the ceiling on z."""
        hi = np.array(self.geofence_upper_m)
        hi[2] = min(hi[2], self.ceiling_m)
        return hi


def _array(value: Any, shape: tuple[int, ...], name: str) -> np.ndarray:
    """``value`` as a float64 array of ``shape``, whose first axis may be -1: any length (an
    empty value then has length 0); ValueError naming ``ShieldInput.<name>``."""
    arr = np.asarray(value, dtype=np.float64)
    want = shape
    if shape[:1] == (-1,):
        if arr.size == 0:
            arr = arr.reshape((0,) + shape[1:])
        want = arr.shape[:1] + shape[1:]
    if arr.shape != want:
        want = "x".join("M" if s == -1 else str(s) for s in shape)
        raise ValueError(f"ShieldInput.{name}: expected shape ({want}), got {arr.shape}")
    return arr


@dataclass
class ShieldInput:
    """What a robot observes at one control tick. World frame ENU, SI units.

    Shapes are checked here (a wrong shape is a programming error: ValueError); values are not:
    non-finite values are the shield's business (braking fallback, ``nonfinite_input``).
    """

    position_m: np.ndarray
    """(3,) own position."""
    velocity_mps: np.ndarray
    """(3,) own velocity."""
    nominal_velocity_mps: np.ndarray
    """(3,) the velocity setpoint to be filtered (e.g. the policy's)."""
    neighbour_positions_m: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    """(M, 3) neighbours' last known positions."""
    neighbour_velocities_mps: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    """(M, 3) neighbours' last known velocities."""
    neighbour_extra_radius_m: np.ndarray | None = None
    """(M,) added to the safety distance per neighbour (stale data); None: zeros. Negative
    values count as 0 (never less conservative)."""
    column_centres_m: np.ndarray | None = None
    """(C, 2) vertical obstacle columns' axes (x, y); None: the shield's own map."""
    column_radii_m: np.ndarray | None = None
    """(C,) the columns' radii; given together with ``column_centres_m``."""
    gamma: float | None = None
    """Per-tick override of the class-K gain (s/m^2), clamped to [gamma_min, gamma_max]."""

    def __post_init__(self) -> None:
        self.position_m = _array(self.position_m, (3,), "position_m")
        self.velocity_mps = _array(self.velocity_mps, (3,), "velocity_mps")
        self.nominal_velocity_mps = _array(self.nominal_velocity_mps, (3,),
                                           "nominal_velocity_mps")
        self.neighbour_positions_m = _array(self.neighbour_positions_m, (-1, 3),
                                            "neighbour_positions_m")
        m = self.neighbour_positions_m.shape[0]
        self.neighbour_velocities_mps = _array(self.neighbour_velocities_mps, (m, 3),
                                               "neighbour_velocities_mps")
        if self.neighbour_extra_radius_m is None:
            self.neighbour_extra_radius_m = np.zeros(m)
        else:
            self.neighbour_extra_radius_m = _array(self.neighbour_extra_radius_m, (m,),
                                                   "neighbour_extra_radius_m")
        if (self.column_centres_m is None) != (self.column_radii_m is None):
            raise ValueError("ShieldInput.column_centres_m / column_radii_m: give both or neither")
        if self.column_centres_m is not None:
            self.column_centres_m = _array(self.column_centres_m, (-1, 2), "column_centres_m")
            self.column_radii_m = _array(self.column_radii_m, (self.column_centres_m.shape[0],),
                                         "column_radii_m")
        if self.gamma is not None:
            self.gamma = float(self.gamma)


@dataclass(frozen=True)
class ShieldOutput:
    """The filtered command and what the shield did to get it."""

    velocity_setpoint_mps: np.ndarray
    """(3,) safe world-frame velocity setpoint; always finite, |component| <= v_max."""
    acceleration_mps2: np.ndarray
    """(3,) the safe acceleration it stands for (the QP solution, or the braking fallback)."""
    status: ShieldStatus
    intervened: bool
    """The setpoint differs from the nominal one (always True in a fallback)."""
    active_constraints: int
    """Rows and bound sides active (within ROW_TOL) at the solution; 0 in a fallback."""
    min_barrier: float
    """Smallest barrier value h (m/s) over neighbours, columns and position bounds; +inf when
    there is none, NaN when the input was not finite. Negative: already inside a safety set's
    boundary."""
    gamma: float
    """The class-K gain used this tick (NaN when the input was not finite)."""
    num_rows: int
    """General rows handed to the solver (after dropping rows that cannot bind in the box)."""
    solve_time_us: float
    """Wall time of the QP solver call; 0 when none was needed (nominal already safe)."""
    filter_time_us: float
    """Wall time of the whole filter call."""
    detail: str = ""
    """Solver detail for a fallback (e.g. its exit flag)."""

    @property
    def fallback(self) -> bool:
        """The braking fallback was commanded instead of a QP solution."""
        return self.status in _FALLBACK

    @property
    def reason(self) -> str | None:
        """Why the output is not a plain QP solution: a :class:`ShieldStatus` value, or None."""
        return None if self.status is ShieldStatus.OK else self.status.value

    @property
    def violated(self) -> bool:
        """Some barrier was already negative (also true in an infeasible fallback)."""
        return self.min_barrier < 0

    def diagnostics(self) -> dict[str, Any]:
        """Plain-typed summary for a status message or a log line."""
        return {"intervened": self.intervened, "fallback": self.fallback,
                "reason": self.reason, "status": self.status.value,
                "active_constraints": self.active_constraints,
                "min_barrier": self.min_barrier, "gamma": self.gamma,
                "num_rows": self.num_rows, "solve_time_us": self.solve_time_us,
                "filter_time_us": self.filter_time_us}


@dataclass(frozen=True)
class ShieldQP:
    """The QP one tick builds: min |u - u_nom|^2 s.t. G u <= rhs, lb <= u <= ub."""

    u_nom: np.ndarray
    """(3,) nominal acceleration k_v (v_nom - v)."""
    g: np.ndarray
    """(R, 3) general rows: the neighbours' first, then the columns'."""
    rhs: np.ndarray
    """(R,) their bounds (already scaled by the responsibility share)."""
    lb: np.ndarray
    """(3,) per-axis lower bound: acceleration box, velocity box, position-bound barriers."""
    ub: np.ndarray
    """(3,) per-axis upper bound, likewise."""
    barrier: np.ndarray
    """Barrier values h (m/s): neighbours, columns, then the finite position bounds."""


_NO_ROWS = np.zeros(0)


def _bound_axes(bounds_m: np.ndarray) -> slice | np.ndarray:
    """The axes on which the position bounds ``bounds_m`` (3,) are finite, as an index: all of
    them as a slice (views, no gather: the common case), else their indices."""
    finite = np.isfinite(bounds_m)
    return slice(None) if finite.all() else np.flatnonzero(finite)


def _barrier_terms(gap_m: np.ndarray, v_r: np.ndarray, a_sum: float | np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:
    """h and the ``A v_r / sqrt(2 A (d - D))`` term of the bound, from ONE square root.

    ``gap_m`` = d - D (may be negative: signed continuation), ``v_r`` = the rate of the
    distance, ``a_sum`` = A. Returns (h, rate_term).
    """
    root = np.sqrt(2.0 * a_sum * np.abs(gap_m))
    h = np.copysign(root, gap_m) + v_r
    floor = math.sqrt(2.0 * _MIN_GAP_M) * np.sqrt(a_sum)
    rate_term = a_sum * v_r / np.maximum(root, floor)
    return h, rate_term


def _barrier_rows(dp: np.ndarray, dv: np.ndarray, safety_m: np.ndarray, a_sum: float,
                  share: float, gamma: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows ``-n.u <= share * b / d`` for relative positions/velocities ``dp``, ``dv`` (K, dim).

    Returns (normals n (K, dim), rhs (K,), h (K,)); the row's coefficients are ``-n``.
    """
    d = np.sqrt(_dot_rows(dp, dp))
    coincident = d < _MIN_DIST_M
    n = dp / np.where(coincident, 1.0, d)[:, None]
    if coincident.any():
        n[coincident] = 0.0
        n[coincident, 0] = 1.0
    v_r = _dot_rows(n, dv)
    tangential = np.maximum(_dot_rows(dv, dv) - v_r * v_r, 0.0)
    h, rate_term = _barrier_terms(d - safety_m, v_r, a_sum)
    b_over_d = gamma * h ** 3 + rate_term + tangential / np.maximum(d, _MIN_GAP_M)
    return n, share * b_over_d, h


class CBFShield:
    """One robot's shield. ``filter(ShieldInput) -> ShieldOutput``; also callable as the
    runtime's ``VelocityShield`` (see :meth:`__call__`).

    ``gamma``: None (default) applies :meth:`density_gamma` each tick; set a float at run time
    (e.g. from an online-CBF policy) to fix this robot's gain. A ``ShieldInput.gamma`` overrides
    both for one tick. Set values are clamped to [gamma_min, gamma_max].

    ``column_centres_m`` (C, 2) and ``column_radii_m`` (C,): the static map of vertical columns,
    used when a ShieldInput gives none.
    """

    def __init__(self, config: ShieldConfig | None = None,
                 column_centres_m: np.ndarray | None = None,
                 column_radii_m: np.ndarray | None = None) -> None:
        self.config = config if config is not None else ShieldConfig()
        centres = np.zeros((0, 2)) if column_centres_m is None else column_centres_m
        radii = np.zeros((0,)) if column_radii_m is None else column_radii_m
        self.column_centres_m = _array(centres, (-1, 2), "column_centres_m")
        self.column_radii_m = _array(radii, (self.column_centres_m.shape[0],), "column_radii_m")
        if not (np.isfinite(self.column_centres_m).all() and np.isfinite(self.column_radii_m).all()
                and (self.column_radii_m >= 0).all()):
            raise ValueError("CBFShield: column centres must be finite and radii finite >= 0")
        self._gamma: float | None = None
        c = self.config
        self._a_sum = c.a_max_mps2 + (c.a_max_mps2 if c.neighbour_a_max_mps2 is None
                                      else c.neighbour_a_max_mps2)
        lo, hi = c.lower_bounds_m, c.upper_bounds_m
        self._has_lo, self._has_hi = _bound_axes(lo), _bound_axes(hi)
        self._lo, self._hi = lo[self._has_lo], hi[self._has_hi]
        self._lo_axes = np.flatnonzero(np.isfinite(lo))  # the same axes, for the kernel
        self._hi_axes = np.flatnonzero(np.isfinite(hi))

    # -- gamma ------------------------------------------------------------------------------
    @property
    def gamma(self) -> float | None:
        """This robot's fixed class-K gain, or None for the density rule."""
        return self._gamma

    @gamma.setter
    def gamma(self, value: float | None) -> None:
        if value is None:
            self._gamma = None
            return
        value = float(value)
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"CBFShield.gamma: must be finite and > 0 (or None), got {value}")
        self._gamma = self._clamp_gamma(value)

    def _clamp_gamma(self, value: float) -> float:
        return min(max(value, self.config.gamma_min), self.config.gamma_max)

    def density_gamma(self, num_neighbours: int) -> float:
        """Default gain from the neighbourhood: ``max(gamma_min, gamma / (1 + slope x count))``.

        ``num_neighbours``: neighbours within ``density_radius_m``. Non-increasing in the count
        (strictly decreasing until gamma_min): more conservative in clutter, as the seed paper's
        online CBF learns to be."""
        c = self.config
        return max(c.gamma_min, c.gamma / (1.0 + c.density_slope * max(int(num_neighbours), 0)))

    def gamma_for(self, inp: ShieldInput) -> float:
        """The gain a tick uses: the input's override, else the set gamma, else the density
        rule. Assumes finite input."""
        if inp.gamma is not None or self._gamma is not None:
            return self.gain(inp.gamma, 0)
        dp = inp.neighbour_positions_m - inp.position_m
        count = int(np.count_nonzero(_dot_rows(dp, dp)
                                     <= self.config.density_radius_m ** 2))
        return self.density_gamma(count)

    def gain(self, override: float | None, near: int) -> float:
        """The gain (s/m^2) of a tick with the gain override ``override`` (finite or None) and
        ``near`` neighbours within ``density_radius_m``: :meth:`gamma_for`'s rule."""
        if override is not None:
            return self._clamp_gamma(override) if override > 0 else self.config.gamma_min
        if self._gamma is not None:
            return self._gamma
        return self.density_gamma(near)

    # -- the QP -----------------------------------------------------------------------------
    def build_qp(self, inp: ShieldInput, gamma: float) -> ShieldQP:
        """Every row of one tick's QP (finite input assumed). See the module docstring."""
        c = self.config
        p, v = inp.position_m, inp.velocity_mps
        a_i = c.a_max_mps2
        u_nom = c.k_v_per_s * (inp.nominal_velocity_mps - v)

        # Neighbours: pairwise barrier, A = a_i + a_j, share a_i / (a_i + a_j).
        n_nb, rhs_nb, h_nb = _barrier_rows(
            p - inp.neighbour_positions_m, v - inp.neighbour_velocities_mps,
            c.safety_distance_m + np.maximum(inp.neighbour_extra_radius_m, 0.0), self._a_sum,
            c.agent_responsibility, gamma)
        # Columns: horizontal barrier to a static cylinder, A = a_i, share 1.
        if inp.column_centres_m is None:
            centres, radii = self.column_centres_m, self.column_radii_m
        else:
            centres, radii = inp.column_centres_m, inp.column_radii_m
        if centres.shape[0]:
            n_col, rhs_col, h_col = _barrier_rows(
                p[:2] - centres, np.tile(v[:2], (centres.shape[0], 1)),
                np.maximum(radii, 0.0) + c.obstacle_clearance_m, a_i,
                c.obstacle_responsibility, gamma)
            g = np.zeros((n_nb.shape[0] + n_col.shape[0], 3))
            g[:n_nb.shape[0]] = -n_nb
            g[n_nb.shape[0]:, :2] = -n_col
            rhs = np.concatenate((rhs_nb, rhs_col))
        else:  # no columns (the common case): skip their empty arrays
            g, rhs, h_col = -n_nb, rhs_nb, _NO_ROWS

        # Acceleration box, and velocity box |v + u / k_v| <= v_max; where |v_k| is already
        # above v_max the velocity side is relaxed to "brake at a_max" so the box stays
        # consistent (the output setpoint is clipped to v_max anyway).
        k = c.k_v_per_s
        ub = np.minimum(a_i, np.maximum(-a_i, k * (c.v_max_mps - v)))
        lb = np.maximum(-a_i, np.minimum(a_i, k * (-c.v_max_mps - v)))

        # Position bounds: 1-D barriers (share 1, A = a_i), i.e. bounds on u_k.
        # Lower bound L: n = +e_k, gap = p_k - L, v_r = v_k: -u_k <= gamma h^3 + rate.
        # Upper bound U: n = -e_k, gap = U - p_k, v_r = -v_k: u_k <= gamma h^3 + rate.
        has_lo, has_hi = self._has_lo, self._has_hi
        h_lo, rate_lo = _barrier_terms(p[has_lo] - self._lo, v[has_lo], a_i)
        h_hi, rate_hi = _barrier_terms(self._hi - p[has_hi], -v[has_hi], a_i)
        lb[has_lo] = np.maximum(lb[has_lo], -(gamma * h_lo ** 3 + rate_lo))
        ub[has_hi] = np.minimum(ub[has_hi], gamma * h_hi ** 3 + rate_hi)
        return ShieldQP(u_nom, g, rhs, lb, ub, np.concatenate((h_nb, h_col, h_lo, h_hi)))

    # -- the filter -------------------------------------------------------------------------
    def filter(self, inp: ShieldInput) -> ShieldOutput:
        """Filter one tick's nominal setpoint. Never raises on bad values; see the module doc."""
        start = time.perf_counter()
        if not _finite_input(inp):
            return self._brake(inp.velocity_mps, ShieldStatus.NONFINITE_INPUT, math.nan,
                               math.nan, 0, 0.0, start, "non-finite value in the input")
        gamma = self.gamma_for(inp)
        return self._filter_qp(inp, self.build_qp(inp, gamma), gamma, start)

    def _filter_qp(self, inp: ShieldInput, qp: ShieldQP, gamma: float, start: float,
                   screened: bool = False) -> ShieldOutput:
        """:meth:`filter` from the built QP on (finite input); ``start``: when the filter
        call began (perf_counter s), for ``filter_time_us``. ``screened``: the stacked pass
        of :func:`filter_many` found the QP well formed and the nominal command unsafe, so
        go straight to the solver."""
        min_h = float(qp.barrier.min()) if qp.barrier.size else math.inf
        ok = ShieldStatus.VIOLATED if min_h < 0 else ShieldStatus.OK
        if not (screened or _well_formed(qp)):  # finite but absurd input (1e200 m/s) overflowed
            return self._brake(inp.velocity_mps, ShieldStatus.SOLVER_ERROR, min_h, gamma, 0,
                               0.0, start, _NOT_FINITE_QP)
        # Fast path: the nominal acceleration already satisfies every row and bound
        # (filter_many takes the same decision for many robots at once).
        if not screened and _nominal_is_safe(qp):
            active = _count_active(qp, qp.u_nom)
            return ShieldOutput(_clip_v(inp.nominal_velocity_mps, self.config),
                                qp.u_nom.copy(), ok, False, active, min_h, gamma, 0, 0.0,
                                _us_since(start))
        # Drop rows that cannot bind anywhere in the box: max over the box of G u <= rhs.
        keep = ~(_reach(qp.g, qp.lb, qp.ub) <= qp.rhs)
        result = solve_nearest_point(qp.u_nom, qp.g[keep], qp.rhs[keep], qp.lb, qp.ub)
        rows = int(np.count_nonzero(keep))
        if result.status is QPStatus.INFEASIBLE:
            return self._brake(inp.velocity_mps, ShieldStatus.INFEASIBLE, min_h, gamma, rows,
                               result.solve_time_us, start, result.detail)
        u = np.clip(result.x, qp.lb, qp.ub)  # bounds exactly; rows checked below
        if result.status is not QPStatus.OPTIMAL or _violation(qp, u) > ROW_TOL:
            detail = result.detail if result.status is not QPStatus.OPTIMAL else (
                f"solution violates a row by {_violation(qp, u):.3g}")
            return self._brake(inp.velocity_mps, ShieldStatus.SOLVER_ERROR, min_h, gamma, rows,
                               result.solve_time_us, start, detail)
        v_sp = _clip_v(inp.velocity_mps + u / self.config.k_v_per_s, self.config)
        intervened = bool(np.any(np.abs(v_sp - inp.nominal_velocity_mps) > 1e-9))
        return ShieldOutput(v_sp, u, ok, intervened, _count_active(qp, u), min_h, gamma, rows,
                            result.solve_time_us, _us_since(start), result.detail)

    def __call__(self, own_pos: np.ndarray, own_vel: np.ndarray, v_nominal: np.ndarray,
                 neighbour_pos: np.ndarray, neighbour_vel: np.ndarray,
                 neighbour_extra_radius: np.ndarray) -> tuple[np.ndarray, Mapping[str, Any]]:
        """The runtime's ``VelocityShield`` protocol (swarm_rl/runtime/robot.py): the safe
        setpoint and :meth:`ShieldOutput.diagnostics`. Columns come from the shield's map."""
        out = self.filter(ShieldInput(own_pos, own_vel, v_nominal, neighbour_pos,
                                      neighbour_vel, neighbour_extra_radius))
        return out.velocity_setpoint_mps, out.diagnostics()

    def _brake(self, v: np.ndarray, status: ShieldStatus, min_h: float, gamma: float,
               rows: int, solve_us: float, start: float, detail: str) -> ShieldOutput:
        """Braking fallback from the own velocity ``v`` (3,) (world frame, m/s): u = -a_brake
        v/|v|, no harder than stopping within 1/k_v (no reversal); with a non-finite own
        velocity, zero velocity (hover)."""
        c = self.config
        if np.isfinite(v).all():
            speed = float(np.sqrt(v @ v))
            decel = min(c.brake_accel_mps2, speed * c.k_v_per_s)
            u = -decel * v / speed if speed > 0 else np.zeros(3)
            # v + u / k_v, written as a scale in [0, 1] so it cannot reverse by rounding
            scale = max(0.0, 1.0 - decel / (speed * c.k_v_per_s)) if speed > 0 else 0.0
            v_sp = _clip_v(scale * v, c)
        else:
            u, v_sp = np.zeros(3), np.zeros(3)
        return ShieldOutput(v_sp, u, status, True, 0, min_h, gamma, rows, solve_us,
                            _us_since(start), detail)


def filter_many(shields: Sequence[CBFShield], inputs: Sequence[ShieldInput]
                ) -> list[ShieldOutput]:
    """``[s.filter(inp) for s, inp in zip(shields, inputs)]``, the same outputs, for the robots
    one process hosts: every robot's QP is built in one pass over all robots' stacked rows,
    the fast-path test (the nominal command already satisfies every row and bound) runs on
    them at once, and only the robots that fail it go on to the solver, with their slice of
    the stacked rows (:func:`filter_batch` describes the rest)."""
    start = time.perf_counter()
    if len(shields) != len(inputs):
        raise ValueError(f"filter_many: {len(shields)} shields but {len(inputs)} inputs")
    outs: list[ShieldOutput | None] = [None] * len(inputs)
    config = shields[0].config if shields else None
    idx = [b for b, (sh, inp) in enumerate(zip(shields, inputs))
           if _stackable(sh, config) and inp.column_centres_m is None]
    if len(idx) >= 2:  # one robot alone: filter is cheaper than the stacked pass
        _filter_stack(config, [shields[b] for b in idx], ShieldBatch.of([inputs[b] for b in idx]),
                      [inputs[b].gamma for b in idx], idx, outs, start)
    return [out if out is not None else sh.filter(inp)
            for out, sh, inp in zip(outs, shields, inputs)]


def filter_batch(shields: Sequence[CBFShield], batch: ShieldBatch) -> list[ShieldOutput]:
    """:func:`filter_many` of the inputs ``batch`` stacks (``batch.input(k)`` for robot k),
    without building them: the same outputs. Robots whose shield has another config than the
    first one's or a column map, or whose input is not finite, run ``filter`` instead, as does
    a robot alone (the stacked pass pays off from two robots: 270 against 280 us, 3.3x faster
    at 16). ``filter_time_us`` of a robot counts its share of the stacked pass, and a solving
    robot's share of the solving stage as well."""
    start = time.perf_counter()
    if len(shields) != len(batch.counts):
        raise ValueError(f"filter_batch: {len(shields)} shields but {len(batch.counts)} inputs")
    outs: list[ShieldOutput | None] = [None] * len(shields)
    config = shields[0].config if shields else None
    idx = [b for b, sh in enumerate(shields) if _stackable(sh, config)]
    if len(idx) >= 2:
        sub = batch if len(idx) == len(shields) else batch.take(np.array(idx, np.intp))
        _filter_stack(config, [shields[b] for b in idx], sub, [None] * len(idx), idx, outs,
                      start)
    return [out if out is not None else sh.filter(batch.input(k))
            for k, (out, sh) in enumerate(zip(outs, shields))]


def compile_stacked_pass(config: ShieldConfig) -> None:
    """Compile the stacked pass's kernels (seconds on a fresh install, then loaded from
    numba's cache in about 0.4 s) by filtering two robots' made-up inputs whose nominal
    setpoints (far above any speed limit) must be solved, so that a robot host pays it
    before its first tick rather than in it."""
    shields = [CBFShield(config), CBFShield(config)]
    batch = ShieldBatch.of_rows(np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 1.0]]), np.zeros((2, 3)),
                                np.array([[100.0, 0.0, 0.0], [-100.0, 0.0, 0.0]]), [1, 1],
                                np.array([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]]),
                                np.zeros((2, 3)), np.zeros(2))
    filter_batch(shields, batch)


def _stackable(shield: CBFShield, config: ShieldConfig | None) -> bool:
    """``shield`` can share the stacked pass of robots configured by ``config``."""
    return ((shield.config is config or shield.config == config)
            and not shield.column_centres_m.shape[0])


def _filter_stack(c: ShieldConfig, shields: list[CBFShield], batch: ShieldBatch,
                  gammas: list[float | None], idx: list[int], outs: list[ShieldOutput | None],
                  start: float) -> None:
    """The stacked pass on the robots of ``batch`` whose input is finite (the others keep
    ``outs[idx[k]]`` None, for ``filter``); ``gammas``: their inputs' gain overrides."""
    finite = batch.finite(gammas)
    if not finite.all():
        keep = np.flatnonzero(finite)
        if keep.size < 2:
            return
        shields = [shields[k] for k in keep.tolist()]
        gammas = [gammas[k] for k in keep.tolist()]
        idx = [idx[k] for k in keep.tolist()]
        batch = batch.take(keep)
    _screen(c, shields, batch, gammas, idx, outs, start)


def _rows(value: Any, shape: tuple[int, ...], name: str) -> np.ndarray:
    """``value`` as a C-ordered float64 array of exactly ``shape`` (the layout the compiled
    stacked pass is compiled for); ValueError naming ``ShieldBatch.<name>``."""
    arr = np.ascontiguousarray(value, dtype=np.float64)
    if arr.shape != shape:
        raise ValueError(f"ShieldBatch.{name}: expected shape {shape}, got {arr.shape}")
    return arr


def _check_shapes(name: str, arrays: Sequence[np.ndarray], want: list[tuple[int, ...]]
                  ) -> None:
    """ValueError naming ``ShieldBatch.<name>`` unless robot k's array has shape ``want[k]``
    (the neighbour count M_k from ``nb_pos``)."""
    shapes = [a.shape for a in arrays]
    if shapes != want:
        raise ValueError(f"ShieldBatch.{name}: expected shapes {want} (M per robot from "
                         f"nb_pos), got {shapes}")


@dataclass(frozen=True)
class ShieldBatch:
    """Several robots' inputs stacked (world frame ENU, SI units), as :class:`ShieldInput`
    holds one robot's, without columns or gain overrides: own rows (n, 3), and every robot's
    neighbour rows one after the other with their ``owner``. Shapes are checked by
    :meth:`of_arrays`; values are not (non-finite ones are the shield's business)."""

    pos: np.ndarray
    """(n, 3) own positions."""
    vel: np.ndarray
    """(n, 3) own velocities."""
    nominal: np.ndarray
    """(n, 3) nominal velocity setpoints."""
    counts: list[int]
    """Neighbour rows of each robot."""
    owner: np.ndarray
    """(R,) the robot each neighbour row belongs to."""
    nb_pos: np.ndarray
    """(R, 3) neighbours' positions."""
    nb_vel: np.ndarray
    """(R, 3) neighbours' velocities."""
    extra: np.ndarray
    """(R,) neighbours' extra safety radii (m; negative counts as 0)."""

    @classmethod
    def of(cls, inputs: Sequence[ShieldInput]) -> ShieldBatch:
        """The batch of already checked inputs (their columns and gains are not kept)."""
        counts = [inp.neighbour_positions_m.shape[0] for inp in inputs]
        return cls(np.stack([inp.position_m for inp in inputs]),
                   np.stack([inp.velocity_mps for inp in inputs]),
                   np.stack([inp.nominal_velocity_mps for inp in inputs]), counts,
                   np.repeat(np.arange(len(inputs)), counts),
                   np.concatenate([inp.neighbour_positions_m for inp in inputs]),
                   np.concatenate([inp.neighbour_velocities_mps for inp in inputs]),
                   np.concatenate([inp.neighbour_extra_radius_m for inp in inputs]))

    @classmethod
    def of_arrays(cls, pos: Any, vel: Any, nominal: Any, nb_pos: Sequence[np.ndarray],
                  nb_vel: Sequence[np.ndarray], extra: Sequence[np.ndarray]) -> ShieldBatch:
        """The batch of n robots: ``pos``, ``vel``, ``nominal`` (n, 3); robot k's neighbours,
        numpy arrays ``nb_pos[k]``, ``nb_vel[k]`` (M_k, 3) and ``extra[k]`` (M_k,). The same
        arrays as :meth:`of` on the robots' :class:`ShieldInput`; a wrong shape is a
        ValueError naming the field."""
        counts = [a.shape[0] if a.ndim else -1 for a in nb_pos]
        _check_shapes("nb_pos", nb_pos, [(m, 3) for m in counts])
        _check_shapes("nb_vel", nb_vel, [(m, 3) for m in counts])
        _check_shapes("extra", extra, [(m,) for m in counts])
        n, rows = len(counts), sum(counts)
        return cls(_rows(pos, (n, 3), "pos"), _rows(vel, (n, 3), "vel"),
                   _rows(nominal, (n, 3), "nominal"), counts, np.repeat(np.arange(n), counts),
                   _rows(np.concatenate(nb_pos) if n else np.zeros((0, 3)), (rows, 3), "nb_pos"),
                   _rows(np.concatenate(nb_vel) if n else np.zeros((0, 3)), (rows, 3), "nb_vel"),
                   _rows(np.concatenate(extra) if n else np.zeros(0), (rows,), "extra"))

    @classmethod
    def of_rows(cls, pos: Any, vel: Any, nominal: Any, counts: list[int], nb_pos: Any,
                nb_vel: Any, extra: Any) -> ShieldBatch:
        """The batch of n robots from neighbour rows already stacked: ``pos``, ``vel``,
        ``nominal`` (n, 3); robot k's ``counts[k]`` neighbours the k-th run of rows of
        ``nb_pos``, ``nb_vel`` (R, 3) and ``extra`` (R,), R = ``sum(counts)``. The same batch
        as :meth:`of_arrays` on the runs; a wrong shape is a ValueError naming the field."""
        n, rows = len(counts), sum(counts)
        if min(counts, default=0) < 0:
            raise ValueError(f"ShieldBatch.counts: must be >= 0, got {counts}")
        return cls(_rows(pos, (n, 3), "pos"), _rows(vel, (n, 3), "vel"),
                   _rows(nominal, (n, 3), "nominal"), list(counts),
                   np.repeat(np.arange(n), counts), _rows(nb_pos, (rows, 3), "nb_pos"),
                   _rows(nb_vel, (rows, 3), "nb_vel"), _rows(extra, (rows,), "extra"))

    def input(self, k: int) -> ShieldInput:
        """Robot k's :class:`ShieldInput` (views of the batch's rows)."""
        end = int(np.sum(self.counts[:k + 1]))
        begin = end - self.counts[k]
        return ShieldInput(self.pos[k], self.vel[k], self.nominal[k], self.nb_pos[begin:end],
                           self.nb_vel[begin:end], self.extra[begin:end])

    def take(self, robots: np.ndarray) -> ShieldBatch:
        """The batch of the robots ``robots`` ((k,) increasing indices), in that order."""
        member = np.zeros(len(self.counts), bool)
        member[robots] = True
        rows = member[self.owner]
        counts = [self.counts[k] for k in robots.tolist()]
        return ShieldBatch(self.pos[robots], self.vel[robots], self.nominal[robots], counts,
                           np.repeat(np.arange(len(counts)), counts), self.nb_pos[rows],
                           self.nb_vel[rows], self.extra[rows])

    def finite(self, gammas: Sequence[float | None]) -> np.ndarray:
        """(n,) :func:`_finite_input` of each robot (inputs without columns), from the
        stacked arrays; ``gammas``: the inputs' ``gamma`` overrides."""
        own = (np.isfinite(self.pos).all(axis=1) & np.isfinite(self.vel).all(axis=1)
               & np.isfinite(self.nominal).all(axis=1))
        rows = (np.isfinite(self.nb_pos).all(axis=1) & np.isfinite(self.nb_vel).all(axis=1)
                & np.isfinite(self.extra))
        gamma = np.array([g is None or math.isfinite(g) for g in gammas], bool)
        return own & gamma & (np.bincount(self.owner[~rows], minlength=len(own)) == 0)


@dataclass(frozen=True)
class _StackedQP:
    """Every robot's :class:`ShieldQP` of a stacked pass, rows one robot after the other."""

    owner: np.ndarray
    """(R,) the robot each row belongs to."""
    g: np.ndarray
    """(R, 3) rows."""
    rhs: np.ndarray
    """(R,) their bounds."""
    u_nom: np.ndarray
    """(n, 3) nominal accelerations (m/s^2)."""
    lb: np.ndarray
    """(n, 3) per-axis lower bounds (m/s^2)."""
    ub: np.ndarray
    """(n, 3) per-axis upper bounds (m/s^2)."""
    gamma: np.ndarray
    """(n,) the gains used (s/m^2)."""
    min_h: np.ndarray
    """(n,) smallest barrier value (m/s) of each robot."""


def _screen(c: ShieldConfig, shields: list[CBFShield], batch: ShieldBatch,
            gammas: list[float | None], idx: list[int], outs: list[ShieldOutput | None],
            start: float) -> None:
    """:func:`filter_many`'s stacked pass on finite inputs: the rows and bounds of
    :meth:`CBFShield.build_qp` for every robot at once (the same bits as one robot's), from
    ``batch`` (``gammas``: the inputs' gain overrides); fills ``outs[idx[k]]`` for robot k, by
    the fast path when its nominal acceleration already satisfies them, else by solving its
    slice of the rows (:func:`_solve_stacked`, as ``filter``)."""
    qp, well, fast, active = _stacked_qp(c, shields, batch, gammas)
    share_us = _us_since(start) / len(idx)
    v_fast = _clip_v(batch.nominal, c)
    u_fast = qp.u_nom.copy()
    min_h, gamma, active = qp.min_h.tolist(), qp.gamma.tolist(), active.tolist()
    for j in np.flatnonzero(fast).tolist():
        outs[idx[j]] = ShieldOutput(v_fast[j], u_fast[j], ShieldStatus.VIOLATED if min_h[j] < 0
                                    else ShieldStatus.OK, False, active[j], min_h[j], gamma[j],
                                    0, 0.0, share_us)
    for j in np.flatnonzero(~well).tolist():  # finite but absurd input overflowed
        outs[idx[j]] = shields[j]._brake(batch.vel[j], ShieldStatus.SOLVER_ERROR, min_h[j],
                                         gamma[j], 0, 0.0, time.perf_counter() - share_us * 1e-6,
                                         _NOT_FINITE_QP)
    solve = np.flatnonzero(well & ~fast)
    if solve.size:
        _solve_stacked(c, shields, batch, qp, solve, [idx[j] for j in solve.tolist()], outs,
                       share_us)


def _stacked_qp(c: ShieldConfig, shields: list[CBFShield], batch: ShieldBatch,
                gammas: list[float | None]
                ) -> tuple[_StackedQP, np.ndarray, np.ndarray, np.ndarray]:
    """:meth:`CBFShield.build_qp` of every robot of ``batch`` at once (no columns), compiled
    (:func:`~swarm_rl.runtime.shield_kernel.stacked_qp`), with the fast-path screen: the QP,
    and per robot whether it is well formed (no NaN), whether its nominal acceleration
    already meets every row and bound, and how many rows and bounds bind there (within
    ``ROW_TOL``)."""
    ref = shields[0]
    fixed = np.array([sh.gain(override, 0) if override is not None or sh.gamma is not None
                      else math.nan for sh, override in zip(shields, gammas)])
    g, rhs, u_nom, lb, ub, gamma, min_h, well, fast, active = stacked_qp(
        batch.pos, batch.vel, batch.nominal, batch.owner, batch.nb_pos, batch.nb_vel,
        batch.extra, fixed, ref._lo, ref._lo_axes, ref._hi, ref._hi_axes,
        c.safety_distance_m, ref._a_sum, c.agent_responsibility, c.a_max_mps2, c.k_v_per_s,
        c.v_max_mps, c.gamma, c.gamma_min, c.density_slope, c.density_radius_m, _MIN_GAP_M,
        _MIN_DIST_M, ROW_TOL)
    return _StackedQP(batch.owner, g, rhs, u_nom, lb, ub, gamma, min_h), well, fast, active


def _solve_stacked(c: ShieldConfig, shields: list[CBFShield], batch: ShieldBatch,
                   qp: _StackedQP, solve: np.ndarray, idx: list[int],
                   outs: list[ShieldOutput | None], share_us: float) -> None:
    """``_filter_qp``'s solving part for the robots ``solve`` of the stacked pass (their QP
    well formed, their nominal command unsafe), with ``outs[idx[s]]`` for robot ``solve[s]``:
    the rows that cannot bind pruned, the solutions clipped, checked and counted for all of
    them at once; only the solver runs robot by robot. ``share_us``: each robot's share of the
    stacked pass so far (us)."""
    start = time.perf_counter()
    g, rhs, own, keep, rows = prune_rows(solve, qp.owner, qp.g, qp.rhs, qp.lb, qp.ub)
    lb, ub = qp.lb[solve], qp.ub[solve]
    results = solve_nearest_points(qp.u_nom[solve], g[keep], rhs[keep], rows, lb, ub)
    u, worst, active, v_sp, intervened = check_solutions(
        np.array([r.x for r in results], dtype=np.float64), lb, ub, g, rhs, own,
        batch.vel[solve], batch.nominal[solve], c.k_v_per_s, c.v_max_mps, ROW_TOL)
    counts = np.bincount(own, minlength=solve.size)
    ends = np.cumsum(counts)
    filter_us = share_us + _us_since(start) / solve.size
    begin = time.perf_counter() - filter_us * 1e-6
    gammas, min_hs = qp.gamma[solve].tolist(), qp.min_h[solve].tolist()
    recheck = (worst > _RECHECK).tolist()
    intervened, active, rows = intervened.tolist(), active.tolist(), rows.tolist()
    for s, (j, result) in enumerate(zip(solve.tolist(), results)):
        gamma, min_h = gammas[s], min_hs[s]
        if result.status is QPStatus.OPTIMAL and recheck[s]:  # exactly, as filter checks
            part = slice(ends[s] - counts[s], ends[s])
            exact = _violation(ShieldQP(qp.u_nom[j], g[part], rhs[part], lb[s], ub[s],
                                        _NO_ROWS), u[s])
            if exact > ROW_TOL:
                result = QPResult(result.x, QPStatus.ERROR, result.solve_time_us,
                                  f"solution violates a row by {exact:.3g}")
        if result.status is not QPStatus.OPTIMAL:
            status = (ShieldStatus.INFEASIBLE if result.status is QPStatus.INFEASIBLE
                      else ShieldStatus.SOLVER_ERROR)
            outs[idx[s]] = shields[j]._brake(batch.vel[j], status, min_h, gamma, rows[s],
                                             result.solve_time_us, begin, result.detail)
            continue
        outs[idx[s]] = ShieldOutput(v_sp[s], u[s], ShieldStatus.VIOLATED if min_h < 0
                                    else ShieldStatus.OK, intervened[s], active[s], min_h,
                                    gamma, rows[s], result.solve_time_us, filter_us,
                                    result.detail)


def _finite_input(inp: ShieldInput) -> bool:
    arrays = (inp.position_m, inp.velocity_mps, inp.nominal_velocity_mps,
              inp.neighbour_positions_m, inp.neighbour_velocities_mps,
              inp.neighbour_extra_radius_m)
    if not all(np.isfinite(a).all() for a in arrays):
        return False
    if inp.column_centres_m is not None and not (np.isfinite(inp.column_centres_m).all()
                                                 and np.isfinite(inp.column_radii_m).all()):
        return False
    return inp.gamma is None or math.isfinite(inp.gamma)


def _well_formed(qp: ShieldQP) -> bool:
    """No NaN anywhere, finite nominal and row coefficients (+-inf bounds are meaningful)."""
    return bool(np.isfinite(qp.u_nom).all() and np.isfinite(qp.g).all()
                and not (np.isnan(qp.rhs).any() or np.isnan(qp.lb).any()
                         or np.isnan(qp.ub).any()))


def _nominal_is_safe(qp: ShieldQP) -> bool:
    """The nominal acceleration satisfies every row and bound (NaN compares as unsafe)."""
    return bool((qp.rhs - _row_dot(qp.g, qp.u_nom) >= 0).all() and (qp.lb <= qp.u_nom).all()
                and (qp.u_nom <= qp.ub).all())


def _violation(qp: ShieldQP, u: np.ndarray) -> float:
    """Largest violation of any row or bound at u (0 when all hold)."""
    worst = max(0.0, float((qp.lb - u).max()), float((u - qp.ub).max()))
    if qp.g.shape[0]:
        worst = max(worst, float((qp.g @ u - qp.rhs).max()))
    return worst


def _count_active(qp: ShieldQP, u: np.ndarray) -> int:
    rows = int(np.count_nonzero(_row_dot(qp.g, u) >= qp.rhs - ROW_TOL))
    return rows + int(np.count_nonzero(u <= qp.lb + ROW_TOL)) + int(
        np.count_nonzero(u >= qp.ub - ROW_TOL))


def _reach(g: np.ndarray, lb: np.ndarray, ub: np.ndarray) -> np.ndarray:
    """(R,) the largest value of each row ``g`` (R, 3) over the box [lb, ub] ((3,) or per-row
    (R, 3), m/s^2): a row whose reach is within its bound cannot bind anywhere in the box."""
    corner = np.maximum(g * lb, g * ub)
    return corner[:, 0] + corner[:, 1] + corner[:, 2]


def _row_dot(g: np.ndarray, u: np.ndarray) -> np.ndarray:
    """(R,) products of rows ``g`` (R, 3) with ``u`` (3,) or per-row (R, 3), written out so
    that one robot's rows give the same bits alone or stacked with other robots' rows."""
    return g[:, 0] * u[..., 0] + g[:, 1] * u[..., 1] + g[:, 2] * u[..., 2]


def _dot_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(K,) dot products of the rows of ``a`` and ``b`` (K, dim), summed in axis order: the
    order the compiled stacked pass (:mod:`swarm_rl.runtime.shield_kernel`) sums in, so that
    both give the same bits (``np.einsum`` pairs the terms as its SIMD width suits)."""
    out = a[:, 0] * b[:, 0]
    for k in range(1, a.shape[1]):
        out = out + a[:, k] * b[:, k]
    return out


def _clip_v(v: np.ndarray, config: ShieldConfig) -> np.ndarray:
    return np.clip(v, -config.v_max_mps, config.v_max_mps)


def _us_since(start: float) -> float:
    return (time.perf_counter() - start) * 1e6
