"""Tune the market baseline: its return for each arrival discount ``market_lambda``.

    PYTHONPATH=. python benchmarks/market_lambda.py [--presets mrta_paper,mrta_room_8]
        [--lambdas 0.1,0.2,0.4] [--seed 50] [--seeds 3] [--episodes 96]
        [--plot docs/market_lambda.png] [--json]

The market (:func:`sim.mrta.allocators.market_env`) awards coalitions by fitness
``L^2 exp(-lambda T)``, T the slowest member's arrival time in decision steps. The seed paper
does not give lambda, so each preset sets the value that scores best here (``market_lambda``
in ``config/mrta/NAME.yaml``). Tune on evaluation seeds that the reported tables do not use
(default 50-52; the tables use 0-4), so the baseline is chosen as a learned policy's
checkpoint is. Prints one row per preset: return (mean over seeds) and level-3 completions
per lambda, the best lambda, and the preset's own; ``--plot`` draws return against lambda.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from sim.mrta.config import load_mrta_env
from swarm_rl.mrta.evaluate import baseline_method, run_method

DEFAULT_PRESETS = "mrta_paper,mrta_paper_arrival_001,mrta_paper_arrival_004,mrta_room_8"
DEFAULT_LAMBDAS = "0.05,0.1,0.2,0.3,0.4,0.5,0.6,0.8,1,1.5,2,3,5"


def sweep(preset: str, lambdas: list[float], seeds: list[int], episodes: int
          ) -> dict[str, object]:
    """The market on ``preset`` for every lambda: return and level-3 completions (mean over
    seeds, and each seed's return)."""
    base = load_mrta_env(preset)
    rows = []
    for lam in lambdas:
        cfg = dataclasses.replace(base, market_lambda=lam).validate()
        result = run_method(baseline_method("market", cfg), seeds, episodes)
        rows.append({"lambda": lam, "return": result.row("return")["mean"],
                     "return_per_seed": result.per_seed["return"],
                     "completed_L3": result.row("completed_L3")["mean"]})
    best = max(rows, key=lambda r: r["return"])
    return {"preset": preset, "preset_lambda": base.market_lambda, "best_lambda": best["lambda"],
            "rows": rows}


def plot(results: list[dict], path: Path) -> Path:
    """One panel per preset: return against lambda (log axis), the best value marked."""
    from swarm_rl.plots import _colours, _figure, _save

    cols = min(2, len(results))
    rows = -(-len(results) // cols)
    fig = _figure((4.2 * cols, 3.0 * rows))
    for k, (colour, res) in enumerate(zip(_colours(len(results)), results)):
        ax = fig.add_subplot(rows, cols, k + 1)
        lams = [r["lambda"] for r in res["rows"]]
        ax.plot(lams, [r["return"] for r in res["rows"]], "o-", color=colour)
        best = next(r for r in res["rows"] if r["lambda"] == res["best_lambda"])
        ax.plot([best["lambda"]], [best["return"]], "k*", markersize=12,
                label=f"best {best['lambda']:g}: {best['return']:.1f}")
        ax.set_xscale("log")
        ax.set_title(res["preset"], fontsize=9)
        ax.set_xlabel("market_lambda (per decision step)", fontsize=8)
        ax.set_ylabel("market return (sum of L^2)", fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, path)


def table(results: list[dict]) -> str:
    lams = [r["lambda"] for r in results[0]["rows"]]
    head = "| preset | " + " | ".join(f"{lam:g}" for lam in lams) + " | best | preset's |"
    lines = [head, "|---|" + "---:|" * (len(lams) + 2)]
    for res in results:
        cells = [f"{r['return']:.1f} ({r['completed_L3']:.1f})" for r in res["rows"]]
        lines.append(f"| {res['preset']} | " + " | ".join(cells)
                     + f" | {res['best_lambda']:g} | {res['preset_lambda']:g} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--presets", default=DEFAULT_PRESETS)
    ap.add_argument("--lambdas", default=DEFAULT_LAMBDAS)
    ap.add_argument("--seed", type=int, default=50, help="first evaluation seed")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--episodes", type=int, default=96, help="episodes per seed")
    ap.add_argument("--plot", type=Path)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    try:
        lambdas = [float(x) for x in args.lambdas.split(",")]
    except ValueError:
        ap.error(f"--lambdas: expected numbers separated by commas, got {args.lambdas!r}")
    if args.seeds < 1 or args.episodes < 1 or min(lambdas) <= 0:
        ap.error("--seeds and --episodes must be >= 1 and every lambda > 0 (a log axis)")
    seeds = list(range(args.seed, args.seed + args.seeds))
    results = [sweep(p, lambdas, seeds, args.episodes) for p in args.presets.split(",")]
    print(f"market return (level-3 completions) per lambda; seeds {seeds[0]}-{seeds[-1]} x "
          f"{args.episodes} episodes")
    print(table(results))
    if args.plot:
        print(f"wrote {plot(results, args.plot)}")
    if args.json:
        print(json.dumps({"seeds": seeds, "episodes": args.episodes, "results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
