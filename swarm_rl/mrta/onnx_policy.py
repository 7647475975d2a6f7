"""Run an exported task policy with onnxruntime (no torch): the deploy-side chooser.

``TaskPolicy(path)`` loads the file, checks its metadata (kind, layout version, dimension,
slot counts) and, given an :class:`~sim.mrta.config.MRTAConfig`, that the robot will feed it
observations of the same layout, scaled by the same ranges (:meth:`check_compatible`). Called
with observations (B, dim) float32 it returns the argmax legal choice (B,) int: a
:data:`sim.mrta.decide.TaskChooser`.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from sim.mrta.config import MRTAConfig
from sim.mrta.observation import LAYOUT_VERSIONS, MRTALayout
from swarm_rl.errors import PolicyFileError, PolicyMismatchError

KIND = "mrta_task_policy"
SCALE_KEYS = ("view_range_m", "comm_range_m", "intention_discount", "intention_horizon")
"""Config fields that scale features: they must match the policy's."""


class TaskPolicy:
    def __init__(self, path: str | Path) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise PolicyFileError(f"{self.path}: no such policy file")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(self.path), opts,
                                                providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for bad files
            raise PolicyFileError(f"{self.path}: not a loadable ONNX model: {exc}") from exc
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        meta = self.metadata
        if meta.get("kind") != KIND:
            raise PolicyFileError(f"{self.path}: not a task-allocation policy (metadata kind "
                                  f"{meta.get('kind')!r}, expected {KIND!r})")
        try:
            version, dim = int(meta["obs_layout_version"]), int(meta["obs_dim"])
            slots = int(meta["task_slots"]), int(meta["neighbour_slots"])
        except (KeyError, ValueError) as exc:
            raise PolicyFileError(f"{self.path}: bad or missing layout metadata: {exc}") from exc
        if version not in LAYOUT_VERSIONS:
            raise PolicyFileError(f"{self.path}: observation layout v{version}; this code "
                                  f"builds {', '.join(f'v{v}' for v in LAYOUT_VERSIONS)}")
        self.layout = MRTALayout(*slots, version)
        if dim != self.layout.dim:
            raise PolicyFileError(f"{self.path}: observation layout v{version} with dim {dim}; "
                                  f"this code builds v{version} with dim {self.layout.dim}")

    @property
    def intention_sharing(self) -> bool:
        return self.metadata.get("intention_sharing") == "True"

    @property
    def revision(self) -> bool:
        return self.metadata.get("revision") == "True"

    @property
    def negotiation_rounds(self) -> int:
        """Intention exchanges per decision step it was trained with (1 when not recorded)."""
        return int(self.metadata.get("negotiation_rounds", "1"))

    def check_compatible(self, cfg: MRTAConfig) -> None:
        """Raise :class:`PolicyMismatchError` naming every field where ``cfg`` would feed the
        policy differently laid out or differently scaled observations."""
        diffs = []
        for key, want in (("task_slots", self.layout.task_slots),
                          ("neighbour_slots", self.layout.neighbour_slots),
                          ("obs_layout", self.layout.version)):
            if getattr(cfg, key) != want:
                diffs.append((key, want, getattr(cfg, key)))
        for key in SCALE_KEYS:
            want = float(self.metadata.get(key, "nan"))
            if not math.isclose(want, float(getattr(cfg, key)), rel_tol=1e-9):
                diffs.append((key, want, getattr(cfg, key)))
        if diffs:
            detail = "; ".join(f"{k}: policy {a}, config {b}" for k, a, b in diffs)
            raise PolicyMismatchError(f"{self.path}: does not fit this config ({detail})", diffs)

    def logits(self, obs: np.ndarray) -> np.ndarray:
        obs = np.ascontiguousarray(obs, dtype=np.float32)
        if obs.ndim != 2 or obs.shape[1] != self.layout.dim:
            raise ValueError(f"obs: expected shape (B, {self.layout.dim}), got {obs.shape}")
        if not np.isfinite(obs).all():
            raise ValueError("obs: contains NaN or inf")
        return self.session.run(["logits"], {"obs": obs})[0]

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        """Argmax legal choice per row (B,) int in [0, K_t] (K_t: no task)."""
        logits = self.logits(obs)
        legal = obs[:, self.layout.slices["action_mask"]] > 0.5
        return np.where(legal, logits, -np.inf).argmax(axis=1)
