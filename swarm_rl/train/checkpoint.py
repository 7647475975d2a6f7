"""Checkpoints: written atomically (temp file, fsync, rename), checked on load."""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import torch

from swarm_rl.errors import CheckpointError

FORMAT_VERSION = 1


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` to ``path`` so that a crash leaves either the old or the new file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save({"format_version": FORMAT_VERSION, **payload}, buffer)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(buffer.getvalue())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Checkpoints are pickles (they hold the simulator state for an exact resume), so load only
    files you trust, as with any PyTorch checkpoint.
    """
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        data = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # unpickling junk raises almost anything (Overflow, Memory...)
        raise CheckpointError(f"{path}: not a readable swarm_rl checkpoint "
                              f"(corrupt or truncated): {exc}") from exc
    if not isinstance(data, dict) or data.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: not a swarm_rl checkpoint of format {FORMAT_VERSION}")
    return data


def _legacy_norm_count(key: str, value: Any) -> bool:
    """A normaliser's single sample count from before per-entry counts; RunningNorm expands
    it on loading."""
    return key.split(".")[-1] == "count" and getattr(value, "dim", lambda: -1)() == 0


def load_module_state(module: torch.nn.Module, state: dict[str, Any], what: str,
                      path: Path) -> None:
    """``load_state_dict`` with an error that names the checkpoint and the mismatched shapes."""
    own = module.state_dict()
    problems = [f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
                for k, v in state.items() if k in own and own[k].shape != v.shape
                and not _legacy_norm_count(k, v)]
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if problems or missing or unexpected:
        detail = "; ".join(problems[:3] + [f"missing {m}" for m in missing[:3]]
                           + [f"unexpected {u}" for u in unexpected[:3]])
        raise CheckpointError(f"{path}: the {what} in this checkpoint has another shape than "
                              f"the configured model ({detail}); use the same model preset, "
                              "encoder, neighbour count and critic as the run that wrote it")
    module.load_state_dict(state)
