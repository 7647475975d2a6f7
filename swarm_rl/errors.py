"""Errors for bad files and failed checks, importable without torch or onnx."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt, or does not fit this run; the message says which."""


class PolicyFileError(ValueError):
    """A policy file is missing, not ONNX, or lacks valid swarm_rl metadata; names the file."""


class ExportError(RuntimeError):
    """The exported graph failed a check (onnx.checker, parity); nothing was written."""


class PolicyMismatchError(ValueError):
    """A policy does not fit the environment it is asked to fly.

    ``mismatches`` lists ``(field, policy_value, environment_value)`` for every field that
    differs; the message names each of them with both values.
    """

    def __init__(self, message: str, mismatches: Sequence[tuple[str, Any, Any]] = ()) -> None:
        super().__init__(message)
        self.mismatches = list(mismatches)

    @property
    def fields(self) -> list[str]:
        return [name for name, _, _ in self.mismatches]
