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
from functools import cache

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
_OPTIMAL_DETAIL = {flag: f"daqp exit flag {flag}" for flag in _DAQP_OPTIMAL}
_DAQP_INFEASIBLE = -1


@cache
def _daqp():
    """The DAQP module, imported once."""
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
    if np.any(lb > ub):
        return QPResult(x_nom.copy(), QPStatus.INFEASIBLE, 0.0, "lb > ub")
    m = g.shape[0]
    return _solve(x_nom, -x_nom, g, np.concatenate((ub, rhs)),
                  np.concatenate((lb, np.full(m, -np.inf))))


def solve_nearest_points(x_nom: np.ndarray, g: np.ndarray, rhs: np.ndarray, counts: np.ndarray,
                         lb: np.ndarray, ub: np.ndarray) -> list[QPResult]:
    """:func:`solve_nearest_point` of S problems at once, the same results: problem s has
    ``x_nom[s]``, ``lb[s]``, ``ub[s]`` ((S, n) each) and the ``counts[s]`` rows of ``g`` (R, n)
    and ``rhs`` (R,) that follow problem s - 1's. The solver's bound vectors are built for all
    problems in one pass; each solver call gets views of them."""
    s_count, n = x_nom.shape
    counts = np.asarray(counts, dtype=np.intp)
    width = n + counts
    offset = np.cumsum(width) - width
    bupper = np.empty(int(width.sum()))
    blower = np.full(bupper.shape[0], -np.inf)
    box = (offset[:, None] + np.arange(n)).ravel()
    bupper[box], blower[box] = ub.ravel(), lb.ravel()
    first_row = np.cumsum(counts) - counts
    bupper[np.repeat(offset + n - first_row, counts) + np.arange(g.shape[0])] = rhs
    g = np.ascontiguousarray(g, dtype=np.float64)
    f = -x_nom
    inconsistent = (lb > ub).any(axis=1).tolist()
    out = []
    for s, (lo, rows, bad) in enumerate(zip(offset.tolist(), counts.tolist(), inconsistent)):
        if bad:
            out.append(QPResult(x_nom[s].copy(), QPStatus.INFEASIBLE, 0.0, "lb > ub"))
            continue
        start = first_row[s]
        out.append(_solve(x_nom[s], f[s], g[start:start + rows], bupper[lo:lo + n + rows],
                          blower[lo:lo + n + rows]))
    return out


def _solve(x_nom: np.ndarray, f: np.ndarray, g: np.ndarray, bupper: np.ndarray,
           blower: np.ndarray) -> QPResult:
    """One DAQP call on consistent bounds: ``f`` = -x_nom, ``bupper``/``blower`` the n box
    bounds then the rows' (+-inf where there is none)."""
    daqp = _daqp()
    n = x_nom.shape[0]
    start = time.perf_counter()
    try:
        x, _, flag, _ = daqp.solve(_eye(n), f, np.ascontiguousarray(g, dtype=np.float64),
                                   bupper, blower, np.zeros(bupper.shape[0], dtype=np.int32))
    except Exception as e:  # noqa: BLE001 - a solver failure must become a fallback, not a crash
        elapsed = (time.perf_counter() - start) * 1e6
        return QPResult(x_nom.copy(), QPStatus.ERROR, elapsed, f"daqp raised {e!r}")
    elapsed = (time.perf_counter() - start) * 1e6
    x = np.asarray(x, dtype=np.float64)
    if flag in _DAQP_OPTIMAL and np.isfinite(x).all():
        return QPResult(x, QPStatus.OPTIMAL, elapsed, _OPTIMAL_DETAIL[flag])
    if flag == _DAQP_INFEASIBLE:
        return QPResult(x, QPStatus.INFEASIBLE, elapsed, "daqp exit flag -1 (infeasible)")
    return QPResult(x, QPStatus.ERROR, elapsed, f"daqp exit flag {flag}")


_EYES: dict[int, np.ndarray] = {}


def _eye(n: int) -> np.ndarray:
    eye = _EYES.get(n)
    if eye is None:
        eye = _EYES[n] = np.eye(n)
    return eye
