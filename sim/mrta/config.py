"""Configuration of the task-allocation (MRTA) world: one dataclass, loaded from the ``env``
section of a preset in ``config/mrta/*.yaml``, validated with errors that name the field.

Geometry is ENU with the world centred at the origin: x in [-X/2, X/2], y in [-Y/2, Y/2],
robots fly at ``flight_height_m``. One decision step lasts ``decision_dt_s``; at
``speed_mps`` x ``decision_dt_s`` = 1 m per step a robot covers one cell of the seed paper's
1 m grid per step, which is what makes the ``mrta_paper`` preset comparable with the paper.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sim.config import build_dataclass
from sim.errors import ConfigError

TASK_MODES = ("respawn", "arrival")
MOTION_MODES = ("kinematic", "drones")
LEVELS = 3
"""Task levels are 1..LEVELS: a level-L task needs L robots within its radius at once."""
PRESET_DIR = Path(__file__).resolve().parents[2] / "config" / "mrta"


@dataclass
class MRTAConfig:
    """Everything that defines an MRTA episode. SI units, world frame ENU."""

    world_size_m: tuple[float, float] = (20.0, 20.0)
    """Extent (x, y) of the square world, centred at the origin."""
    num_robots: int = 10
    initial_tasks: list[int] = field(default_factory=lambda: [4, 3, 3])
    """Tasks present at the start, by level (L = 1, 2, 3); also the level weights of new
    tasks."""
    task_mode: str = "respawn"
    """``respawn``: a completed task reappears at once, same level, uniformly in the world;
    ``arrival``: completed tasks vanish and new ones arrive inside ``arrival_region_m``."""
    arrival_rate: float = 0.02
    """Arrival mode: expected new tasks per free square metre of the region per decision step
    (the paper's rate per free 1 m cell per step)."""
    arrival_region_m: tuple[float, float, float, float] = (0.0, 0.0, 10.0, 10.0)
    """Arrival mode: (x_min, y_min, x_max, y_max) of the region where tasks arrive (the paper's
    one 10 x 10 quadrant); checked against the world only in arrival mode."""
    max_tasks: int = 30
    """Capacity of the task table; arrivals beyond it are dropped (and counted)."""
    decision_steps: int = 100
    """Decision steps per episode."""
    decision_dt_s: float = 1.0
    """Time between two decisions (s)."""
    speed_mps: float = 1.0
    """Cruise speed of a robot flying to its target (m/s)."""
    flight_height_m: float = 1.0
    completion_radius_m: float = 0.5
    """A robot serves its target task when its centre is within this distance of it."""
    view_range_m: float = 5.0
    """A robot sees tasks within this horizontal distance."""
    comm_range_m: float = 8.0
    """A robot hears neighbours (positions and intentions) within this distance."""
    separation_m: float = 0.3
    """Smallest centre-to-centre distance the motion model keeps between robots."""
    motion_substeps: int = 4
    """Kinematic integration steps per decision step."""
    motion: str = "kinematic"
    """``kinematic``: velocity-limited points with a separation rule (training, fast);
    ``drones``: fly every decision step on the simulated Crazyflies (sim physics, velocity
    controller, CBF shield); see :mod:`swarm_rl.mrta.flight`."""
    task_slots: int = 10
    """Tasks in a robot's observation (its current target first, then nearest visible)."""
    neighbour_slots: int = 6
    """Neighbours in a robot's observation (nearest within comm range)."""
    intention_sharing: bool = True
    """Robots fold neighbours' intentions (target, planned path) into their observation."""
    revision: bool = True
    """A robot may change its target at every decision step; off: it keeps a target until
    that task is completed."""
    intention_discount: float = 0.67
    """Weight of the i-th point (0-based) of a planned path is discount^(i + 1) (paper)."""
    intention_horizon: int = 30
    """Longest planned path a robot publishes (points, one per decision step)."""
    task_min_spacing_m: float = 1.0
    """New tasks are placed at least this far from other active tasks (when possible)."""
    obs_layout: int = 2
    """Observation layout version (:mod:`sim.mrta.observation`): 2; 3 (adds the coalition
    features: who reaches each task before me, free and other neighbours closer to it); or 4
    (layout 3, and with intention sharing the tasks that neighbours in radio range see are
    known too: shared sightings); or 5 (layout 4 and two coalition distances per task: the
    reach of its nearest possible coalition and the nearest neighbour's distance). A policy
    records its own; evaluation and the robot node must build the same."""
    negotiation_rounds: int = 1
    """Intention exchanges per decision step: with R > 1 every robot chooses R times, each
    time seeing the choices its neighbours announced in the previous round (the first round
    sees last step's intentions); the last round's choice is acted on. 1: one choice per step
    from one-step-old intentions (the paper). Needs intention sharing to have an effect."""
    market_lambda: float = 0.1
    """The market baseline's discount of a coalition's fitness ``L^2 exp(-lambda T)`` per
    decision step of its arrival time T (:mod:`sim.mrta.allocators`; the seed paper does not
    give its value). Small values chase level-3 coalitions wherever they are; large ones
    serve whatever is near. Presets set the value that scores best on held-out seeds
    (``benchmarks/market_lambda.py``)."""

    @property
    def half_extent_m(self) -> tuple[float, float]:
        return self.world_size_m[0] / 2.0, self.world_size_m[1] / 2.0

    @property
    def step_length_m(self) -> float:
        """Distance a robot covers in one decision step (m)."""
        return self.speed_mps * self.decision_dt_s

    def validate(self) -> "MRTAConfig":
        """Raise :class:`ConfigError` naming the first bad field; return self when all is well."""
        def need(ok: bool, name: str, message: str) -> None:
            if not ok:
                raise ConfigError(f"{name}: {message}")

        need(len(self.world_size_m) == 2 and all(v > 0 for v in self.world_size_m),
             "world_size_m", f"must be two lengths > 0 (x, y), got {self.world_size_m}")
        need(self.num_robots >= 1, "num_robots", f"must be >= 1, got {self.num_robots}")
        need(len(self.initial_tasks) == LEVELS and all(v >= 0 for v in self.initial_tasks)
             and sum(self.initial_tasks) > 0, "initial_tasks",
             f"must be {LEVELS} counts >= 0 (levels 1..{LEVELS}), not all 0, got "
             f"{self.initial_tasks}")
        need(self.task_mode in TASK_MODES, "task_mode",
             f"unknown mode '{self.task_mode}'; allowed: {', '.join(TASK_MODES)}")
        need(self.motion in MOTION_MODES, "motion",
             f"unknown motion model '{self.motion}'; allowed: {', '.join(MOTION_MODES)}")
        need(math.isfinite(self.arrival_rate) and self.arrival_rate >= 0, "arrival_rate",
             f"must be >= 0, got {self.arrival_rate}")
        x0, y0, x1, y1 = self.arrival_region_m
        hx, hy = self.half_extent_m
        need(self.task_mode != "arrival" or (-hx <= x0 < x1 <= hx and -hy <= y0 < y1 <= hy),
             "arrival_region_m",
             f"must be (x_min, y_min, x_max, y_max) inside the world [-{hx:g}, {hx:g}] x "
             f"[-{hy:g}, {hy:g}], got {self.arrival_region_m}")
        need(self.max_tasks >= sum(self.initial_tasks), "max_tasks",
             f"must hold the initial tasks ({sum(self.initial_tasks)}), got {self.max_tasks}")
        need(self.decision_steps >= 1, "decision_steps",
             f"must be >= 1, got {self.decision_steps}")
        for name in ("decision_dt_s", "speed_mps", "flight_height_m", "completion_radius_m",
                     "view_range_m", "comm_range_m"):
            value = getattr(self, name)
            need(math.isfinite(value) and value > 0, name, f"must be > 0, got {value}")
        need(self.separation_m >= 0, "separation_m", f"must be >= 0, got {self.separation_m}")
        need(self.separation_m < self.completion_radius_m * math.sqrt(3), "separation_m",
             f"three robots {self.separation_m} m apart must fit within completion_radius_m "
             f"({self.completion_radius_m} m): need separation_m < radius x sqrt(3)")
        need(self.motion_substeps >= 1, "motion_substeps",
             f"must be >= 1, got {self.motion_substeps}")
        need(self.task_slots >= 1, "task_slots", f"must be >= 1, got {self.task_slots}")
        need(self.neighbour_slots >= 0, "neighbour_slots",
             f"must be >= 0, got {self.neighbour_slots}")
        need(0.0 < self.intention_discount < 1.0, "intention_discount",
             f"must be in (0, 1), got {self.intention_discount}")
        need(self.intention_horizon >= 1, "intention_horizon",
             f"must be >= 1, got {self.intention_horizon}")
        need(self.obs_layout in (2, 3, 4, 5), "obs_layout",
             f"must be 2, 3, 4 or 5 (observation layout version), got {self.obs_layout}")
        need(isinstance(self.negotiation_rounds, int) and self.negotiation_rounds >= 1,
             "negotiation_rounds", f"must be an integer >= 1, got {self.negotiation_rounds}")
        need(math.isfinite(self.market_lambda) and self.market_lambda >= 0, "market_lambda",
             f"must be >= 0, got {self.market_lambda}")
        need(self.task_min_spacing_m >= 0, "task_min_spacing_m",
             f"must be >= 0, got {self.task_min_spacing_m}")
        return self


def mrta_config_from_dict(data: dict[str, Any], where: str = "") -> MRTAConfig:
    """Build and validate an :class:`MRTAConfig`; errors name ``where.field``."""
    try:
        return build_dataclass(MRTAConfig, data, where).validate()
    except ConfigError as exc:
        message = str(exc)
        if where and not message.startswith(where + "."):
            message = f"{where}.{message}"
        raise ConfigError(message) from exc


def available_presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def preset_path(name_or_path: str | Path) -> Path | None:
    """The YAML file of an MRTA preset given by name (``config/mrta/NAME.yaml``) or path;
    None when it is neither (so callers can fall back to other kinds of scenario)."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        return path if path.exists() and _is_mrta_file(path) else None
    named = PRESET_DIR / f"{name_or_path}.yaml"
    return named if named.exists() else None


def _is_mrta_file(path: Path) -> bool:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return False
    return isinstance(data, dict) and data.get("kind") == "mrta"


def read_preset(name_or_path: str | Path) -> tuple[Path, dict[str, Any]]:
    """The raw mapping of an MRTA preset (keys ``kind``, ``env``, optional ``train``)."""
    path = preset_path(name_or_path)
    if path is None:
        raise ConfigError(f"--scenario: unknown MRTA preset '{name_or_path}'; available: "
                          f"{', '.join(available_presets())} (or a YAML path with kind: mrta)")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: malformed YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of options, got {type(data).__name__}")
    unknown = sorted(set(data) - {"kind", "description", "env", "train"})
    if unknown:
        raise ConfigError(f"{path}: {unknown[0]}: unknown section; allowed: kind, "
                          "description, env, train")
    if data.get("kind") != "mrta":
        raise ConfigError(f"{path}: kind: must be 'mrta', got {data.get('kind')!r}")
    return path, data


def load_mrta_env(name_or_path: str | Path, overrides: dict[str, Any] | None = None
                  ) -> MRTAConfig:
    """The ``env`` section of an MRTA preset, with top-level ``overrides``, validated."""
    path, data = read_preset(name_or_path)
    env = dict(data.get("env") or {})
    env.update(overrides or {})
    try:
        return mrta_config_from_dict(env, "env")
    except ConfigError as exc:
        raise ConfigError(f"{path.name}: {exc}") from exc
