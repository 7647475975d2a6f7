"""Task-policy checkpoint -> ONNX: observation in, masked logits out, layout in the metadata.

Input ``obs`` float32 [batch, dim] (MRTA layout v2 or v3), output ``logits`` float32
[batch, K_t + 1] with illegal choices at -1e9; a robot takes the argmax (after
``negotiation_rounds`` rounds of it, when that is > 1). Metadata (strings):
``kind=mrta_task_policy``, the layout (``obs_layout_version``, ``obs_dim``, ``task_slots``,
``neighbour_slots``), the switches it was trained with (``intention_sharing``, ``revision``),
the ranges and discount the features are scaled by, and the training preset, steps and seed.
Uses the legacy exporter (``dynamo=False``) like :mod:`swarm_rl.export`; ``onnx.checker`` and
an onnxruntime parity check run before the file is written atomically.
"""
from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sim.mrta.config import MRTAConfig
from sim.mrta.observation import MRTALayout
from swarm_rl import files
from swarm_rl.errors import ExportError
from swarm_rl.mrta.config import mrta_train_config_from_dict
from swarm_rl.mrta.model import TaskActor
from swarm_rl.train.checkpoint import load_checkpoint, load_module_state

KIND = "mrta_task_policy"
INPUT_NAME, OUTPUT_NAME = "obs", "logits"
ENV_KEYS = ("view_range_m", "comm_range_m", "intention_discount", "intention_horizon",
            "intention_sharing", "revision", "world_size_m", "speed_mps", "decision_dt_s",
            "decision_steps", "num_robots", "task_mode", "negotiation_rounds")
"""Environment fields recorded in the metadata (what the features are scaled by, and what
the policy was trained on)."""
PARITY_TOL = 1e-4


def metadata_for(env: MRTAConfig, extra: dict[str, Any]) -> dict[str, str]:
    layout = MRTALayout.of(env)
    meta = {"kind": KIND, "obs_layout_version": str(layout.version), "obs_dim": str(layout.dim),
            "task_slots": str(env.task_slots), "neighbour_slots": str(env.neighbour_slots),
            "num_actions": str(layout.num_actions)}
    for key in ENV_KEYS:
        value = getattr(env, key)
        meta[key] = ",".join(map(str, value)) if isinstance(value, (tuple, list)) else str(value)
    meta.update({k: str(v) for k, v in extra.items()})
    return meta


def export_task_policy(checkpoint: str | Path, out: str | Path, opset: int = 17
                       ) -> dict[str, Any]:
    """Export the actor of an MRTA trainer checkpoint (``checkpoint.pt`` or its run
    directory) to ``out`` with ONNX ``opset``; returns a summary (path, opset, parameters,
    parity error)."""
    import onnx
    import onnxruntime as ort

    path = Path(checkpoint)
    if path.is_dir():
        path = path / "checkpoint.pt"
    data = load_checkpoint(path)
    if data.get("kind") != "mrta":
        raise ExportError(f"{path}: not a task-allocation (MRTA) checkpoint")
    cfg = mrta_train_config_from_dict(data["config"])
    layout = MRTALayout.of(cfg.env)
    actor = TaskActor(layout, cfg.model)
    load_module_state(actor, data["actor"], "actor", path)
    actor.eval()
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        # The legacy exporter is chosen on purpose (module docstring), as in swarm_rl.export.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(actor, (torch.zeros(2, layout.dim),), buffer, dynamo=False,
                          opset_version=opset, input_names=[INPUT_NAME],
                          output_names=[OUTPUT_NAME],
                          dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}})
    model = onnx.load_from_string(buffer.getvalue())
    model.producer_name = "swarm_rl"
    meta = metadata_for(cfg.env, {"preset": cfg.preset, "steps": data["steps"],
                                  "seed": cfg.seed, "hidden": cfg.model.hidden})
    for key, value in meta.items():
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value
    onnx.checker.check_model(model, full_check=True)
    blob = model.SerializeToString()
    session = ort.InferenceSession(blob, providers=["CPUExecutionProvider"])
    obs = _parity_observations(cfg.env)
    with torch.no_grad():
        expected = actor(torch.from_numpy(obs)).numpy()
    got = session.run([OUTPUT_NAME], {INPUT_NAME: obs})[0]
    legal = obs[:, layout.slices["action_mask"]] > 0.5
    err = float(np.max(np.abs(np.where(legal, got - expected, 0.0))))
    if not err <= PARITY_TOL or not (np.argmax(got, 1) == np.argmax(expected, 1)).all():
        raise ExportError(f"{path}: ONNX and torch disagree (max abs logit error {err:.2e})")
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    files.write_bytes(out, blob)
    return {"path": str(out), "opset": opset, "params": sum(p.numel() for p in actor.parameters()),
            "parity_max_abs_error": err, "steps": data["steps"]}


def _parity_observations(env: MRTAConfig, episodes: int = 4) -> np.ndarray:
    """Real observations from a few random-choice steps (masks and features as in use)."""
    from sim.mrta.env import MRTAVecEnv

    sim_env = MRTAVecEnv(env, episodes, seed=12345)
    obs = sim_env.reset()
    rng = np.random.default_rng(0)
    rows = []
    for _ in range(10):
        rows.append(obs.obs.reshape(-1, obs.obs.shape[-1]))
        choice = np.where(obs.action_mask, rng.random(obs.action_mask.shape), -1).argmax(-1)
        obs = sim_env.step(choice).obs
    return np.concatenate(rows).astype(np.float32)
