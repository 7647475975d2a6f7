"""Which QP solver for the CBF shield: solve time and agreement on the shield's own problems.

    PYTHONPATH=. python benchmarks/bench_qp.py [--problems 1000] [--rounds 3] [--seed 0] [--json]

Problems come from :meth:`swarm_rl.runtime.shield.CBFShield.build_qp` on random neighbourhoods
(0-28 neighbours within 0.35-2.5 m with random velocities, 0-6 columns, random nominal
setpoints, sometimes near the floor or the ceiling), keeping those whose nominal command is
unsafe and whose bounds are consistent (the shield calls a solver only then). All rows are kept
(the shield itself drops rows that cannot bind in the box, so this is the harder case): 3
variables, 6 bound sides plus 0-34 general rows. Each solver solves every problem
``--rounds`` times, interleaved with the other solvers; times are wall time of one call from
Python, including whatever conversion the solver's API needs (sparse matrices for OSQP and
Clarabel), over all problems, feasible or not (the shield must also be quick to learn that a
QP is infeasible). ProxQP is capped at 1000 iterations: uncapped, it spent up to ~70 ms on a
few infeasible problems it did not recognise, which made a run take minutes. Agreement:
largest difference of the solution from quadprog's (an exact dual active-set method) and
largest row violation; infeasibility: how many of the problems quadprog finds infeasible each
solver also reports so.

Solvers that are not installed are skipped (pip install daqp quadprog osqp clarabel
proxsuite piqp). Prints a table; with ``--json`` also the figures as one JSON object on the
last line.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata

import numpy as np

from swarm_rl.runtime.shield import CBFShield, ShieldConfig, ShieldInput, ShieldQP


@dataclass
class Problem:
    q: np.ndarray  # the shield's u_nom; objective 1/2 |x - q|^2
    g: np.ndarray
    rhs: np.ndarray
    lb: np.ndarray
    ub: np.ndarray

    @property
    def rows(self) -> int:
        """General rows plus the 6 bound sides."""
        return self.g.shape[0] + 6


Result = tuple[np.ndarray | None, bool]  # (x, reported infeasible)


def make_problems(count: int, seed: int) -> tuple[list[Problem], list[ShieldInput]]:
    """``count`` shield QPs that need a solver, and the inputs they came from."""
    rng = np.random.default_rng(seed)
    shield = CBFShield(ShieldConfig())
    out: list[Problem] = []
    inputs: list[ShieldInput] = []
    while len(out) < count:
        m, c = int(rng.integers(0, 29)), int(rng.integers(0, 7))
        z = rng.choice([rng.uniform(0.25, 0.6), rng.uniform(0.6, 3.0), rng.uniform(3.0, 3.45)])
        p = np.array([0.0, 0.0, z])
        v = rng.uniform(-1.5, 1.5, 3)
        direction = rng.normal(size=(m, 3))
        direction /= np.linalg.norm(direction, axis=1, keepdims=True)
        nb = p + direction * rng.uniform(0.35, 2.5, (m, 1))
        angle = rng.uniform(0, 2 * np.pi, c)
        centres = np.stack([np.cos(angle), np.sin(angle)], 1) * rng.uniform(0.45, 2.0, (c, 1))
        inp = ShieldInput(p, v, rng.uniform(-1.5, 1.5, 3), nb, rng.uniform(-1.5, 1.5, (m, 3)),
                          column_centres_m=centres, column_radii_m=np.full(c, 0.15))
        qp: ShieldQP = shield.build_qp(inp, shield.gamma_for(inp))
        nominal_safe = ((qp.g @ qp.u_nom <= qp.rhs).all() and (qp.lb <= qp.u_nom).all()
                        and (qp.u_nom <= qp.ub).all())
        if nominal_safe or not np.isfinite(qp.rhs).all() or (qp.lb > qp.ub).any():
            continue
        out.append(Problem(qp.u_nom, qp.g, qp.rhs, qp.lb, qp.ub))
        inputs.append(inp)
    return out, inputs


def time_filter(inputs: list[ShieldInput], rounds: int) -> dict[str, float]:
    """The whole ``CBFShield.filter`` call (rows, pruning, DAQP, checks) on the same inputs."""
    shield = CBFShield(ShieldConfig())
    t_us = []
    for _ in range(rounds):
        for inp in inputs:
            start = time.perf_counter()
            shield.filter(inp)
            t_us.append((time.perf_counter() - start) * 1e6)
    return {"p50_us": float(np.percentile(t_us, 50)), "p99_us": float(np.percentile(t_us, 99))}


# -- solver adapters: each takes a Problem, returns (x or None, infeasible?) ------------------

def _daqp() -> Callable[[Problem], Result]:
    import daqp
    eye = np.eye(3)

    def solve(pr: Problem) -> Result:
        m = pr.g.shape[0]
        x, _, flag, _ = daqp.solve(eye, -pr.q, pr.g, np.concatenate((pr.ub, pr.rhs)),
                                   np.concatenate((pr.lb, np.full(m, -np.inf))),
                                   np.zeros(3 + m, dtype=np.int32))
        return (x if flag in (1, 2) else None), flag == -1
    return solve


def _quadprog() -> Callable[[Problem], Result]:
    import quadprog
    eye, e3 = np.eye(3), np.eye(3)

    def solve(pr: Problem) -> Result:
        c = np.vstack((-pr.g, e3, -e3)).T  # C^T x >= b
        b = np.concatenate((-pr.rhs, pr.lb, -pr.ub))
        try:
            return quadprog.solve_qp(eye, pr.q, c, b, 0)[0], False
        except ValueError as e:
            return None, "inconsistent" in str(e)
    return solve


def _osqp() -> Callable[[Problem], Result]:
    import osqp
    from scipy import sparse
    p = sparse.csc_matrix(np.eye(3))

    def solve(pr: Problem) -> Result:
        a = sparse.csc_matrix(np.vstack((np.eye(3), pr.g)))
        lo = np.concatenate((pr.lb, np.full(pr.g.shape[0], -np.inf)))
        hi = np.concatenate((pr.ub, pr.rhs))
        s = osqp.OSQP()
        s.setup(p, -pr.q, a, lo, hi, verbose=False, eps_abs=1e-9, eps_rel=1e-9,
                polishing=True, max_iter=20000)
        r = s.solve(raise_error=False)
        status = r.info.status
        return (r.x if status in ("solved", "solved inaccurate") else None), (
            "primal infeasible" in status)
    return solve


def _clarabel() -> Callable[[Problem], Result]:
    import clarabel
    from scipy import sparse
    p = sparse.triu(sparse.csc_matrix(np.eye(3))).tocsc()
    settings = clarabel.DefaultSettings()
    settings.verbose = False

    def solve(pr: Problem) -> Result:
        a = sparse.csc_matrix(np.vstack((pr.g, np.eye(3), -np.eye(3))))
        b = np.concatenate((pr.rhs, pr.ub, -pr.lb))
        s = clarabel.DefaultSolver(p, -pr.q, a, b, [clarabel.NonnegativeConeT(b.shape[0])],
                                   settings)
        r = s.solve()
        status = str(r.status)
        return (np.array(r.x) if status in ("Solved", "AlmostSolved") else None), (
            "PrimalInfeasible" in status)
    return solve


def _proxsuite() -> Callable[[Problem], Result]:
    import proxsuite
    eye = np.eye(3)
    solved = proxsuite.proxqp.QPSolverOutput.PROXQP_SOLVED
    infeasible = proxsuite.proxqp.QPSolverOutput.PROXQP_PRIMAL_INFEASIBLE

    def solve(pr: Problem) -> Result:
        r = proxsuite.proxqp.dense.solve(H=eye, g=-pr.q, A=None, b=None, C=pr.g,
                                         l=np.full(pr.g.shape[0], -1e20), u=pr.rhs,
                                         l_box=pr.lb, u_box=pr.ub, eps_abs=1e-9, eps_rel=0.0,
                                         max_iter=1000)
        return (r.x if r.info.status == solved else None), r.info.status == infeasible
    return solve


def _piqp() -> Callable[[Problem], Result]:
    import piqp
    eye = np.asfortranarray(np.eye(3))

    def solve(pr: Problem) -> Result:
        s = piqp.DenseSolver()
        s.settings.eps_abs, s.settings.eps_rel = 1e-9, 0.0
        s.setup(eye, -pr.q, None, None, np.asfortranarray(pr.g), None, pr.rhs, pr.lb, pr.ub)
        status = s.solve()
        return (np.array(s.result.x) if status == piqp.PIQP_SOLVED else None), (
            status == piqp.PIQP_PRIMAL_INFEASIBLE)
    return solve


SOLVERS: dict[str, tuple[str, Callable[[], Callable[[Problem], Result]]]] = {
    "daqp": ("daqp", _daqp),
    "quadprog": ("quadprog", _quadprog),
    "proxsuite": ("proxsuite", _proxsuite),
    "piqp": ("piqp", _piqp),
    "osqp": ("osqp", _osqp),
    "clarabel": ("clarabel", _clarabel),
}


def _violation(pr: Problem, x: np.ndarray) -> float:
    worst = max(0.0, float(np.max(pr.lb - x)), float(np.max(x - pr.ub)))
    if pr.g.shape[0]:
        worst = max(worst, float(np.max(pr.g @ x - pr.rhs)))
    return worst


def run(problems: list[Problem], rounds: int) -> dict[str, dict]:
    solvers: dict[str, Callable[[Problem], Result]] = {}
    versions: dict[str, str] = {}
    for name, (dist, factory) in SOLVERS.items():
        try:
            solvers[name] = factory()
            versions[name] = metadata.version(dist)
        except ImportError:
            print(f"skipping {name}: not installed")
    if "quadprog" not in solvers:
        raise SystemExit("quadprog is the reference: pip install quadprog")
    times = {name: np.zeros((rounds, len(problems))) for name in solvers}
    results: dict[str, list[Result]] = {name: [] for name in solvers}
    for r in range(rounds):
        for i, pr in enumerate(problems):
            for name, solve in solvers.items():
                start = time.perf_counter()
                res = solve(pr)
                times[name][r, i] = time.perf_counter() - start
                if r == 0:
                    results[name].append(res)
    ref = results["quadprog"]
    rows = np.array([pr.rows for pr in problems])
    infeasible_ref = np.array([x is None and inf for x, inf in ref])
    report: dict[str, dict] = {}
    for name in solvers:
        t_us = times[name] * 1e6
        feasible = ~infeasible_ref
        diff, viol, failed = 0.0, 0.0, 0
        for (x, _), (x_ref, _), pr, ok in zip(results[name], ref, problems, feasible):
            if not ok:
                continue
            if x is None:
                failed += 1
                continue
            diff = max(diff, float(np.max(np.abs(x - x_ref))))
            viol = max(viol, _violation(pr, x))
        caught = sum(inf for (_, inf), bad in zip(results[name], infeasible_ref) if bad)
        by_size = {}
        for lo, hi in ((6, 12), (13, 24), (25, 40)):
            sel = (rows >= lo) & (rows <= hi)
            if sel.any():
                by_size[f"{lo}-{hi}"] = float(np.percentile(t_us[:, sel], 99))
        report[name] = {
            "version": versions[name],
            "p50_us": float(np.percentile(t_us, 50)),
            "p99_us": float(np.percentile(t_us, 99)),
            "max_us": float(t_us.max()),
            "p99_us_infeasible": float(np.percentile(t_us[:, infeasible_ref], 99))
            if infeasible_ref.any() else None,
            "p99_us_by_rows": by_size,
            "max_abs_diff_vs_quadprog": diff,
            "max_row_violation": viol,
            "failed_on_feasible": failed,
            "infeasible_detected": int(caught),
        }
    return {"problems": len(problems), "infeasible_problems": int(infeasible_ref.sum()),
            "rows_min": int(rows.min()), "rows_max": int(rows.max()), "rounds": rounds,
            "solvers": report}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--problems", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print a JSON object last")
    args = parser.parse_args()
    problems, inputs = make_problems(args.problems, args.seed)
    out = run(problems, args.rounds)
    out["shield_filter"] = time_filter(inputs, args.rounds)
    out.update(python=platform.python_version(), numpy=np.__version__, seed=args.seed)
    print(f"{out['problems']} shield QPs (3 variables, {out['rows_min']}-{out['rows_max']} "
          f"rows incl. 6 bound sides; {out['infeasible_problems']} infeasible), "
          f"{out['rounds']} rounds; times over all of them")
    print("| solver | version | p50 us | p99 us | p99 us by rows (6-12 / 13-24 / 25-40) "
          "| p99 us infeasible | max us | max abs diff vs quadprog | max row violation "
          "| failed on feasible | infeasible caught |")
    print("|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|")
    for name, r in sorted(out["solvers"].items(), key=lambda kv: kv[1]["p50_us"]):
        sizes = " / ".join(f"{v:.0f}" for v in r["p99_us_by_rows"].values())
        inf_p99 = r["p99_us_infeasible"]
        print(f"| {name} | {r['version']} | {r['p50_us']:.1f} | {r['p99_us']:.1f} | {sizes} | "
              f"{'-' if inf_p99 is None else f'{inf_p99:.0f}'} | {r['max_us']:.0f} | "
              f"{r['max_abs_diff_vs_quadprog']:.1e} | {r['max_row_violation']:.1e} | "
              f"{r['failed_on_feasible']} | {r['infeasible_detected']}/"
              f"{out['infeasible_problems']} |")
    f = out["shield_filter"]
    print(f"CBFShield.filter end to end (DAQP) on the same inputs: p50 {f['p50_us']:.0f} us, "
          f"p99 {f['p99_us']:.0f} us")
    if args.json:
        print(json.dumps(out))


if __name__ == "__main__":
    main()
