"""The ONNX policy runner, shared by ``swarm-rl eval`` and the robot nodes.

An exported policy (:mod:`swarm_rl.export`) maps layout observations (:mod:`sim.observation`)
``obs`` float32 ``[batch, obs_dim]`` to normalised actions ``action`` float32 ``[batch, 4]``.
:class:`OnnxPolicy` loads one with onnxruntime (CPU, one thread), validates its metadata
(:func:`swarm_rl.export.read_policy_metadata`, which needs onnx but neither torch nor
onnxruntime), and refuses to run where it does not fit:

- :meth:`OnnxPolicy.check_layout` compares the policy's observation layout and action contract
  with what the caller will feed it and do with its actions (the robot runtime), and
  :meth:`OnnxPolicy.check_compatible` with an environment config (``swarm-rl eval``); both raise
  :class:`~swarm_rl.errors.PolicyMismatchError` naming every differing field;
- a call with a non-finite observation raises :class:`NonFiniteObservation` naming the layout
  parts that hold NaN/inf, instead of handing them to onnxruntime.

:meth:`OnnxPolicy.to_velocity_setpoint` turns a ``velocity``-mode action into SI setpoints
exactly as the simulator does (clip each component to the action bounds, scale by
``max_speed_mps`` and ``max_yaw_rate_rad_s`` from the policy's metadata).

Imports neither torch nor pybullet; onnxruntime and onnx are imported when a policy is loaded.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sim.observation import LAYOUT_VERSION, ObsLayout
from swarm_rl.errors import PolicyFileError, PolicyMismatchError

if TYPE_CHECKING:  # pragma: no cover
    from sim.config import EnvConfig

log = logging.getLogger(__name__)

ACTION_DIM = 4
VELOCITY_SCALES = ("max_speed_mps", "max_yaw_rate_rad_s")
"""Metadata keys that scale a ``velocity``-mode action to SI units."""


class NonFiniteObservation(ValueError):
    """An observation holds NaN or inf; ``parts`` names the layout parts that do."""

    def __init__(self, message: str, parts: list[str]) -> None:
        super().__init__(message)
        self.parts = parts


def _parse_slices(text: str) -> dict[str, slice]:
    """``'name:start:stop;...'`` (metadata ``obs_slices``) -> {name: slice}."""
    out = {}
    for part in text.split(";"):
        name, start, stop = part.split(":")
        out[name] = slice(int(start), int(stop))
    return out


class OnnxPolicy:
    """An exported policy run with onnxruntime (CPUExecutionProvider, ``threads`` intra-op
    threads, default 1).

    Call it with one observation ``(obs_dim,)`` -> action ``(4,)``, or a batch
    ``(B, obs_dim)`` -> ``(B, 4)``; float32 out. The file and its metadata are validated on
    load (:class:`~swarm_rl.errors.PolicyFileError` naming the file and the key).
    """

    def __init__(self, path: str | Path, threads: int = 1) -> None:
        import onnxruntime as ort

        from swarm_rl.export import read_policy_metadata

        self.path = Path(path)
        self.metadata: dict[str, str] = read_policy_metadata(self.path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(self.path), options,
                                                providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise PolicyFileError(f"{self.path}: onnxruntime cannot load the model: "
                                  f"{exc}") from exc
        meta = self.metadata
        self.obs_dim = int(meta["obs_dim"])
        self.neighbours_k = int(meta["obs_neighbours_k"])
        self.layout_version = int(meta["obs_layout_version"])
        self.action_mode = meta["action_mode"]
        self.slices = _parse_slices(meta["obs_slices"])
        self.action_low = np.array([float(v) for v in meta["action_low"].split(",")])
        self.action_high = np.array([float(v) for v in meta["action_high"].split(",")])
        self.max_speed_mps = float(meta["max_speed_mps"])
        self.max_yaw_rate_rad_s = float(meta["max_yaw_rate_rad_s"])
        self.neighbour_range_m = float(meta["neighbour_range_m"])

    # --- compatibility ---------------------------------------------------------------------

    def check_layout(self, layout: ObsLayout, action_mode: str, *,
                     max_speed_mps: float | None = None,
                     max_yaw_rate_rad_s: float | None = None,
                     against: str = "the runtime") -> None:
        """Raise :class:`PolicyMismatchError` unless this policy reads observations of
        ``layout`` (version, neighbour count K, size, slices) and emits actions of
        ``action_mode``; the velocity scales are compared too where given (``velocity`` mode).

        The message names every differing field: ``policy expects FIELD=OURS, <against> uses
        THEIRS``.
        """
        checks = [("obs_layout_version", self.layout_version, layout.version),
                  ("obs_neighbours_k", self.neighbours_k, layout.k),
                  ("obs_dim", self.obs_dim, layout.dim),
                  ("action_mode", self.action_mode, action_mode)]
        mismatches: list[tuple[str, Any, Any]] = [
            (name, ours, theirs) for name, ours, theirs in checks if ours != theirs]
        theirs_slices = layout.metadata()["obs_slices"]
        if not mismatches and self.metadata["obs_slices"] != theirs_slices:
            mismatches.append(("obs_slices", self.metadata["obs_slices"], theirs_slices))
        if not mismatches and self.action_mode == "velocity":
            for name, theirs in (("max_speed_mps", max_speed_mps),
                                 ("max_yaw_rate_rad_s", max_yaw_rate_rad_s)):
                ours = getattr(self, name)
                if theirs is not None and not math.isclose(ours, float(theirs), rel_tol=1e-9):
                    mismatches.append((name, ours, float(theirs)))
        if mismatches:
            what = "; ".join(f"policy expects {name}={ours}, {against} uses {theirs}"
                             for name, ours, theirs in mismatches)
            raise PolicyMismatchError(f"{self.path}: {what}", mismatches)

    def check_compatible(self, env_cfg: EnvConfig) -> None:
        """Raise :class:`PolicyMismatchError` unless this policy was trained for the observation
        layout (version, neighbour count K, size, slices) and the action contract (mode; in
        ``velocity`` mode also the speed and yaw-rate scales) of ``env_cfg``. Other differences
        (control rate, neighbour range, drone model) are legitimate experiments: logged as
        warnings."""
        self.check_layout(ObsLayout(env_cfg.neighbours_k, LAYOUT_VERSION), env_cfg.action_mode,
                          max_speed_mps=env_cfg.max_speed_mps,
                          max_yaw_rate_rad_s=env_cfg.max_yaw_rate_rad_s, against="the scenario")
        meta = self.metadata
        for name, theirs in (("control_hz", env_cfg.control_hz),
                             ("neighbour_range_m", env_cfg.neighbour_range_m),
                             ("drone_model", env_cfg.model)):
            ours = meta[name]
            same = ours == str(theirs) if name == "drone_model" else \
                math.isclose(float(ours), float(theirs), rel_tol=1e-9)
            if not same:
                log.warning("%s: policy was trained with %s=%s, the scenario uses %s",
                            self.path, name, ours, theirs)

    # --- running ---------------------------------------------------------------------------

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        """Actions of one observation ``(obs_dim,)`` -> ``(4,)`` or a batch ``(B, obs_dim)``
        -> ``(B, 4)``. Raises :class:`NonFiniteObservation` on NaN/inf, ``ValueError`` on a
        wrong shape."""
        obs = np.ascontiguousarray(obs, dtype=np.float32)
        if obs.ndim not in (1, 2) or obs.shape[-1] != self.obs_dim:
            raise ValueError(f"obs: expected shape ({self.obs_dim},) or (batch, "
                             f"{self.obs_dim}) for {self.path.name}, got {obs.shape}")
        finite = np.isfinite(obs)
        if not finite.all():
            parts = [name for name, s in self.slices.items() if not finite[..., s].all()]
            raise NonFiniteObservation(
                f"obs: non-finite values in {', '.join(parts)} (policy {self.path.name}); "
                "refusing to run the policy on them", parts)
        single = obs.ndim == 1
        action = self.session.run(["action"], {"obs": obs[None] if single else obs})[0]
        return action[0] if single else action

    def to_velocity_setpoint(self, action: np.ndarray) -> tuple[np.ndarray, np.ndarray | float]:
        """A normalised ``velocity``-mode action ``(4,)`` or ``(B, 4)`` -> (world-frame
        velocity setpoint (m/s) ``(3,)``/``(B, 3)``, yaw rate (rad/s) ``float``/``(B,)``).

        As the simulator does it: each component clipped to the metadata's action bounds,
        then scaled by ``max_speed_mps`` (per axis, so the speed can reach sqrt(3) times it)
        and ``max_yaw_rate_rad_s``. Raises :class:`PolicyMismatchError` for a ``motors``
        policy and ``ValueError`` for a wrong shape or a non-finite action.
        """
        if self.action_mode != "velocity":
            raise PolicyMismatchError(
                f"{self.path}: policy expects action_mode={self.action_mode}, a velocity "
                "setpoint needs velocity", [("action_mode", self.action_mode, "velocity")])
        action = np.asarray(action, dtype=float)
        if action.ndim not in (1, 2) or action.shape[-1] != ACTION_DIM:
            raise ValueError(f"action: expected shape (4,) or (batch, 4), got {action.shape}")
        if not np.isfinite(action).all():
            raise ValueError("action: non-finite values; no setpoint")
        a = np.clip(action, self.action_low, self.action_high)
        velocity = a[..., :3] * self.max_speed_mps
        yaw_rate = a[..., 3] * self.max_yaw_rate_rad_s
        return velocity, (float(yaw_rate) if action.ndim == 1 else yaw_rate)
