"""Figures and tables for evaluation and training reports.

Figures are drawn with matplotlib's Agg canvas (no display, no pyplot global state) and
written atomically: rendered into memory, then a temporary file next to the target is renamed
over it, so a reader never sees a half-written PNG.
"""
from __future__ import annotations

import io
import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from sim.metrics import SETTLED_RMS_KEY, SETTLED_S
from swarm_rl import files

log = logging.getLogger(__name__)

LEARNING_CURVE_KEYS = (
    ("return", "mean episode return (per agent)", None),
    ("success_rate", "success rate", (0.0, 1.0)),
    ("collisions_per_drone_minute", "collisions per drone-minute", None),
)

TABLE_LABELS = {
    "shield_intervention_rate": "shield interventions (share of drone-steps)",
    "shield_fallback_rate": "shield braking fallbacks (share of drone-steps)",
    "success_rate": "success rate",
    "collisions_per_drone_minute": "collisions per drone-minute",
    "crash_rate": "crash rate",
    "distance_last_1s_m": "distance to goal, last 1 s (m)",
    "distance_last_3s_m": "distance to goal, last 3 s (m)",
    "distance_last_5s_m": "distance to goal, last 5 s (m)",
    SETTLED_RMS_KEY: f"RMS position error, last {SETTLED_S} s (m)",
    "final_distance_m": "final distance to goal (m)",
    "min_separation_m": "min separation (m), min over episodes",
    "return": "episode return (per agent)",
}


def _figure(figsize: tuple[float, float]) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _save(fig: Any, path: str | Path) -> Path:
    path = Path(path)
    files.write_bytes(path, _png(fig))
    return path


def _colours(n: int) -> list:
    import matplotlib

    if n <= 10:
        return [matplotlib.colormaps["tab10"](i) for i in range(n)]
    return [matplotlib.colormaps["turbo"](i / (n - 1)) for i in range(n)]


def plot_trajectories(positions: np.ndarray, goals: np.ndarray, dt: float, path: str | Path,
                      title: str = "", success_radius_m: float | None = None) -> Path:
    """Write a PNG: top view of the paths, altitude and distance to goal against time.

    ``positions`` and ``goals`` are (T, N, 3) world-frame metres at times ``0, dt, 2 dt, ...``.
    """
    png = render_trajectories(positions, goals, dt, title, success_radius_m)
    path = Path(path)
    files.write_bytes(path, png)
    return path


def render_trajectories(positions: np.ndarray, goals: np.ndarray, dt: float, title: str = "",
                        success_radius_m: float | None = None) -> bytes:
    """The PNG of :func:`plot_trajectories`, in memory."""
    pos = np.asarray(positions, dtype=float)
    goals = np.asarray(goals, dtype=float)
    if pos.ndim != 3 or pos.shape[-1] != 3 or goals.shape != pos.shape:
        raise ValueError(f"positions and goals: expected two (T, N, 3) arrays of the same shape,"
                         f" got {pos.shape} and {goals.shape}")
    if not dt > 0:
        raise ValueError(f"dt: must be > 0, got {dt}")
    n = pos.shape[1]
    t = np.arange(pos.shape[0]) * dt
    dist = np.linalg.norm(pos - goals, axis=-1)
    fig = _figure((16, 5.2))
    top, alt, err = fig.subplots(1, 3, width_ratios=[1.2, 1, 1])
    named = n <= 10
    for i, c in enumerate(_colours(n)):
        label = f"cf{i + 1}" if named else None
        top.plot(pos[:, i, 0], pos[:, i, 1], color=c, lw=1.4, label=label)
        top.plot(pos[0, i, 0], pos[0, i, 1], "o", color=c, ms=6, mfc="none")
        top.plot(goals[-1, i, 0], goals[-1, i, 1], "x", color=c, ms=9, mew=2)
        if np.ptp(goals[:, i, :2], axis=0).max() > 1e-6:  # moving goal: draw its path
            top.plot(goals[:, i, 0], goals[:, i, 1], ":", color=c, lw=1)
        alt.plot(t, pos[:, i, 2], color=c, lw=1.2)
        alt.plot(t, goals[:, i, 2], ":", color=c, lw=1)
        err.plot(t, dist[:, i], color=c, lw=1.2)
    top.set(title="top view (o start, x goal)", xlabel="x (m)", ylabel="y (m)")
    top.set_aspect("equal", adjustable="datalim")
    top.grid(alpha=0.3)
    if named:
        top.legend(fontsize=8, loc="best", ncols=2)
    alt.set(title="altitude (dotted: goal)", xlabel="time (s)", ylabel="z (m)")
    alt.grid(alpha=0.3)
    if success_radius_m is not None:
        err.axhline(success_radius_m, color="k", ls="--", lw=1,
                    label=f"success radius {success_radius_m} m")
        err.legend(fontsize=8)
    err.set(title="distance to goal", xlabel="time (s)", ylabel="distance (m)")
    err.set_ylim(bottom=0)
    err.grid(alpha=0.3)
    fig.suptitle(title or f"{n} drone{'s' if n != 1 else ''}", fontsize=13)
    return _png(fig)


def read_progress(progress_jsonl: str | Path) -> list[dict[str, Any]]:
    """The records of a training run's progress.jsonl; blank or unreadable lines (such as a
    line being written while the run goes on) are skipped with a warning."""
    path = Path(progress_jsonl)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"{path}: no such progress file") from exc
    records = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            log.warning("%s:%d: skipping a line that is not JSON", path, number)
            continue
        if isinstance(record, dict):
            records.append(record)
        else:
            log.warning("%s:%d: skipping a line that is not a JSON object", path, number)
    return records


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return math.nan
    return float(value)


def plot_learning_curve(progress_jsonl: str | Path, path: str | Path, title: str = "") -> Path:
    """Write a PNG of return, success rate and collisions per drone-minute against agent-steps
    from a progress.jsonl (one JSON object per update; keys may be missing in some lines)."""
    records = [r for r in read_progress(progress_jsonl) if math.isfinite(_number(r.get("steps")))]
    if not records:
        raise ValueError(f"{progress_jsonl}: no progress records with 'steps' yet")
    steps = np.array([_number(r["steps"]) for r in records])
    fig = _figure((16, 4.8))
    axes = fig.subplots(1, len(LEARNING_CURVE_KEYS))
    for ax, (key, label, ylim) in zip(axes, LEARNING_CURVE_KEYS):
        y = np.array([_number(r.get(key)) for r in records])
        ok = np.isfinite(y)
        if ok.any():
            ax.plot(steps[ok], y[ok], "-", color="tab:blue", lw=1.0, alpha=0.5 if ok.sum() > 20
                    else 1.0, marker="o" if ok.sum() <= 20 else None, ms=3)
            if ok.sum() > 20:
                window = max(3, ok.sum() // 20)
                kernel = np.ones(window) / window
                smooth = np.convolve(y[ok], kernel, mode="valid")
                ax.plot(steps[ok][window - 1:], smooth, color="tab:blue", lw=2,
                        label=f"moving mean of {window}")
                ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "no data yet", ha="center", va="center", transform=ax.transAxes)
        if ylim is not None:
            ax.set_ylim(ylim[0] - 0.02, ylim[1] + 0.02)
        ax.set(title=label, xlabel="agent-steps")
        ax.grid(alpha=0.3)
    speed = [_number(r.get("steps_per_s")) for r in records]
    speed = [s for s in speed if math.isfinite(s)]
    suffix = f", {speed[-1]:,.0f} agent-steps/s" if speed else ""
    fig.suptitle((title or "training progress") + f" ({steps[-1]:,.0f} agent-steps{suffix})",
                 fontsize=13)
    return _save(fig, path)


def _fmt(value: float | None, digits: int) -> str:
    if value is None or math.isnan(float(value)):
        return "n/a"
    value = float(value)
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.{digits}f}"


def format_table(metrics: dict) -> str:
    """A markdown table of an evaluation aggregate (:attr:`EvalResult.table`): per metric the
    headline value, the 95 % interval of the mean and the range over episodes.

    Rows may also be plain numbers (``{"success_rate": 0.9, ...}``).
    """
    rows = [("metric", "value", "95 % CI of mean", "range over episodes")]
    for key, row in metrics.items():
        label = TABLE_LABELS.get(key, key)
        digits = 2 if key in ("return", "collisions_per_drone_minute") else 3
        if isinstance(row, dict):
            value = _fmt(row.get("value", row.get("mean", math.nan)), digits)
            if key == "min_separation_m":
                value += f" (mean {_fmt(row.get('mean', math.nan), digits)})"
            ci = row.get("ci95", math.nan)
            ci_text = "n/a" if ci is None or not math.isfinite(ci) else (
                f"{_fmt(row.get('low', row['mean'] - ci), digits)} .. "
                f"{_fmt(row.get('high', row['mean'] + ci), digits)}")
            lo, hi = row.get("min", math.nan), row.get("max", math.nan)
            span = f"{_fmt(lo, digits)} .. {_fmt(hi, digits)}"
        else:
            value, ci_text, span = _fmt(float(row), digits), "", ""
        rows.append((label, value, ci_text, span))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]

    def line(cells: tuple[str, ...]) -> str:
        return "| " + " | ".join(c.ljust(w) if i == 0 else c.rjust(w)
                                 for i, (c, w) in enumerate(zip(cells, widths))) + " |"
    sep = "|" + "|".join("-" * (w + 1) + (":" if i else "-") for i, w in enumerate(widths)) + "|"
    return "\n".join([line(rows[0]), sep] + [line(r) for r in rows[1:]]) + "\n"
