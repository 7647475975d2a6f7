"""Errors for bad files and failed checks, importable without torch or onnx."""
from __future__ import annotations


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt, or does not fit this run; the message says which."""


class PolicyFileError(ValueError):
    """A policy file is missing, not ONNX, or lacks valid swarm_rl metadata; names the file."""


class ExportError(RuntimeError):
    """The exported graph failed a check (onnx.checker, parity); nothing was written."""
