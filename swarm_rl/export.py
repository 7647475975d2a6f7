"""Trained actor -> ONNX policy file, with the metadata a runtime checks, and a parity check.

An exported policy maps the raw layout-v1 observation (:mod:`sim.observation`) of one drone to
its deterministic action: ``clamp(actor(obs), action_low, action_high)``, the action mean clipped
to the bounds the simulator clips to. The observation normaliser lives inside the actor, so the
file is self-contained. Graph: input ``obs`` float32 ``[batch, obs_dim]``, output ``action``
float32 ``[batch, 4]``, batch dynamic.

Metadata (ONNX ``metadata_props``, all strings; :data:`REQUIRED_KEYS`): the observation layout
(``obs_layout_version``, ``obs_neighbours_k``, ``obs_dim``, ``obs_slices``), the action contract
(``action_mode``, ``action_low``, ``action_high`` comma-separated, ``control_hz``, the velocity
scales ``max_speed_mps`` and ``max_yaw_rate_rad_s``, ``neighbour_range_m``, ``drone_model``),
provenance (``scenario``, ``num_drones``, ``training_steps``, ``model_preset``, ``encoder``,
``source_commit``, ``swarm_rl_version``, ``producer``) and, not required,
``training_updates`` and ``checkpoint_sha256``.

The export runs the legacy TorchScript-based exporter (``dynamo=False``): it needs neither
``onnxscript`` nor network access. Before the file is written, ``onnx.checker`` (full check)
and an onnxruntime parity check on random observations must pass; the file is then written
atomically, so a failed export leaves any previous file untouched.

:func:`read_policy_metadata` needs neither torch nor onnxruntime (deploy side); the rest imports
torch when called.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import math
import os
import subprocess
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx

import swarm_rl
from sim.config import ACTION_MODES
from sim.observation import LAYOUT_VERSION, OWN_DIM, ObsLayout
from swarm_rl.errors import ExportError, PolicyFileError
from swarm_rl.files import write_bytes

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from swarm_rl.models import Actor
    from swarm_rl.train.config import TrainConfig

INPUT_NAME = "obs"
OUTPUT_NAME = "action"
ACTION_DIM = 4
MIN_OPSET = 17
DEFAULT_OPSET = 17
PARITY_TOL = 1e-5
"""Largest |torch - onnxruntime| action difference an export accepts."""
EXPORT_PARITY_SAMPLES = 2000
CHECKPOINT_FILE = "checkpoint.pt"

REQUIRED_KEYS = (
    "obs_layout_version", "obs_neighbours_k", "obs_dim", "obs_slices",
    "action_mode", "action_low", "action_high", "control_hz",
    "max_speed_mps", "max_yaw_rate_rad_s", "neighbour_range_m", "drone_model",
    "scenario", "num_drones", "training_steps", "model_preset", "encoder",
    "source_commit", "swarm_rl_version", "producer",
)


def action_bounds(action_mode: str) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) float32 (4,) normalised action bounds of ``action_mode``; the same as
    ``sim.swarm_env.SwarmVecEnv.action_low/high`` (motors [0, 1], velocity [-1, 1])."""
    if action_mode not in ACTION_MODES:
        raise ValueError(f"action_mode: unknown value '{action_mode}'; allowed: "
                         f"{', '.join(ACTION_MODES)}")
    low = np.full(ACTION_DIM, 0.0 if action_mode == "motors" else -1.0, np.float32)
    return low, np.ones(ACTION_DIM, np.float32)


def source_commit(root: Path | None = None) -> str:
    """``git rev-parse HEAD`` of the swarm_rl checkout (suffix ``-dirty`` when the tree has
    changes, untracked files included), or ``unknown`` outside a git checkout."""
    root = Path(root) if root is not None else Path(__file__).resolve().parents[1]
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                              timeout=20, check=True, env=env).stdout.strip()

    try:
        # An installed package inside some other repository (a venv in a checkout) is not it.
        if Path(git("rev-parse", "--show-toplevel")).resolve() != root.resolve():
            return "unknown"
        head = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain"))
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("-dirty" if dirty else "")


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",")]


def _format_floats(values: np.ndarray) -> str:
    return ",".join(repr(float(v)) for v in values)


def random_observations(layout: ObsLayout, n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, layout.dim) float32 synthetic observations in plausible ranges: random rotations,
    neighbour masks either nearest-first (as the observation function fills them) or random
    0/1, and masked neighbour features zero, as the observation function produces."""
    k = layout.k
    q = rng.normal(size=(n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    x, y, z, w = q.T
    rot = np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
                    2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
                    2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], 1)
    if k:
        prefix = np.arange(k) < rng.integers(0, k + 1, size=(n, 1))
        mask = np.where(rng.random((n, 1)) < 0.5, prefix, rng.random((n, k)) < 0.5)
    else:
        mask = np.zeros((n, 0), bool)
    feats = np.concatenate([rng.normal(0.0, 1.5, (n, k, 3)), rng.normal(0.0, 1.0, (n, k, 3))],
                           -1) * mask[..., None]
    parts = [rng.normal(0.0, 1.5, (n, 3)), rng.normal(0.0, 1.0, (n, 3)), rot,
             rng.normal(0.0, 2.0, (n, 3)), rng.uniform(0.0, 3.0, (n, 1)),
             feats.reshape(n, 6 * k), mask.astype(float), rng.uniform(0.0, 2.0, (n, 9))]
    obs = np.concatenate(parts, 1).astype(np.float32)
    assert obs.shape == (n, layout.dim)
    return obs


# --- torch side ----------------------------------------------------------------------------------
@contextlib.contextmanager
def _single_thread() -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@functools.cache
def _policy_class() -> type:
    import torch
    from torch import nn

    class DeterministicPolicy(nn.Module):
        """Raw observation (B, obs_dim) -> clamp(actor mean, low, high) (B, 4)."""

        def __init__(self, actor: nn.Module, low: np.ndarray, high: np.ndarray) -> None:
            super().__init__()
            self.actor = actor
            self.register_buffer("action_low", torch.as_tensor(low, dtype=torch.float32))
            self.register_buffer("action_high", torch.as_tensor(high, dtype=torch.float32))

        def forward(self, obs: torch.Tensor) -> torch.Tensor:
            return torch.clamp(self.actor(obs), self.action_low, self.action_high)

    return DeterministicPolicy


def deterministic_policy(actor: Actor, action_mode: str) -> torch.nn.Module:
    """The module that is exported: ``clamp(actor(obs), *action_bounds(action_mode))``."""
    return _policy_class()(actor, *action_bounds(action_mode)).eval()


def _resolve_checkpoint(checkpoint: str | Path) -> Path:
    path = Path(checkpoint)
    return path / CHECKPOINT_FILE if path.is_dir() else path


def load_actor(checkpoint: str | Path) -> tuple[Actor, TrainConfig, dict[str, Any]]:
    """The trained actor (eval mode), the run's config and the raw checkpoint payload.

    ``checkpoint`` is a ``checkpoint.pt`` written by the trainer or its run directory. Raises
    :class:`~swarm_rl.train.checkpoint.CheckpointError` naming the file and the problem.
    """
    import torch

    from sim.errors import ConfigError
    from swarm_rl.models import Actor
    from swarm_rl.train.checkpoint import CheckpointError, load_checkpoint, load_module_state
    from swarm_rl.train.config import train_config_from_dict

    path = _resolve_checkpoint(checkpoint)
    try:
        data = load_checkpoint(path)
    except CheckpointError:
        raise
    except Exception as exc:  # random bytes can make unpickling fail in many ways
        raise CheckpointError(f"{path}: not a readable swarm_rl checkpoint (corrupt or "
                              f"truncated): {type(exc).__name__}: {exc}") from exc
    for key in ("config", "actor", "steps"):
        if key not in data:
            raise CheckpointError(f"{path}: checkpoint lacks '{key}'")
    if not isinstance(data["actor"], dict):
        raise CheckpointError(f"{path}: 'actor' is not a state dict")
    try:
        cfg = train_config_from_dict(data["config"])
    except ConfigError as exc:
        raise CheckpointError(f"{path}: the training config saved in it is invalid: "
                              f"{exc}") from exc
    actor = Actor(ObsLayout(cfg.env.neighbours_k), cfg.model, np.zeros(ACTION_DIM, np.float32))
    try:
        load_module_state(actor, data["actor"], "actor", path)
    except CheckpointError:
        raise
    except (AttributeError, TypeError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: the actor state cannot be loaded: {exc}") from exc
    bad = [k for k, v in actor.state_dict().items()
           if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(f"{path}: the actor holds NaN or inf in {', '.join(bad[:5])}; "
                              "the run diverged, export an earlier checkpoint")
    return actor.eval(), cfg, data


def _metadata(cfg: TrainConfig, data: dict[str, Any], checkpoint: Path) -> dict[str, str]:
    import torch

    from swarm_rl.train.ppo import stage_value

    env, model = cfg.env, cfg.model
    low, high = action_bounds(env.action_mode)
    progress = min(1.0, data["steps"] / cfg.total_steps)
    drones = int(stage_value(cfg.curriculum.num_drones, progress, env.num_drones))
    meta = {
        **ObsLayout(env.neighbours_k).metadata(),
        "action_mode": env.action_mode,
        "action_low": _format_floats(low), "action_high": _format_floats(high),
        "control_hz": str(env.control_hz),
        "max_speed_mps": repr(float(env.max_speed_mps)),
        "max_yaw_rate_rad_s": repr(float(env.max_yaw_rate_rad_s)),
        "neighbour_range_m": repr(float(env.neighbour_range_m)),
        "drone_model": env.model,
        "scenario": env.scenario,
        "num_drones": str(drones),
        "training_steps": str(int(data["steps"])),
        "training_updates": str(int(data.get("update_index", 0))),
        "model_preset": model.preset, "encoder": model.encoder,
        "source_commit": source_commit(),
        "swarm_rl_version": swarm_rl.__version__,
        "producer": (f"swarm_rl.export {swarm_rl.__version__} (torch {torch.__version__} "
                     f"TorchScript exporter, onnx {onnx.__version__})"),
        "checkpoint_sha256": hashlib.sha256(checkpoint.read_bytes()).hexdigest(),
    }
    return meta


def export_onnx(checkpoint: str | Path, out: str | Path, opset: int = DEFAULT_OPSET
                ) -> dict[str, Any]:
    """Export the deterministic policy of a trainer checkpoint to ``out`` (ONNX).

    Returns a summary: ``path``, ``opset``, ``params`` (weights the policy uses; the
    normaliser's statistics not counted), ``bytes``, ``parity_max_abs_error`` (torch vs
    onnxruntime on ``parity_samples`` random observations) and ``metadata``.
    """
    import torch

    from swarm_rl.models import count_parameters

    if isinstance(opset, bool) or not isinstance(opset, int) or opset < MIN_OPSET:
        raise ValueError(f"opset: must be an integer >= {MIN_OPSET}, got {opset!r}")
    checkpoint, out = _resolve_checkpoint(checkpoint), Path(out)
    actor, cfg, data = load_actor(checkpoint)
    policy = deterministic_policy(actor, cfg.env.action_mode)
    layout = actor.layout
    buffer = io.BytesIO()
    with _single_thread(), torch.no_grad(), warnings.catch_warnings():
        # The legacy exporter's deprecation notice and the tracer's note that the constant
        # sqrt(hidden) of the attention encoder is a constant are expected here.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        try:
            torch.onnx.export(
                policy, (torch.zeros(2, layout.dim),), buffer, dynamo=False,
                opset_version=opset, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                do_constant_folding=True)
        except Exception as exc:
            raise ExportError(f"{checkpoint}: torch.onnx.export failed (opset {opset}): "
                              f"{exc}") from exc
    model = onnx.load_from_string(buffer.getvalue())
    model.producer_name = "swarm_rl"
    model.producer_version = swarm_rl.__version__
    model.doc_string = (f"swarm_rl policy: raw observation '{INPUT_NAME}' [batch, {layout.dim}]"
                        f" (layout v{layout.version}, K={layout.k}) -> deterministic "
                        f"'{OUTPUT_NAME}' [batch, {ACTION_DIM}] ({cfg.env.action_mode})")
    meta = _metadata(cfg, data, checkpoint)
    onnx.helper.set_model_props(model, meta)
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"{checkpoint}: the exported graph fails onnx.checker: {exc}") from exc
    blob = model.SerializeToString()
    obs = random_observations(layout, EXPORT_PARITY_SAMPLES, np.random.default_rng(0))
    err = parity(policy, blob, obs)
    if not err <= PARITY_TOL:
        raise ExportError(f"{checkpoint}: onnxruntime and torch disagree by {err:.3g} "
                          f"(> {PARITY_TOL:g}) on random observations; nothing written")
    out.parent.mkdir(parents=True, exist_ok=True)
    write_bytes(out, blob)
    params = count_parameters(actor) - actor.log_std.numel()
    return {"path": str(out), "checkpoint": str(checkpoint), "opset": opset, "params": params,
            "bytes": len(blob), "parity_max_abs_error": err,
            "parity_samples": EXPORT_PARITY_SAMPLES, "metadata": meta}


def _session(onnx_model: str | Path | bytes):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    source = onnx_model if isinstance(onnx_model, bytes) else str(onnx_model)
    return ort.InferenceSession(source, opts, providers=["CPUExecutionProvider"])


def parity(actor_module: torch.nn.Module, onnx_path: str | Path | bytes,
           obs: np.ndarray) -> float:
    """Max |torch action - onnxruntime action| over the rows of ``obs`` (n, obs_dim).

    ``actor_module`` is the exported policy (:func:`deterministic_policy`) or a bare
    :class:`~swarm_rl.models.Actor`, which is then clamped to the bounds of the file's
    ``action_mode``. ``onnx_path`` may also be the serialised model. A NaN where the other side
    has none counts as an infinite error.
    """
    import torch

    from swarm_rl.models import Actor

    obs = np.ascontiguousarray(obs, dtype=np.float32)
    if obs.ndim != 2:
        raise ValueError(f"obs: expected shape (n, obs_dim), got {obs.shape}")
    module = actor_module
    if isinstance(module, Actor):
        blob = onnx_path if isinstance(onnx_path, bytes) else Path(onnx_path).read_bytes()
        props = {p.key: p.value for p in onnx.load_from_string(blob).metadata_props}
        module = deterministic_policy(module, props.get("action_mode", ""))
    if obs.shape[0] == 0:
        return 0.0
    with _single_thread(), torch.no_grad():
        was_training = module.training
        module.eval()
        try:
            ref = module(torch.from_numpy(obs)).numpy()
        finally:
            module.train(was_training)
    got = _session(onnx_path).run([OUTPUT_NAME], {INPUT_NAME: obs})[0]
    if got.shape != ref.shape:
        raise ValueError(f"{onnx_path if not isinstance(onnx_path, bytes) else 'model'}: "
                         f"output shape {got.shape} differs from torch's {ref.shape}")
    if (np.isnan(ref) != np.isnan(got)).any():
        return math.inf
    return float(np.nan_to_num(np.abs(ref.astype(np.float64) - got), nan=0.0).max())


# --- reading a policy file (no torch) ------------------------------------------------------------
def _check_metadata(path: Path, meta: dict[str, str]) -> None:
    def bad(key: str, expected: str) -> PolicyFileError:
        return PolicyFileError(f"{path}: metadata '{key}': expected {expected}, "
                               f"got {meta[key]!r}")

    def integer(key: str, minimum: int) -> int:
        try:
            value = int(meta[key])
        except ValueError:
            raise bad(key, f"an integer >= {minimum}") from None
        if value < minimum:
            raise bad(key, f"an integer >= {minimum}")
        return value

    def positive(key: str) -> float:
        try:
            value = float(meta[key])
        except ValueError:
            raise bad(key, "a positive number") from None
        if not (math.isfinite(value) and value > 0):
            raise bad(key, "a positive number")
        return value

    version = integer("obs_layout_version", 1)
    k = integer("obs_neighbours_k", 0)
    dim = integer("obs_dim", 1)
    layout = ObsLayout(k)
    if version == LAYOUT_VERSION and dim != layout.dim:
        raise bad("obs_dim", f"{layout.dim} (= {OWN_DIM} + 7 K + 9 for layout v{version} "
                             f"with K = {k})")
    try:
        slices = {}
        for part in meta["obs_slices"].split(";"):
            name, start, stop = part.split(":")
            slices[name] = (int(start), int(stop))
    except ValueError:
        raise bad("obs_slices", "'name:start:stop;...'") from None
    if max(stop for _, stop in slices.values()) != dim:
        raise bad("obs_slices", f"slices that end at obs_dim = {dim}")
    if version == LAYOUT_VERSION and meta["obs_slices"] != layout.metadata()["obs_slices"]:
        raise bad("obs_slices", f"{layout.metadata()['obs_slices']!r} (layout v{version}, "
                                f"K = {k})")
    if meta["action_mode"] not in ACTION_MODES:
        raise bad("action_mode", f"one of {', '.join(ACTION_MODES)}")
    bounds = []
    for key in ("action_low", "action_high"):
        try:
            values = _floats(meta[key])
        except ValueError:
            values = []
        if len(values) != ACTION_DIM or not all(math.isfinite(v) for v in values):
            raise bad(key, f"{ACTION_DIM} comma-separated finite numbers")
        bounds.append(values)
    if not all(lo < hi for lo, hi in zip(*bounds)):
        raise bad("action_high", "values above action_low")
    integer("control_hz", 1)
    for key in ("max_speed_mps", "max_yaw_rate_rad_s", "neighbour_range_m"):
        positive(key)
    integer("num_drones", 1)
    integer("training_steps", 0)
    for key in ("drone_model", "scenario", "model_preset", "encoder", "source_commit",
                "swarm_rl_version", "producer"):
        if not meta[key].strip():
            raise bad(key, "a non-empty string")


def _check_signature(path: Path, model: onnx.ModelProto, obs_dim: int) -> None:
    def dims(value_info: onnx.ValueInfoProto) -> list[int | str]:
        shape = value_info.type.tensor_type.shape
        return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
                for d in shape.dim]

    graph = model.graph
    inputs = [i for i in graph.input if i.name not in {t.name for t in graph.initializer}]
    for role, values, name, width in (("input", inputs, INPUT_NAME, obs_dim),
                                      ("output", graph.output, OUTPUT_NAME, ACTION_DIM)):
        if len(values) != 1 or values[0].name != name:
            raise PolicyFileError(f"{path}: expected one graph {role} named '{name}', got "
                                  f"{[v.name for v in values]}")
        shape = dims(values[0])
        if (values[0].type.tensor_type.elem_type != onnx.TensorProto.FLOAT
                or len(shape) != 2 or shape[1] != width):
            raise PolicyFileError(f"{path}: graph {role} '{name}' must be float32 "
                                  f"[batch, {width}], got shape {shape}")


def read_policy_metadata(path: str | Path) -> dict[str, str]:
    """The metadata of an exported policy, validated (every :data:`REQUIRED_KEYS` present and
    well-formed, the layout self-consistent, graph input/output shaped to match).

    Raises :class:`PolicyFileError` naming the file and the key or the problem.
    """
    path = Path(path)
    if not path.is_file():
        raise PolicyFileError(f"{path}: no such policy file")
    try:
        model = onnx.load_model_from_string(path.read_bytes())
    except Exception as exc:  # protobuf DecodeError and friends
        raise PolicyFileError(f"{path}: not an ONNX model (corrupt or another kind of file): "
                              f"{type(exc).__name__}: {exc}") from exc
    try:
        onnx.checker.check_model(model)
    except Exception as exc:  # ValidationError; protobuf parses some non-ONNX bytes
        raise PolicyFileError(f"{path}: not a valid ONNX model (corrupt or another kind of "
                              f"file): {str(exc).strip().splitlines()[0] if str(exc) else exc!r}"
                              ) from exc
    meta = {p.key: p.value for p in model.metadata_props}
    missing = [key for key in REQUIRED_KEYS if key not in meta]
    if missing:
        raise PolicyFileError(f"{path}: policy metadata lacks {', '.join(map(repr, missing))}; "
                              "export the policy with `swarm-rl export onnx`")
    _check_metadata(path, meta)
    _check_signature(path, model, int(meta["obs_dim"]))
    return meta
