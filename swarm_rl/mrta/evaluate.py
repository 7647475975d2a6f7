"""Evaluation of task allocators: the learned policy, the market and greedy baselines, and
ablations, on MRTA presets; the logic behind ``swarm-rl eval --scenario mrta_...``.

An :data:`Allocator` maps the environment's state and observations to every robot's target
(task-table slot, -1: no task). The learned policy and greedy choose from the observation
alone; the market reads the positions its project managers would hear (see
:mod:`sim.mrta.allocators`). A preset with ``motion: drones`` (``mrta_paper_drones``) flies
every decision on the simulated Crazyflies under the CBF shield (:mod:`swarm_rl.mrta.flight`;
slow: minutes per handful of episodes).

Seeds: ``seeds`` evaluation seeds S = seed, seed + 1, ...; episode k of seed S draws from its
own generator ``swarm_rl.evaluate.episode_rng(S + 10_000 k)`` (the same convention as the
swarm evaluation, never a training stream), so every method meets the same episodes and an
episode does not depend on its batch. Per method and seed the table takes the mean over
``episodes`` episodes; it reports the mean over seeds, the seed-to-seed standard deviation
(``seed_std``) and a 95 % interval over all episodes (``ci95``).
"""
from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from sim.errors import ConfigError
from sim.mrta.allocators import greedy_actions, market_targets
from sim.mrta.config import MRTAConfig
from sim.mrta.env import MRTAVecEnv
from sim.mrta.observation import MRTAObservation
from swarm_rl import files
from swarm_rl.evaluate import Z_95, episode_rng, eval_seeds

Allocator = Callable[[MRTAVecEnv, MRTAObservation], np.ndarray]
"""(env, its current observations) -> targets (E, N) as task slots (-1: no task)."""
METRICS = ("return", "completed_L1", "completed_L2", "completed_L3", "travel_per_robot_m")
LABELS = {"return": "return (sum of L^2)", "completed_L1": "completed L1",
          "completed_L2": "completed L2", "completed_L3": "completed L3",
          "travel_per_robot_m": "travel per robot (m)"}
BASELINES = ("market", "greedy")


def greedy_allocator(env: MRTAVecEnv, obs: MRTAObservation) -> np.ndarray:
    return env.actions_to_targets(greedy_actions(obs.obs, env.layout))


def market_allocator(env: MRTAVecEnv, obs: MRTAObservation) -> np.ndarray:
    t = env.tasks
    return market_targets(env.robot_xy, env.target, t.xy, t.level, t.active, env.cfg)


def chooser_allocator(chooser: Callable[[np.ndarray], np.ndarray]) -> Allocator:
    """An allocator from a per-robot chooser (observations (B, dim) -> choices (B,)); with
    ``negotiation_rounds`` > 1 in the env's config the robots first exchange that many rounds
    of tentative choices (:meth:`MRTAVecEnv.negotiate`)."""
    def choose(obs: MRTAObservation) -> np.ndarray:
        flat = obs.obs.reshape(-1, obs.obs.shape[-1])
        return np.asarray(chooser(flat)).reshape(obs.obs.shape[:2])

    def allocate(env: MRTAVecEnv, obs: MRTAObservation) -> np.ndarray:
        _, actions = env.negotiate(choose, obs)
        return env.actions_to_targets(actions)
    return allocate


@dataclass
class Method:
    """One row group of the table: a label, an allocator and the environment it runs in."""

    label: str
    allocator: Allocator
    cfg: MRTAConfig


@dataclass
class MethodResult:
    label: str
    per_seed: dict[str, list[float]]
    """metric -> mean over the episodes of each seed."""
    per_episode: dict[str, np.ndarray]
    """metric -> (seeds x episodes,) values."""
    wall_s: float
    switches: dict[str, bool | int] = field(default_factory=dict)

    def row(self, metric: str) -> dict[str, float]:
        seeds = np.asarray(self.per_seed[metric])
        x = self.per_episode[metric]
        ci = float(Z_95 * x.std(ddof=1) / math.sqrt(len(x))) if len(x) > 1 else math.nan
        return {"mean": float(seeds.mean()),
                "seed_std": float(seeds.std(ddof=1)) if len(seeds) > 1 else math.nan,
                "ci95": ci, "min_seed": float(seeds.min()), "max_seed": float(seeds.max())}


def run_method(method: Method, seeds: list[int], episodes: int,
               progress: bool | None = None) -> MethodResult:
    """Fly ``episodes`` episodes for each evaluation seed with ``method``."""
    per_seed: dict[str, list[float]] = {k: [] for k in METRICS}
    per_episode: dict[str, list[np.ndarray]] = {k: [] for k in METRICS}
    start = time.perf_counter()
    flight = None
    if method.cfg.motion == "drones":
        from swarm_rl.mrta.flight import DroneFlight

        flight = DroneFlight(method.cfg, episodes)
    env = MRTAVecEnv(method.cfg, episodes, flight=flight)
    bar = tqdm(total=len(seeds) * episodes, unit="ep", desc=f"eval {method.label}",
               leave=False, disable=None if progress is None else not progress)
    with bar:
        for s in seeds:
            obs = env.reset([episode_rng(k) for k in eval_seeds(s, episodes)])
            while True:
                result = env.step_targets(method.allocator(env, obs))
                obs = result.obs
                if result.done:
                    break
            ep = result.info["episode"]
            for k in METRICS:
                per_seed[k].append(float(np.mean(ep[k])))
                per_episode[k].append(np.asarray(ep[k], float))
            bar.update(episodes)
    return MethodResult(method.label, per_seed,
                        {k: np.concatenate(v) for k, v in per_episode.items()},
                        time.perf_counter() - start,
                        {"intention_sharing": method.cfg.intention_sharing,
                         "revision": method.cfg.revision,
                         "negotiation_rounds": method.cfg.negotiation_rounds})


def policy_methods(path: str | Path, cfg: MRTAConfig, ablations: bool) -> list[Method]:
    """The learned policy in ``path`` (in the environment its metadata says it was trained
    for: intention sharing and revision switches), and with ``ablations`` the same policy with
    revision switched off and with intention sharing switched off at test time."""
    from swarm_rl.mrta.onnx_policy import TaskPolicy

    policy = TaskPolicy(path)
    # The policy's own observation layout and negotiation rounds (what it was trained with).
    cfg = dataclasses.replace(cfg, obs_layout=policy.layout.version,
                              negotiation_rounds=policy.negotiation_rounds)
    policy.check_compatible(cfg)
    own = dataclasses.replace(cfg, intention_sharing=policy.intention_sharing,
                              revision=policy.revision)
    name = Path(path).stem
    methods = [Method(f"{name}", chooser_allocator(policy), own)]
    if ablations:
        if own.revision:
            methods.append(Method(f"{name}, revision off", chooser_allocator(policy),
                                  dataclasses.replace(own, revision=False)))
        if own.negotiation_rounds > 1 and own.intention_sharing:
            methods.append(Method(f"{name}, one negotiation round", chooser_allocator(policy),
                                  dataclasses.replace(own, negotiation_rounds=1)))
        if own.intention_sharing:
            methods.append(Method(f"{name}, sharing off at test time",
                                  chooser_allocator(policy),
                                  dataclasses.replace(own, intention_sharing=False)))
    return methods


def baseline_method(name: str, cfg: MRTAConfig) -> Method:
    if name == "market":
        return Method(f"market (PCFA-style, lambda {cfg.market_lambda:g})", market_allocator,
                      cfg)
    if name == "greedy":
        return Method("greedy nearest", greedy_allocator, cfg)
    raise ConfigError(f"--baseline: unknown baseline '{name}'; allowed: {', '.join(BASELINES)}")


def evaluate_methods(methods: list[Method], seeds: int = 5, episodes: int = 96,
                     seed: int = 0, progress: bool | None = None) -> list[MethodResult]:
    if seeds < 1 or episodes < 1:
        raise ValueError(f"seeds and episodes: must be >= 1, got {seeds} and {episodes}")
    seed_list = list(range(seed, seed + seeds))
    return [run_method(m, seed_list, episodes, progress) for m in methods]


def format_table(results: list[MethodResult]) -> str:
    """Markdown table: mean over seeds +- seed-to-seed std for every metric."""
    head = "| method | " + " | ".join(LABELS[k] for k in METRICS) + " |"
    rule = "|---|" + "---:|" * len(METRICS)
    lines = [head, rule]
    for r in results:
        cells = []
        for k in METRICS:
            row = r.row(k)
            cells.append(f"{row['mean']:.1f} +- {row['seed_std']:.1f}")
        lines.append(f"| {r.label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def comparisons(results: list[MethodResult]) -> list[dict[str, Any]]:
    """Return differences between the first method and each other one, next to the larger of
    the two seed-to-seed spreads (a difference larger than it is called ``clear``)."""
    if len(results) < 2:
        return []
    first = results[0].row("return")
    out = []
    for r in results[1:]:
        other = r.row("return")
        spread = max(first["seed_std"], other["seed_std"])
        diff = first["mean"] - other["mean"]
        out.append({"a": results[0].label, "b": r.label, "difference": diff,
                    "seed_spread": spread, "clear": bool(diff > spread)})
    return out


def to_dict(results: list[MethodResult], scenario: str, seeds: int, episodes: int,
            seed: int) -> dict[str, Any]:
    return {"scenario": scenario, "seeds": list(range(seed, seed + seeds)),
            "episodes_per_seed": episodes,
            "methods": [{"label": r.label, "wall_s": r.wall_s, **r.switches,
                         "table": {k: r.row(k) for k in METRICS},
                         "per_seed": r.per_seed} for r in results],
            "comparisons": comparisons(results)}


def plot_bars(results: list[MethodResult], path: str | Path, title: str) -> Path:
    """PNG: return per method (bars: mean over seeds, whiskers: seed-to-seed std), and
    completions per task level."""
    from swarm_rl.plots import _colours, _figure, _png

    fig = _figure((13, 4.8))
    ax_ret, ax_lvl = fig.subplots(1, 2, width_ratios=[1, 1.3])
    colours = _colours(len(results))
    x = np.arange(len(results))
    means = [r.row("return")["mean"] for r in results]
    stds = [r.row("return")["seed_std"] for r in results]
    ax_ret.bar(x, means, yerr=stds, color=colours, capsize=4)
    ax_ret.set_xticks(x, [r.label for r in results], rotation=25, ha="right", fontsize=8)
    ax_ret.set(title="episode return (sum of L^2)", ylabel="return")
    ax_ret.grid(axis="y", alpha=0.3)
    width = 0.8 / max(len(results), 1)
    for i, r in enumerate(results):
        vals = [r.row(f"completed_L{j}")["mean"] for j in (1, 2, 3)]
        errs = [r.row(f"completed_L{j}")["seed_std"] for j in (1, 2, 3)]
        ax_lvl.bar(np.arange(3) + (i - (len(results) - 1) / 2) * width, vals, width,
                   yerr=errs, color=colours[i], capsize=2, label=r.label)
    ax_lvl.set_xticks(np.arange(3), ["level 1", "level 2", "level 3"])
    ax_lvl.set(title="completed tasks per episode", ylabel="tasks")
    ax_lvl.grid(axis="y", alpha=0.3)
    ax_lvl.legend(fontsize=7)
    fig.suptitle(title, fontsize=12)
    path = Path(path)
    files.write_bytes(path, _png(fig))
    return path


def plot_learning_curve(progress_jsonl: str | Path, path: str | Path, title: str) -> Path:
    """PNG: training return and completed tasks per level (means of the last episodes) against
    agent decisions, from a task-policy run's progress.jsonl."""
    from swarm_rl.plots import _figure, _png, read_progress

    rows = [r for r in read_progress(progress_jsonl) if "return" in r and "steps" in r]
    if not rows:
        raise ValueError(f"{progress_jsonl}: no progress records with a return yet")
    steps = np.array([r["steps"] for r in rows], float)
    fig = _figure((12, 4.4))
    ax_ret, ax_lvl = fig.subplots(1, 2)
    ax_ret.plot(steps, [r["return"] for r in rows], color="tab:blue")
    ax_ret.set(title="training episode return (stochastic policy)", xlabel="agent decisions",
               ylabel="return (sum of L^2)")
    for j in (1, 2, 3):
        ax_lvl.plot(steps, [r[f"completed_L{j}"] for r in rows], label=f"level {j}")
    ax_lvl.set(title="completed tasks per episode", xlabel="agent decisions", ylabel="tasks")
    ax_lvl.legend(fontsize=8)
    for ax in (ax_ret, ax_lvl):
        ax.grid(alpha=0.3)
    fig.suptitle(f"{title} ({steps[-1]:,.0f} decisions, {rows[-1].get('wall_s', 0):.0f} s)",
                 fontsize=12)
    path = Path(path)
    files.write_bytes(path, _png(fig))
    return path


def run_eval(scenario: str, policy: Path | None, baselines: list[str], compare: list[Path],
             ablations: bool, seeds: int, episodes: int, seed: int,
             plot: Path | None, run: Path | None = None) -> tuple[str, dict[str, Any]]:
    """``swarm-rl eval`` on an MRTA preset: the text to print and the JSON summary. ``run``:
    a training run directory whose learning curve is plotted too."""
    from sim.mrta.config import load_mrta_env

    cfg = load_mrta_env(scenario)
    methods: list[Method] = []
    if policy is not None:
        methods += policy_methods(policy, cfg, ablations)
    for path in compare:
        methods += policy_methods(path, cfg, False)
    methods += [baseline_method(b, cfg) for b in baselines]
    if not methods:
        methods = [baseline_method(b, cfg) for b in BASELINES]
    results = evaluate_methods(methods, seeds, episodes, seed)
    name = Path(scenario).stem
    summary = to_dict(results, name, seeds, episodes, seed)
    text = [f"{name}: {cfg.num_robots} robots, {cfg.task_mode} tasks, {seeds} seeds x "
            f"{episodes} episodes (mean over seeds +- seed-to-seed std)", format_table(results)]
    for c in summary["comparisons"]:
        text.append(f"{c['a']} - {c['b']}: {c['difference']:+.1f} return "
                    f"(seed spread {c['seed_spread']:.1f}{', clear' if c['clear'] else ''})")
    if plot is not None:
        plot_bars(results, plot, f"{name}: {seeds} seeds x {episodes} episodes")
        summary["plot"] = str(plot)
        text.append(f"wrote {plot}")
    if run is not None:
        curve = (plot.with_name(plot.stem + "_learning.png") if plot is not None
                 else run / "learning_curve.png")
        plot_learning_curve(run / "progress.jsonl", curve, run.name)
        summary["learning_curve"] = str(curve)
        text.append(f"wrote {curve}")
    return "\n".join(text), summary
