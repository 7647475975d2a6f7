"""The shield's small QP: nearest point to a nominal vector under linear rows and box bounds.

    minimise    1/2 |x - x_nom|^2
    subject to  G x <= rhs          (general rows, one per barrier that is not axis-aligned)
                lb <= x <= ub       (per-axis bounds)

Solved by DAQP (a dual active-set solver, Arnstrom et al. 2022), chosen by
``benchmarks/bench_qp.py``: on the shield's problems (3 variables, up to a few tens of rows) it
was the fastest of the solvers measured (see docs/benchmarks.md) and agreed with the others to
1e-9. The import is late so that a missing solver gives an error that says what to install.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from enum import Enum

import numpy as np


class QPStatus(str, Enum):
    OPTIMAL = "optimal"
    INFEASIBLE = "infeasible"
    ERROR = "error"


@dataclass(frozen=True)
class QPResult:
    x: np.ndarray
    """The solution (n,); only meaningful when ``status`` is OPTIMAL."""
    status: QPStatus
    solve_time_us: float
    """Wall time of the solver call, including the Python call overhead."""
    detail: str = ""
    """Solver-specific text for diagnostics (DAQP's exit flag)."""


_DAQP_OPTIMAL = (1, 2)  # optimal, soft-optimal
_DAQP_INFEASIBLE = -1


def _daqp():
    try:
        import daqp
    except ImportError as e:
        raise ImportError("the CBF shield needs the DAQP QP solver: pip install daqp") from e
    return daqp


def solve_nearest_point(x_nom: np.ndarray, g: np.ndarray, rhs: np.ndarray, lb: np.ndarray,
                        ub: np.ndarray) -> QPResult:
    """Solve the QP above. Inputs must be finite (``rhs`` may hold +inf); never raises on bad data.

    Inconsistent bounds (``lb > ub`` on some axis) are reported as INFEASIBLE without a solver
    call.
    """
    n = x_nom.shape[0]
    if np.any(lb > ub):
        return QPResult(x_nom.copy(), QPStatus.INFEASIBLE, 0.0, "lb > ub")
    daqp = _daqp()
    m = g.shape[0]
    bupper = np.concatenate((ub, rhs))
    blower = np.concatenate((lb, np.full(m, -np.inf)))
    start = time.perf_counter()
    try:
        x, _, flag, _ = daqp.solve(_eye(n), -x_nom, np.ascontiguousarray(g, dtype=np.float64),
                                   bupper, blower, np.zeros(n + m, dtype=np.int32))
    except Exception as e:  # noqa: BLE001 - a solver failure must become a fallback, not a crash
        elapsed = (time.perf_counter() - start) * 1e6
        return QPResult(x_nom.copy(), QPStatus.ERROR, elapsed, f"daqp raised {e!r}")
    elapsed = (time.perf_counter() - start) * 1e6
    x = np.asarray(x, dtype=np.float64)
    if flag in _DAQP_OPTIMAL and np.all(np.isfinite(x)):
        return QPResult(x, QPStatus.OPTIMAL, elapsed, f"daqp exit flag {flag}")
    if flag == _DAQP_INFEASIBLE:
        return QPResult(x, QPStatus.INFEASIBLE, elapsed, "daqp exit flag -1 (infeasible)")
    return QPResult(x, QPStatus.ERROR, elapsed, f"daqp exit flag {flag}")


_EYES: dict[int, np.ndarray] = {}


def _eye(n: int) -> np.ndarray:
    eye = _EYES.get(n)
    if eye is None:
        eye = _EYES[n] = np.eye(n)
    return eye
