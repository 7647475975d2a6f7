"""Firmware export: the generated C against onnxruntime (host gcc always; Cortex-M4F under QEMU
when the ARM toolchain and qemu-system-arm are installed), on the shipped policies, on random
actors of every encoder / K / action mode / preset exported by swarm_rl.export, and on small
hand-built graphs of every supported operator; the onboard observation builder against
sim.observation; the exported crazyflie-firmware app; unsupported operators; the CLI.

One compiled binary per model per module (fixtures), fixed seeds throughout.
"""
from __future__ import annotations

import ctypes
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from scipy.spatial.transform import Rotation

from firmware_export.app import export_firmware, layout_v1_slices
from firmware_export.bench import PARITY_TOL, TARGETS
from firmware_export.check import (HOST_CC, HOST_CFLAGS, build_host, build_target,
                                   libm_usage, max_abs_error, missing_target_tools)
from firmware_export.codegen import generate, literal
from firmware_export.graph import (SUPPORTED_OPS, FirmwareExportError, UnsupportedOperatorError,
                                   lower)
from sim.observation import (OBSTACLE_RANGE_M, ObsLayout, build_observation,
                             nearest_neighbours)
from swarm_rl.export import export_onnx, random_observations
from swarm_rl.models import Actor
from swarm_rl.train.checkpoint import save_checkpoint
from swarm_rl.train.config import load_preset

ROOT = Path(__file__).resolve().parents[1]
C_DIR = ROOT / "firmware_export" / "c"
SHIPPED = {"hover_single_motors": ROOT / "policies" / "hover_single_motors.onnx",
           "formation_velocity_8": ROOT / "policies" / "formation_velocity_8.onnx"}
N_OBS = 10_000
MISSING_TOOLS = missing_target_tools()
needs_target = pytest.mark.skipif(bool(MISSING_TOOLS), reason=(
    f"emulator check needs {', '.join(MISSING_TOOLS)} (apt-get install gcc-arm-none-eabi "
    "libnewlib-arm-none-eabi qemu-system-arm; .ci/run installs them)"))


def _session(model: Path | bytes) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(model if isinstance(model, bytes) else str(model), opts,
                                providers=["CPUExecutionProvider"])


def ort_actions(model: Path | bytes, obs: np.ndarray) -> np.ndarray:
    """onnxruntime's actions for a batch of observations."""
    sess = _session(model)
    return sess.run(None, {sess.get_inputs()[0].name: obs})[0]


def ort_rows(model: bytes, obs: np.ndarray) -> np.ndarray:
    """onnxruntime's outputs one observation per call (batch 1, as on the drone: what the C
    code implements for any graph)."""
    sess = _session(model)
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: row[None]})[0] for row in obs])


# --- shipped policies and random actors ----------------------------------------------------------
@pytest.fixture(scope="module")
def shipped(tmp_path_factory) -> dict[str, dict]:
    """Per shipped policy: 10,000 random observations, onnxruntime actions, lowered network,
    C sources and one host build."""
    out = {}
    for name, path in SHIPPED.items():
        net = lower(path)
        sources = generate(net)
        obs = random_observations(ObsLayout(int(net.metadata["obs_neighbours_k"])), N_OBS,
                                  np.random.default_rng(0))
        host = build_host(sources, tmp_path_factory.mktemp(f"{name}_host"))
        out[name] = {"path": path, "net": net, "sources": sources, "obs": obs,
                     "ref": ort_actions(path, obs), "host": host}
    return out


# (encoder, K, action mode, preset): every encoder, both action modes and presets, K in 1..6.
ACTORS = [("deepsets", 6, "motors", "deploy"), ("attention", 6, "velocity", "deploy"),
          ("attention", 1, "motors", "deploy"), ("deepsets", 3, "velocity", "offboard"),
          ("attention", 3, "motors", "offboard"), ("deepsets", 1, "velocity", "deploy")]


def _random_actor_policy(directory: Path, encoder: str, k: int, mode: str, preset: str,
                         seed: int) -> Path:
    """A randomly initialised actor with a non-trivial normaliser and output layer, exported
    through swarm_rl.export (metadata, onnx.checker, torch parity included)."""
    cfg = load_preset("hover_single", [f"model.encoder={encoder}", f"env.neighbours_k={k}",
                                       f"env.action_mode={mode}", f"model.preset={preset}"])
    torch.manual_seed(seed)
    bias = np.full(4, 0.5 if mode == "motors" else 0.0, np.float32)
    actor = Actor(ObsLayout(k), cfg.model, bias)
    with torch.no_grad():
        actor.norm.mean.normal_(0.0, 0.5)
        actor.norm.var.uniform_(0.2, 3.0)
        for p in actor.trunk[-1].parameters():  # orthogonal init gain 0.01 -> actions ~ bias
            p.normal_(0.0, 0.3)
        for p in actor.parameters():
            if p.dim() == 1 and p is not actor.log_std:
                p.normal_(0.0, 0.2)  # zero biases would hide a wrong bias index
    ckpt = directory / "checkpoint.pt"
    save_checkpoint(ckpt, {"config": cfg.to_dict(), "actor": actor.state_dict(), "steps": 0})
    out = directory / "policy.onnx"
    export_onnx(ckpt, out)
    return out


@pytest.fixture(scope="module")
def actors(tmp_path_factory) -> dict[tuple, dict]:
    out = {}
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for i, spec in enumerate(ACTORS):
            d = tmp_path_factory.mktemp("actor_" + "_".join(map(str, spec)))
            path = _random_actor_policy(d, *spec, seed=i)
            net = lower(path)
            sources = generate(net)
            obs = random_observations(ObsLayout(spec[1]), N_OBS, np.random.default_rng(i))
            out[spec] = {"path": path, "net": net, "sources": sources, "obs": obs,
                         "ref": ort_actions(path, obs), "host": build_host(sources, d / "host")}
    finally:
        torch.set_num_threads(before)
    return out


@pytest.mark.parametrize("name", list(SHIPPED))
def test_host_matches_onnxruntime_on_shipped_policy(shipped, name):
    s = shipped[name]
    got = s["host"].run(s["obs"])
    err = max_abs_error(got, s["ref"])
    assert err <= PARITY_TOL, f"{name}: max |C - onnxruntime| = {err:.3g}"
    assert s["ref"].std(0).min() > 1e-3, "the observations must move every action"
    assert s["net"].macs == 5736  # 19*32 + 32*32 + 6*(6*16 + 16*16) + 9*8 + 56*32 + 32*4


@pytest.mark.parametrize("spec", ACTORS, ids=["_".join(map(str, s)) for s in ACTORS])
def test_host_matches_onnxruntime_on_random_actors(actors, spec):
    a = actors[spec]
    err = max_abs_error(a["host"].run(a["obs"]), a["ref"])
    assert err <= PARITY_TOL, f"{spec}: max |C - onnxruntime| = {err:.3g}"
    assert a["ref"].std(0).min() > 1e-3
    ops = a["net"].op_counts
    if spec[0] == "attention":  # the attention graph's softmax and mask really were lowered
        assert {"Softmax", "Where", "Less"} <= set(ops)
    low, high = (0.0, 1.0) if spec[2] == "motors" else (-1.0, 1.0)
    got = a["host"].run(a["obs"])
    assert got.min() >= low and got.max() <= high


def test_random_actor_macs_follow_the_architecture(actors):
    for (encoder, k, _, preset), a in actors.items():
        s = {"own": 32, "neighbour": 16, "obstacle": 8, "trunk": 32} if preset == "deploy" \
            else {"own": 64, "neighbour": 32, "obstacle": 16, "trunk": 64}
        macs = (19 * s["own"] + s["own"] ** 2 + k * (6 * s["neighbour"] + s["neighbour"] ** 2)
                + 9 * s["obstacle"] + (s["own"] + s["neighbour"] + s["obstacle"]) * s["trunk"]
                + s["trunk"] * 4)
        if encoder == "attention":
            macs += s["own"] * s["neighbour"]  # the query projection
        assert a["net"].macs == macs, (encoder, k, preset)


def test_generated_code_is_static(shipped, tmp_path):
    """Weights are static const, no heap, no recursion, no VLA: gcc's -fstack-usage calls the
    inference frame 'static' (fixed size known at compile time)."""
    src = shipped["formation_velocity_8"]["sources"]
    for word in ("malloc", "calloc", "realloc", "free(", "alloca"):
        assert word not in src.source
    assert src.source.count("static const float swarm_policy_k") == 19  # weights, bias, bounds
    body = src.source.split("void swarm_policy_run(")[1]
    assert "swarm_policy_run(" not in body  # no recursion
    assert f"static float swarm_policy_arena[{src.arena_floats}];" in src.source
    (tmp_path / "swarm_policy.c").write_text(src.source)
    (tmp_path / "swarm_policy.h").write_text(src.header)
    subprocess.run([HOST_CC, *HOST_CFLAGS, "-fstack-usage", "-c", "swarm_policy.c"],
                   cwd=tmp_path, check=True, capture_output=True)
    usage = (tmp_path / "swarm_policy.su").read_text()
    frame = re.search(r"swarm_policy_run\t(\d+)\t(\w+)", usage)
    assert frame and frame.group(2) == "static" and int(frame.group(1)) < 256, usage
    header = src.header
    for define in ("OBS_DIM 70", "ACTION_DIM 4", "OBS_NEIGHBOURS_K 6", "ACTION_MODE_VELOCITY 1",
                   "OBS_NEIGHBOUR_MASK_START 55", "OBS_OBSTACLES_SIZE 9", "CONTROL_HZ 100"):
        assert f"#define SWARM_POLICY_{define}" in header


def test_literals_round_trip_float32():
    rng = np.random.default_rng(3)
    values = np.concatenate([rng.normal(0, 1, 500), rng.normal(0, 1e-30, 50),
                             [1e9, -1e9, 3.4e38, 1.4e-45, 0.0, -0.0]]).astype(np.float32)
    for v in values:
        text = literal(v).strip("()").rstrip("f")
        assert np.float32(float(text)) == v, text
    assert literal(np.inf) == "INFINITY" and literal(np.nan) == "NAN"


# --- operator zoo: every supported operator on small random graphs -------------------------------
D = 24  # observation width of the zoo graphs; x4 = obs viewed as (1, 2, 3, 4)


def _c(name: str, value) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(value), name)


def _n(op: str, ins: list[str], out: str, **attrs) -> onnx.NodeProto:
    return helper.make_node(op, ins, [out], name=f"{op.lower()}_{out}", **attrs)


def _zoo(rng: np.random.Generator) -> dict[str, tuple[list, list]]:
    """name -> (nodes, initialisers); each graph maps 'obs' (batch, 24) to 'y' (batch, M).
    Available to every graph: 'x4' = obs as (batch, 2, 3, 4), 'pos' = |obs| + 0.5."""
    f32 = np.float32

    def w(*shape):
        return rng.normal(0, 0.5, shape).astype(f32)

    cases: dict[str, tuple[list, list]] = {}
    for op in ("Tanh", "Relu", "Sigmoid", "Softsign", "Neg", "Abs", "Erf"):
        cases[op] = ([_n(op, ["obs"], "z")], [])
    cases["LeakyRelu"] = ([_n("LeakyRelu", ["obs"], "z", alpha=0.2)], [])
    cases["Elu"] = ([_n("Elu", ["obs"], "z", alpha=0.7)], [])
    cases["Exp"] = ([_n("Mul", ["obs", "half"], "h"), _n("Exp", ["h"], "z")],
                    [_c("half", f32(0.5))])
    for op in ("Log", "Sqrt", "Reciprocal"):
        cases[op] = ([_n(op, ["pos"], "z")], [])
    cases["Clip"] = ([_n("Clip", ["obs", "lo", "hi"], "z")], [_c("lo", f32(-0.5)),
                                                              _c("hi", f32(0.8))])
    cases["Clip_min_only"] = ([_n("Clip", ["obs", "lo"], "z")], [_c("lo", f32(-0.3))])
    cases["Add_broadcast"] = ([_n("Add", ["x4", "c"], "z")], [_c("c", w(3, 1))])
    cases["Sub_scalar_first"] = ([_n("Sub", ["c", "obs"], "z")], [_c("c", f32(0.7))])
    cases["Mul_broadcast"] = ([_n("Mul", ["x4", "c"], "z")], [_c("c", w(2, 1, 4))])
    cases["Div_runtime"] = ([_n("Div", ["obs", "pos"], "z")], [])
    cases["Div_const"] = ([_n("Div", ["x4", "c"], "z")], [_c("c", np.abs(w(4)) + 0.5)])
    cases["Pow"] = ([_n("Pow", ["pos", "c"], "z")], [_c("c", f32(1.7))])
    cases["Max_variadic"] = ([_n("Tanh", ["obs"], "t"), _n("Max", ["obs", "t", "c"], "z")],
                             [_c("c", w(D))])
    cases["Min"] = ([_n("Min", ["obs", "c"], "z")], [_c("c", w(1, D))])
    cases["Sum"] = ([_n("Tanh", ["obs"], "t"), _n("Sum", ["obs", "t", "c"], "z")],
                    [_c("c", w(D))])
    cases["Mean"] = ([_n("Tanh", ["obs"], "t"), _n("Mean", ["obs", "t", "c"], "z")],
                     [_c("c", w(D))])
    for op in ("Less", "Greater", "LessOrEqual", "GreaterOrEqual"):
        cases[op] = ([_n(op, ["obs", "c"], "b"), _n("Cast", ["b"], "z", to=TensorProto.FLOAT)],
                     [_c("c", w(D))])
    cases["Equal"] = ([_n("Relu", ["obs"], "r"), _n("Equal", ["r", "c"], "b"),
                       _n("Cast", ["b"], "z", to=TensorProto.FLOAT)], [_c("c", f32(0.0))])
    for op in ("And", "Or", "Xor"):
        cases[op] = ([_n("Less", ["obs", "a"], "p"), _n("Greater", ["obs", "b"], "q"),
                      _n(op, ["p", "q"], "b2"), _n("Cast", ["b2"], "z", to=TensorProto.FLOAT)],
                     [_c("a", f32(0.4)), _c("b", f32(-0.4))])
    cases["Not"] = ([_n("Less", ["obs", "a"], "p"), _n("Not", ["p"], "b"),
                     _n("Cast", ["b"], "z", to=TensorProto.FLOAT)], [_c("a", f32(0.1))])
    cases["Cast_to_bool"] = ([_n("Relu", ["obs"], "r"),
                              _n("Cast", ["r"], "b", to=TensorProto.BOOL),
                              _n("Cast", ["b"], "z", to=TensorProto.FLOAT)], [])
    cases["Where"] = ([_n("Less", ["x4", "zero"], "m"), _n("Where", ["m", "x4", "c"], "z")],
                      [_c("zero", f32(0.0)), _c("c", w(4))])
    cases["Gemm"] = ([_n("Gemm", ["obs", "w", "b"], "z")], [_c("w", w(D, 7)), _c("b", w(7))])
    cases["Gemm_transB_alpha_beta"] = (
        [_n("Gemm", ["obs", "w", "b"], "z", transB=1, alpha=0.5, beta=2.0)],
        [_c("w", w(7, D)), _c("b", w(1, 7))])
    cases["Gemm_transA"] = ([_n("Transpose", ["obs"], "t", perm=[1, 0]),
                             _n("Gemm", ["t", "w", "b"], "z", transA=1)],
                            [_c("w", w(D, 6)), _c("b", w(6))])
    cases["Gemm_no_bias"] = ([_n("Gemm", ["obs", "w"], "z")], [_c("w", w(D, 5))])
    cases["MatMul"] = ([_n("MatMul", ["x4", "w"], "z")], [_c("w", w(4, 5))])
    cases["MatMul_batch_broadcast"] = ([_n("MatMul", ["x4", "w"], "z")], [_c("w", w(2, 4, 5))])
    cases["MatMul_vector"] = ([_n("Reshape", ["obs", "s"], "v"), _n("MatMul", ["v", "w"], "mv"),
                               _n("Unsqueeze", ["mv", "a0"], "z")],
                              [_c("s", np.array([D])), _c("w", w(D, 3)), _c("a0", np.array([0]))])
    # masked scaled dot-product attention between runtime tensors, then softmax
    cases["attention"] = (
        [_n("Reshape", ["obs", "s6"], "x3"), _n("MatMul", ["x3", "wq"], "q"),
         _n("MatMul", ["x3", "wk"], "k"), _n("MatMul", ["x3", "wv"], "v"),
         _n("Transpose", ["k"], "kt", perm=[0, 2, 1]), _n("MatMul", ["q", "kt"], "s"),
         _n("Div", ["s", "scale"], "ss"), _n("ReduceSum", ["x3", "ax2"], "rs", keepdims=1),
         _n("Less", ["rs", "zero"], "m"), _n("Transpose", ["m"], "mt", perm=[0, 2, 1]),
         _n("Where", ["mt", "big", "ss"], "masked"),
         _n("Softmax", ["masked"], "p", axis=-1), _n("MatMul", ["p", "v"], "z")],
        [_c("s6", np.array([-1, 6, 4])), _c("wq", w(4, 4)), _c("wk", w(4, 4)),
         _c("wv", w(4, 4)), _c("scale", f32(2.0)), _c("zero", f32(0.0)),
         _c("ax2", np.array([2])), _c("big", f32(-1e9))])
    cases["ReduceSum_axes_input"] = ([_n("ReduceSum", ["x4", "ax"], "z", keepdims=1)],
                                     [_c("ax", np.array([1]))])
    cases["ReduceSum_two_axes"] = ([_n("ReduceSum", ["x4", "ax"], "z", keepdims=0)],
                                   [_c("ax", np.array([2, 3]))])
    cases["ReduceMean_negative_axis"] = ([_n("ReduceMean", ["x4"], "z", axes=[-1])], [])
    cases["ReduceMax"] = ([_n("ReduceMax", ["x4"], "z", axes=[1, 3])], [])
    cases["ReduceMin"] = ([_n("ReduceMin", ["x4"], "z", axes=[2], keepdims=0)], [])
    cases["Softmax_last"] = ([_n("Softmax", ["x4"], "z", axis=-1)], [])
    cases["Softmax_axis1"] = ([_n("Softmax", ["x4"], "z", axis=1)], [])
    cases["LogSoftmax"] = ([_n("LogSoftmax", ["x4"], "z", axis=2)], [])
    cases["LayerNormalization"] = (
        [_n("LayerNormalization", ["x4", "g", "b"], "z", axis=-1, epsilon=1e-5)],
        [_c("g", w(4)), _c("b", w(4))])
    cases["LayerNormalization_two_axes"] = (
        [_n("LayerNormalization", ["x4", "g"], "z", axis=-2, epsilon=1e-3)], [_c("g", w(3, 4))])
    cases["Concat_runtime"] = ([_n("Tanh", ["obs"], "t"), _n("Concat", ["t", "obs"], "z",
                                                              axis=1)], [])
    cases["Concat_const"] = ([_n("Concat", ["x4", "c"], "z", axis=-1)], [_c("c", w(1, 2, 3, 2))])
    cases["Slice_negative_step"] = ([_n("Slice", ["obs", "st", "en", "ax", "sp"], "z")],
                                    [_c("st", np.array([20])), _c("en", np.array([2])),
                                     _c("ax", np.array([1])), _c("sp", np.array([-3]))])
    cases["Slice_two_axes"] = ([_n("Slice", ["x4", "st", "en", "ax", "sp"], "z")],
                               [_c("st", np.array([1, 0])), _c("en", np.array([3, 4])),
                                _c("ax", np.array([2, 3])), _c("sp", np.array([1, 2]))])
    cases["Slice_contiguous_view"] = ([_n("Slice", ["obs", "st", "en", "ax"], "s"),
                                       _n("Tanh", ["s"], "z")],
                                      [_c("st", np.array([5])), _c("en", np.array([17])),
                                       _c("ax", np.array([1]))])
    cases["Transpose"] = ([_n("Transpose", ["x4"], "z", perm=[0, 3, 1, 2])], [])
    cases["Transpose_table"] = ([_n("Reshape", ["obs", "s"], "x"),
                                 _n("Transpose", ["x"], "z", perm=[0, 2, 1])],
                                [_c("s", np.array([-1, 12, 2]))])
    cases["Gather"] = ([_n("Gather", ["x4", "i"], "z", axis=3)], [_c("i", np.array([2, 0, 2]))])
    cases["Expand"] = ([_n("Reshape", ["obs", "s"], "x"), _n("Expand", ["x", "e"], "z")],
                       [_c("s", np.array([-1, 1, D])), _c("e", np.array([1, 3, D]))])
    cases["Tile"] = ([_n("Tile", ["x4", "r"], "z")], [_c("r", np.array([1, 1, 2, 1]))])
    cases["views"] = ([_n("Unsqueeze", ["obs", "a1"], "u"), _n("Squeeze", ["u", "a1"], "sq"),
                       _n("Identity", ["sq"], "id"), _n("Dropout", ["id"], "dr"),
                       _n("Flatten", ["dr"], "fl", axis=1), _n("Sigmoid", ["fl"], "z")],
                      [_c("a1", np.array([1]))])
    # torch's dynamic reshape: the target shape computed from Shape at run time
    cases["Shape_Gather_Concat_Reshape"] = (
        [_n("Shape", ["x4"], "sh"), _n("Gather", ["sh", "i0"], "b", axis=0),
         _n("Unsqueeze", ["b", "a0"], "bu"), _n("Concat", ["bu", "rest"], "tgt", axis=0),
         _n("Reshape", ["obs", "tgt"], "r"), _n("Tanh", ["r"], "z")],
        [_c("i0", np.array(0)), _c("a0", np.array([0])), _c("rest", np.array([6, 4]))])
    cases["ConstantOfShape_Range"] = (
        [_n("ConstantOfShape", ["shape"], "half", value=_c("v", np.array([0.5], f32))),
         _n("Range", ["r0", "r1", "r2"], "ramp"), _n("Mul", ["obs", "ramp"], "m"),
         _n("Add", ["m", "half"], "z")],
        [_c("shape", np.array([1, D])), _c("r0", f32(0.0)), _c("r1", f32(2.35)),
         _c("r2", f32(0.1))])
    cases["Size"] = ([_n("Size", ["x4"], "n"), _n("Cast", ["n"], "nf", to=TensorProto.FLOAT),
                      _n("Div", ["obs", "nf"], "z")], [])
    cases["Constant_node"] = ([helper.make_node("Constant", [], ["k"], value_floats=[0.25] * D),
                               _n("Mul", ["obs", "k"], "z")], [])
    return cases


PRELUDE = [_n("Reshape", ["obs", "_s4"], "x4"), _n("Abs", ["obs"], "_a"),
           _n("Add", ["_a", "_half"], "pos")]
ZOO = _zoo(np.random.default_rng(7))


def zoo_model(nodes: list, inits: list, opset: int = 17) -> onnx.ModelProto:
    inits = inits + [_c("_s4", np.array([-1, 2, 3, 4])), _c("_half", np.float32(0.5))]
    graph = helper.make_graph(PRELUDE + nodes + [_n("Flatten", ["z"], "y", axis=1)], "zoo",
                              [helper.make_tensor_value_info("obs", TensorProto.FLOAT,
                                                             ["batch", D])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT,
                                                             ["batch", "m"])],
                              inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


@pytest.mark.parametrize("case", list(ZOO))
def test_operator_zoo_host_matches_onnxruntime(case, tmp_path):
    model = zoo_model(*ZOO[case])
    obs = np.random.default_rng(11).normal(0.0, 1.5, (300, D)).astype(np.float32)
    ref = ort_rows(model.SerializeToString(), obs)
    host = build_host(generate(lower(model)), tmp_path)
    err = max_abs_error(host.run(obs), ref)
    assert err <= PARITY_TOL, f"{case}: max |C - onnxruntime| = {err:.3g}"
    assert np.isfinite(ref).all()


def test_operator_zoo_covers_every_supported_operator():
    used = {n.op_type for nodes, _ in ZOO.values() for n in PRELUDE + nodes}
    assert set(SUPPORTED_OPS) - used == set()


# --- unsupported graphs: clear errors ------------------------------------------------------------
def test_unsupported_operator_names_operator_and_node():
    model = zoo_model([_n("Sin", ["obs"], "z")], [])
    with pytest.raises(UnsupportedOperatorError) as info:
        lower(model)
    msg = str(info.value)
    assert "'Sin'" in msg and "sin_z" in msg and "supported:" in msg and "Tanh" in msg
    assert info.value.op_type == "Sin" and info.value.node == "sin_z"


def test_custom_domain_operator_is_refused():
    node = helper.make_node("FusedGemm", ["obs"], ["z"], name="fused", domain="com.microsoft")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info(
        "obs", TensorProto.FLOAT, ["batch", D])], [helper.make_tensor_value_info(
            "z", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("com.microsoft", 1)])
    with pytest.raises(UnsupportedOperatorError, match=r"fused.*com\.microsoft\.FusedGemm"):
        lower(model)


def test_observation_dependent_parameters_and_integers_are_refused():
    model = zoo_model([_n("ReduceMin", ["obs"], "lo", axes=[0, 1], keepdims=0),
                       _n("Clip", ["obs", "lo"], "z")], [])
    with pytest.raises(UnsupportedOperatorError, match=r"clip_z.*input 1 \('lo'\) depends on "
                                                       "the observation"):
        lower(model)
    model = zoo_model([_n("Cast", ["obs"], "ci", to=TensorProto.INT64),
                       _n("Cast", ["ci"], "z", to=TensorProto.FLOAT)], [])
    with pytest.raises(UnsupportedOperatorError, match=r"cast_ci.*INT64"):
        lower(model)


def test_not_an_onnx_file(tmp_path):
    bad = tmp_path / "junk.onnx"
    bad.write_bytes(b"\x00not onnx at all" * 10)
    with pytest.raises(FirmwareExportError, match="junk.onnx: not a valid ONNX model"):
        lower(bad)
    with pytest.raises(FirmwareExportError, match="no such policy file"):
        lower(tmp_path / "missing.onnx")


# --- emulated STM32F405 --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def targets(shipped, actors, tmp_path_factory) -> dict[str, dict]:
    if MISSING_TOOLS:
        pytest.skip(f"emulator check needs {', '.join(MISSING_TOOLS)}")
    models = {name: (s, N_OBS) for name, s in shipped.items()}
    for spec, a in actors.items():  # the first 2,000 of their observations, to save time
        models["_".join(map(str, spec))] = (a, 2000)
    out = {}
    for name, (m, n) in models.items():
        build = build_target(m["sources"], tmp_path_factory.mktemp(f"{name}_target"))
        run = build.run(m["obs"][:n])
        out[name] = {"build": build, "actions": run.actions, "stack": run.stack_bytes,
                     "instructions": run.instructions, "net": m["net"],
                     "ref": m["ref"][:n]}
    return out


@needs_target
@pytest.mark.parametrize("name", list(SHIPPED) + ["_".join(map(str, s)) for s in ACTORS])
def test_target_matches_onnxruntime_and_fits_the_budgets(targets, name):
    t = targets[name]
    err = max_abs_error(t["actions"], t["ref"])
    assert err <= PARITY_TOL, f"{name}: max |M4 - onnxruntime| = {err:.3g}"
    build = t["build"]
    deploy = "offboard" not in name  # the offboard preset is not meant for the MCU
    assert 8_000 < build.flash_bytes <= (TARGETS["flash_bytes"] if deploy else 80_000)
    assert 0 < t["stack"] < 1024
    assert build.ram_bytes(t["stack"]) <= TARGETS["ram_bytes"]
    assert build.bss_bytes == 4 * int(re.search(r"ARENA_FLOATS (\d+)",
                                                generate(t["net"]).header).group(1))
    assert t["net"].macs <= (TARGETS["macs"] if deploy else 30_000)
    assert "lib_a-sf_tanh.o" in build.libm_functions and build.libm_bytes > 0
    # every MAC costs at least a load, a multiply and an add; tanhf is dozens of instructions
    assert 3 * t["net"].macs < t["instructions"] < 40 * t["net"].macs


TARGET_ZOO = ["attention", "LayerNormalization_two_axes", "LogSoftmax", "Erf", "Pow", "Elu",
              "Transpose_table", "Gemm_transB_alpha_beta", "ReduceMax", "Where"]


@needs_target
@pytest.mark.parametrize("case", TARGET_ZOO)
def test_operator_zoo_on_target(case, tmp_path):
    """Code paths and libm routines beyond the actors' (expf, logf, erff, powf, sqrtf, the
    move table) on the emulated Cortex-M4F."""
    model = zoo_model(*ZOO[case])
    obs = np.random.default_rng(12).normal(0.0, 1.5, (300, D)).astype(np.float32)
    ref = ort_rows(model.SerializeToString(), obs)
    run = build_target(generate(lower(model)), tmp_path).run(obs)
    err = max_abs_error(run.actions, ref)
    assert err <= PARITY_TOL, f"{case}: max |M4 - onnxruntime| = {err:.3g}"


def test_libm_usage_parses_a_linker_map():
    lib = "/usr/lib/arm-none-eabi/lib/thumb/v7e-m+fp/hard/libm.a"
    text = "\n".join([
        "Discarded input sections",
        f" .text          0x00000000       0x40 {lib}(lib_a-s_sin.o)",
        "Linker script and memory map",
        f" .text          0x08000750       0xb8 {lib}(lib_a-sf_tanh.o)",
        " .rodata.very_long_section_name_that_wraps",
        f"                0x08001000       0x20 {lib}(lib_a-ef_exp.o)",
        " .text          0x08000810       0x10 /tmp/swarm_policy.o",
        f" .data          0x20000000       0x08 {lib}(lib_a-sf_tanh.o)",
    ])
    assert libm_usage(text) == (0xb8 + 0x20, ("lib_a-ef_exp.o", "lib_a-sf_tanh.o"))


# --- the onboard observation builder and peer tracker --------------------------------------------
MAX_PEERS = 16


@pytest.fixture(scope="module")
def obs_harness(shipped, actors, tmp_path_factory) -> dict[int, Path]:
    """obs_harness builds for K = 6 (formation_velocity_8) and K = 3 (a random actor), each
    linked with its network."""
    out = {}
    for k, sources in ((6, shipped["formation_velocity_8"]["sources"]),
                       (3, actors[("deepsets", 3, "velocity", "offboard")]["sources"])):
        d = tmp_path_factory.mktemp(f"obs_k{k}")
        for name, text in sources.files.items():
            (d / name).write_text(text)
        exe = d / "obs_harness"
        subprocess.run([HOST_CC, *HOST_CFLAGS, "-I", str(d), "-o", str(exe),
                        str(C_DIR / "obs_harness.c"), str(C_DIR / "swarm_obs.c"),
                        str(d / "swarm_policy.c"), "-lm"],
                       check=True, capture_output=True, text=True)
        out[k] = exe
    return out


def _run_harness(exe: Path, mode: str, records: np.ndarray, width: int) -> np.ndarray:
    d = exe.parent
    records.astype("<f4").tofile(d / f"{mode}_in.f32")
    subprocess.run([str(exe), mode, f"{mode}_in.f32", f"{mode}_out.f32"], cwd=d, check=True)
    return np.fromfile(d / f"{mode}_out.f32", "<f4").reshape(-1, width)


def _swarm_states(k: int, n: int) -> tuple[np.ndarray, dict]:
    """Harness records of n random drone states with up to 16 peers around each, and the
    parts the Python reference needs."""
    rng = np.random.default_rng(21 + k)
    pos = rng.uniform(-3, 3, (n, 3)) + [0, 0, 3]
    vel = rng.normal(0, 1, (n, 3))
    rot = Rotation.random(n, random_state=rng)
    quat = rot.as_quat()  # scalar last: (x, y, z, w)
    quat *= rng.uniform(0.5, 2.0, (n, 1))  # the builder normalises
    omega = rng.normal(0, 2, (n, 3))
    goal = rng.uniform(-2, 2, (n, 3))
    range_m = rng.uniform(1.0, 4.0, n)
    n_peers = rng.integers(0, MAX_PEERS + 1, n)
    peers = np.zeros((n, MAX_PEERS, 6))
    peers[..., :3] = pos[:, None] + rng.normal(0, 2, (n, MAX_PEERS, 3))
    peers[..., 3:] = rng.normal(0, 1, (n, MAX_PEERS, 3))
    records = np.concatenate([pos, vel, quat, omega, goal, range_m[:, None], n_peers[:, None],
                              peers.reshape(n, -1)], 1)
    return records, {"pos": pos, "vel": vel, "rot": rot, "omega": omega, "goal": goal,
                     "range_m": range_m, "n_peers": n_peers, "peers": peers}


def _sim_observations(k: int, s: dict) -> np.ndarray:
    """sim.observation's per-robot reference for the states of :func:`_swarm_states`."""
    pos, vel, peers = s["pos"], s["vel"], s["peers"]
    valid = np.arange(MAX_PEERS) < s["n_peers"][:, None]
    ref = []
    for i in range(pos.shape[0]):  # range varying per row
        feats, mask = nearest_neighbours((peers[i:i + 1, :, :3] - pos[i]).astype(np.float32),
                                         (peers[i:i + 1, :, 3:] - vel[i]).astype(np.float32),
                                         valid[i:i + 1], k, float(s["range_m"][i]))
        ref.append(build_observation((pos[i] - s["goal"][i])[None], vel[i][None],
                                     s["rot"][i].as_matrix()[None], s["omega"][i][None],
                                     pos[i, 2:3][None], feats, mask,
                                     np.full((1, 9), OBSTACLE_RANGE_M)))
    return np.concatenate(ref)


@pytest.mark.parametrize("k", [6, 3])
def test_onboard_observation_matches_sim(obs_harness, k):
    records, states = _swarm_states(k, 400)
    layout = ObsLayout(k)
    got = _run_harness(obs_harness[k], "obs", records, layout.dim)
    ref = _sim_observations(k, states)
    n = records.shape[0]
    sl = layout.slices
    assert (got[:, sl["neighbour_mask"]] == ref[:, sl["neighbour_mask"]]).all()
    assert ref[:, sl["neighbour_mask"]].sum() > n  # neighbours were really in range
    assert max_abs_error(got, ref) <= 1e-5


def test_onboard_observation_and_network_give_the_runtime_action(obs_harness, shipped):
    """State -> swarm_obs_build -> swarm_policy_run on the host equals state ->
    sim.observation -> onnxruntime, for the shipped 8-drone formation policy."""
    records, states = _swarm_states(6, 400)
    got = _run_harness(obs_harness[6], "act", records, 4)
    ref = ort_actions(SHIPPED["formation_velocity_8"], _sim_observations(6, states))
    assert max_abs_error(got, ref) <= PARITY_TOL
    assert ref.std(0).min() > 1e-2


def test_peer_tracker_velocity_and_staleness(obs_harness):
    """Peer 3 moves at constant velocity, sampled every 10 ms: the finite difference (tau 0)
    recovers it; with tau = 0.05 s it converges; a 600 ms gap resets the velocity; a peer
    older than max_age is dropped."""
    v = np.array([0.8, -0.4, 0.2])
    rows = []
    for tau in (0.0, 0.05):
        for step in range(60):
            t = 10 * step + (0 if tau == 0 else 10_000)
            p = np.array([1.0, 2.0, 0.5]) + v * t / 1000
            rows.append([3, t, *p, t, 500, tau])
    t_gap = rows[-1][1] + 600
    rows.append([3, t_gap, *(np.array([1.0, 2.0, 0.5]) + v * t_gap / 1000), t_gap, 500, 0.05])
    rows.append([7, t_gap + 10, 0.0, 0.0, 1.0, t_gap + 10, 500, 0.0])  # another peer appears
    rows.append([7, t_gap + 10, 0.0, 0.0, 1.0, t_gap + 400, 300, 0.0])  # both too old now
    out = _run_harness(obs_harness[6], "track", np.array(rows, float), 4)
    assert (out[0, :3] == 0).all()  # first sample: no velocity yet
    assert np.abs(out[1:60, :3] - v).max() < 2e-3  # raw finite difference, float32 stamps
    converged = out[60 + 59, :3]
    assert np.abs(converged - v).max() < 1e-2
    assert np.abs(out[61, :3] - v).max() > 0.1  # the filter really lags at first
    assert (out[120, :3] == 0).all()  # after the gap
    assert out[121, 3] == 2  # peers 3 and 7 both collected
    assert np.isnan(out[122, :3]).all() and out[122, 3] == 0  # both dropped as stale


# --- closed loop in the simulator ---------------------------------------------------------------
class CPolicy:
    """The generated network as a shared library (ctypes): observations (B, obs_dim) ->
    actions (B, 4), one C call per row as on the drone."""

    def __init__(self, sources, directory: Path) -> None:
        for name, text in sources.files.items():
            (directory / name).write_text(text)
        lib = directory / "libswarm_policy.so"
        subprocess.run([HOST_CC, *HOST_CFLAGS, "-shared", "-fPIC", "-o", str(lib),
                        str(directory / "swarm_policy.c"), "-lm"], check=True,
                       capture_output=True)
        self.run = ctypes.CDLL(str(lib)).swarm_policy_run
        self.run.restype = None
        self.run.argtypes = [ctypes.POINTER(ctypes.c_float)] * 2

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        obs = np.ascontiguousarray(obs, dtype=np.float32)
        out = np.zeros((obs.shape[0], 4), np.float32)
        ptr = ctypes.POINTER(ctypes.c_float)
        for row, act in zip(obs, out):
            self.run(row.ctypes.data_as(ptr), act.ctypes.data_as(ptr))
        return out


@pytest.mark.parametrize("name, scenario, drones", [
    ("hover_single_motors", "hover", 1), ("formation_velocity_8", "static_formation", 8)])
def test_closed_loop_in_the_simulator_matches_onnxruntime(shipped, tmp_path, name, scenario,
                                                          drones):
    """The C network flying the simulator (batched engine, 2 held-out episodes) gives the
    trajectories and metrics onnxruntime gives."""
    from sim.config import make_config
    from swarm_rl.evaluate import OnnxPolicy, evaluate

    meta = shipped[name]["net"].metadata
    cfg = make_config(scenario=scenario, action_mode=meta["action_mode"],
                      neighbours_k=int(meta["obs_neighbours_k"]),
                      neighbour_range_m=float(meta["neighbour_range_m"]),
                      max_speed_mps=float(meta["max_speed_mps"]),
                      max_yaw_rate_rad_s=float(meta["max_yaw_rate_rad_s"]),
                      num_drones=drones, episode_s=8.0)
    c_policy = CPolicy(shipped[name]["sources"], tmp_path)
    runs = {key: evaluate(pol, cfg, 2, seed=3, backend="batched", record=True)
            for key, pol in (("c", c_policy), ("ort", OnnxPolicy(SHIPPED[name])))}
    c, ref = runs["c"], runs["ort"]
    gap_m = np.abs(c.trajectory.positions_m - ref.trajectory.positions_m).max()
    assert gap_m < 1e-3, f"trajectories drift apart by {gap_m:.3g} m"
    for metric in ("success_rate", "collisions_per_drone_minute", "crash_rate"):
        np.testing.assert_array_equal(c.per_episode[metric], ref.per_episode[metric])
    for metric in ("final_distance_m", "return"):
        np.testing.assert_allclose(c.per_episode[metric], ref.per_episode[metric], rtol=1e-4,
                                   atol=1e-4)
    moved = np.abs(ref.trajectory.positions_m - ref.trajectory.positions_m[:1]).max()
    assert moved > 0.2, "the episode must actually fly somewhere"


# --- the exported app ----------------------------------------------------------------------------
def test_export_writes_the_firmware_app(tmp_path):
    out = tmp_path / "hover_app"
    summary = export_firmware(SHIPPED["hover_single_motors"], out, rate_hz=500)
    files = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}
    assert files == {"Makefile", "Kbuild", "app-config", "manifest.json", "src/Kbuild",
                     "src/swarm_policy.c", "src/swarm_policy.h", "src/swarm_obs.c",
                     "src/swarm_obs.h", "src/swarm_app.c", "src/swarm_app_config.h"}
    config = (out / "app-config").read_text()
    assert "CONFIG_APP_ENABLE=y" in config and "CONFIG_CONTROLLER_OOT=y" in config
    assert "include $(CRAZYFLIE_BASE)/tools/make/oot.mk" in (out / "Makefile").read_text()
    assert (out / "Kbuild").read_text() == "obj-y += src/\n"
    assert set(re.findall(r"obj-y \+= (\w+)\.o", (out / "src" / "Kbuild").read_text())) == {
        "swarm_policy", "swarm_obs", "swarm_app"}
    assert "#define SWARM_APP_RATE_HZ 500" in (out / "src" / "swarm_app_config.h").read_text()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["rate_hz"] == 500 and manifest["action_mode"] == "motors"
    assert summary["macs"] == 5736 and manifest["params"] == 4268
    app = (out / "src" / "swarm_app.c").read_text()
    for api in ("controllerOutOfTree(", "peerLocalizationGetPositionByIdx", "controlModeForce",
                "normalizedForces", "PARAM_GROUP_START(swarmPolicy)", "commanderSetSetpoint"):
        assert api in app
    # the plain-C parts build warning-free for the Cortex-M4F as well as for the host
    if not MISSING_TOOLS:
        for name in ("swarm_policy.c", "swarm_obs.c"):
            subprocess.run(["arm-none-eabi-gcc", "-std=c99", "-Wall", "-Wextra", "-Werror",
                            "-Wdouble-promotion", "-mcpu=cortex-m4", "-mthumb",
                            "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard", "-O2", "-c", name, "-o",
                            str(tmp_path / (name + ".o"))], cwd=out / "src", check=True)
    # a re-export replaces the earlier one; a velocity policy has no OOT controller
    export_firmware(SHIPPED["formation_velocity_8"], out)
    assert "CONTROLLER_OOT" not in (out / "app-config").read_text()
    assert "#define SWARM_APP_RATE_HZ 100" in (out / "src" / "swarm_app_config.h").read_text()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temp dirs left"


def test_export_refusals(tmp_path):
    with pytest.raises(FirmwareExportError, match="--rate-hz: must be one of"):
        export_firmware(SHIPPED["hover_single_motors"], tmp_path / "a", rate_hz=300)
    other = tmp_path / "someone_elses"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(FirmwareExportError, match="not an earlier firmware export"):
        export_firmware(SHIPPED["hover_single_motors"], other)
    assert (other / "notes.txt").read_text() == "keep me"
    bare = tmp_path / "bare.onnx"
    bare.write_bytes(zoo_model([_n("Tanh", ["obs"], "z")], []).SerializeToString())
    with pytest.raises(FirmwareExportError, match="metadata lacks obs_layout_version"):
        export_firmware(bare, tmp_path / "b")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


@pytest.mark.parametrize("k", [0, 1, 3, 6, 8])
def test_firmware_layout_is_the_sim_layout(k):
    assert layout_v1_slices(k) == ObsLayout(k).metadata()["obs_slices"]
    header = (C_DIR / "swarm_obs.h").read_text()
    value = re.search(r"#define SWARM_OBS_OBSTACLE_RANGE_M ([0-9.]+)f", header).group(1)
    assert float(value) == OBSTACLE_RANGE_M


# --- command line --------------------------------------------------------------------------------
def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "swarm_rl.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_cli_export_and_bench_firmware(tmp_path):
    out = tmp_path / "app"
    proc = run_cli("export", "firmware", str(SHIPPED["formation_velocity_8"]), "-o", str(out),
                   "--goal", "1,2,1.5", "--check", "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["out"] == str(out) and summary["action_mode"] == "velocity"
    check = summary["check"]
    assert check["samples"] == N_OBS and check["host_max_abs_error"] <= PARITY_TOL
    assert "max |C - onnxruntime| host" in proc.stdout
    assert "{1e+00f, 2e+00f, 1.5e+00f}" in (out / "src" / "swarm_app_config.h").read_text()
    proc = run_cli("bench", "firmware", "--samples", "2000", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    names = [Path(r["policy"]).name for r in report["policies"]]
    flight = sorted(p.name for p in (ROOT / "policies").glob("*.onnx")
                    if not p.name.startswith("mrta_"))  # every shipped flight policy
    assert names == flight and "formation_velocity_8.onnx" in names
    for row in report["policies"]:
        assert row["within_targets"] and row["host_max_abs_error"] <= PARITY_TOL
        assert row["macs"] == 5736 and row["samples"] == 2000
        if not MISSING_TOOLS:
            assert row["target_max_abs_error"] <= PARITY_TOL
            assert row["flash_bytes"] <= 32 * 1024 and row["ram_bytes"] <= 8 * 1024
    assert "targets: flash <= 32,768 B" in proc.stdout


def test_cli_bad_input_exits_2(tmp_path):
    bad = tmp_path / "sin.onnx"
    bad.write_bytes(zoo_model([_n("Sin", ["obs"], "z")], []).SerializeToString())
    proc = run_cli("export", "firmware", str(bad), "-o", str(tmp_path / "x"))
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and "'Sin'" in proc.stderr and "sin_z" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = run_cli("export", "firmware", str(SHIPPED["hover_single_motors"]), "-o",
                   str(tmp_path / "y"), "--goal", "1,2")
    assert proc.returncode == 2 and "--goal" in proc.stderr


# --- the firmware glue against the firmware API it uses ------------------------------------------
# Declarations transcribed from bitcraze/crazyflie-firmware (src/modules/interface/*.h,
# src/config/*.h, src/utils/interface/*.h; 2024-2025 master). No firmware checkout is
# available offline, so this only proves swarm_app.c is well-typed C against those
# signatures and structures, not that it links into the firmware.
FIRMWARE_API = {
    "app.h": "void appMain(void);\n",
    "FreeRTOS.h": """#include <stdint.h>
typedef uint32_t TickType_t;
#define configTICK_RATE_HZ ((TickType_t)1000)
#define M2T(X) ((unsigned int)(X) * (configTICK_RATE_HZ / 1000))
#define T2M(X) ((unsigned int)(X) / (configTICK_RATE_HZ / 1000))
""",
    "task.h": """void vTaskDelay(const TickType_t xTicksToDelay);
void vTaskDelayUntil(TickType_t *const pxPreviousWakeTime, const TickType_t xTimeIncrement);
TickType_t xTaskGetTickCount(void);
""",
    "usec_time.h": "#include <stdint.h>\nuint64_t usecTimestamp(void);\n",
    "debug.h": """void consolePrintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
#define DEBUG_PRINT(fmt, ...) consolePrintf(DEBUG_MODULE ": " fmt, ##__VA_ARGS__)
""",
    "stabilizer_types.h": """#include <stdbool.h>
#include <stdint.h>
typedef struct { float x; float y; float z; } Axis3f;
typedef struct attitude_s { uint32_t timestamp; float roll; float pitch; float yaw; } attitude_t;
struct vec3_s { uint32_t timestamp; float x; float y; float z; };
typedef struct vec3_s point_t;
typedef struct vec3_s velocity_t;
typedef struct vec3_s acc_t;
typedef struct vec3_s jerk_t;
typedef struct quaternion_s {
  uint32_t timestamp;
  union { struct { float q0; float q1; float q2; float q3; };
          struct { float x; float y; float z; float w; }; };
} quaternion_t;
typedef struct baro_s { float pressure; float temperature; float asl; } baro_t;
typedef struct positionMeasurement_s {
  union { struct { float x; float y; float z; }; float pos[3]; };
  float stdDev;
} positionMeasurement_t;
typedef struct sensorData_s {
  Axis3f acc; Axis3f gyro; Axis3f mag; baro_t baro; uint64_t interruptTimestamp;
} sensorData_t;
typedef struct state_s {
  attitude_t attitude; quaternion_t attitudeQuaternion; point_t position;
  velocity_t velocity; acc_t acc;
} state_t;
#define STABILIZER_NR_OF_MOTORS 4
typedef enum control_mode_e {
  controlModeLegacy = 0, controlModeForceTorque = 1, controlModeForce = 2,
} control_mode_t;
typedef struct control_s {
  union {
    struct { int16_t roll; int16_t pitch; int16_t yaw; float thrust; };
    struct { float thrustSi; union { float torque[3];
                                     struct { float torqueX; float torqueY; float torqueZ; }; };
    };
    float normalizedForces[STABILIZER_NR_OF_MOTORS];
  };
  control_mode_t controlMode;
} control_t;
typedef enum mode_e { modeDisable = 0, modeAbs, modeVelocity } stab_mode_t;
typedef struct setpoint_s {
  uint32_t timestamp;
  attitude_t attitude; attitude_t attitudeRate; quaternion_t attitudeQuaternion;
  float thrust; point_t position; velocity_t velocity; acc_t acceleration; jerk_t jerk;
  bool velocity_body;
  struct { stab_mode_t x; stab_mode_t y; stab_mode_t z; stab_mode_t roll; stab_mode_t pitch;
           stab_mode_t yaw; stab_mode_t quat; } mode;
} setpoint_t;
typedef uint32_t stabilizerStep_t;
#define RATE_1000_HZ 1000
#define RATE_MAIN_LOOP RATE_1000_HZ
#define RATE_DO_EXECUTE(RATE_HZ, TICK) ((TICK % (RATE_MAIN_LOOP / RATE_HZ)) == 0)
""",
    "commander.h": """#include "stabilizer_types.h"
#define COMMANDER_PRIORITY_DISABLE 0
#define COMMANDER_PRIORITY_HIGHLEVEL 1
#define COMMANDER_PRIORITY_CRTP 2
#define COMMANDER_PRIORITY_EXTRX 3
void commanderSetSetpoint(setpoint_t *setpoint, int priority);
void commanderNotifySetpointsStop(int remainValidMillis);
""",
    "crtp_commander_high_level.h": """#include <stdbool.h>
int crtpCommanderHighLevelGoTo(const float x, const float y, const float z, const float yaw,
                               const float duration_s, const bool relative);
""",
    "controller.h": """#include "stabilizer_types.h"
void controllerOutOfTreeInit(void);
bool controllerOutOfTreeTest(void);
void controllerOutOfTree(control_t *control, const setpoint_t *setpoint,
                         const sensorData_t *sensors, const state_t *state,
                         const stabilizerStep_t stabilizerStep);
""",
    "controller_pid.h": """#include "stabilizer_types.h"
void controllerPidInit(void);
bool controllerPidTest(void);
void controllerPid(control_t *control, const setpoint_t *setpoint, const sensorData_t *sensors,
                   const state_t *state, const stabilizerStep_t stabilizerStep);
""",
    "peer_localization.h": """#include "stabilizer_types.h"
#define PEER_LOCALIZATION_MAX_NEIGHBORS 10
typedef struct peerLocalizationOtherPosition_s {
  uint8_t id;
  point_t pos;
} peerLocalizationOtherPosition_t;
peerLocalizationOtherPosition_t *peerLocalizationGetPositionByIdx(uint8_t idx);
""",
    "log.h": """#include <stdint.h>
#include <stdbool.h>
typedef uint16_t logVarId_t;
logVarId_t logGetVarId(const char *group, const char *name);
static inline bool logVarIdIsValid(logVarId_t varId) { return varId != 0xffffu; }
float logGetFloat(logVarId_t varid);
struct log_s { uint8_t type; const char *name; void *address; };
#define LOG_UINT8 1
#define LOG_UINT32 3
#define LOG_FLOAT 7
#define LOG_GROUP 0x80
#define LOG_START 1
#define LOG_STOP 0
#define LOG_ADD(TYPE, NAME, ADDRESS) \\
  { .type = TYPE, .name = #NAME, .address = (void *)(ADDRESS), },
#define LOG_GROUP_START(NAME) \\
  static const struct log_s __logs_##NAME[] __attribute__((section(".log." #NAME), used)) = { \\
  { .type = LOG_GROUP | LOG_START, .name = #NAME, .address = 0, },
#define LOG_GROUP_STOP(NAME) { .type = LOG_GROUP | LOG_STOP, .name = "stop_" #NAME, \\
  .address = 0, }, };
""",
    "param.h": """#include <stdint.h>
struct param_s { uint8_t type; uint8_t extended_type; const char *name; void *address; };
#define PARAM_UINT8 0x08
#define PARAM_UINT16 0x09
#define PARAM_FLOAT 0x06
#define PARAM_GROUP 0x80
#define PARAM_START 1
#define PARAM_STOP 0
#define PARAM_ADD(TYPE, NAME, ADDRESS) \\
  { .type = TYPE, .name = #NAME, .address = (void *)(ADDRESS), },
#define PARAM_GROUP_START(NAME) \\
  static const struct param_s __params_##NAME[] __attribute__((section(".param." #NAME), \\
  used)) = { { .type = PARAM_GROUP | PARAM_START, .name = #NAME, .address = 0, },
#define PARAM_GROUP_STOP(NAME) { .type = PARAM_GROUP | PARAM_STOP, .name = "stop_" #NAME, \\
  .address = 0, }, };
""",
}


@pytest.mark.skipif(bool(MISSING_TOOLS), reason="needs arm-none-eabi-gcc")
@pytest.mark.parametrize("policy", list(SHIPPED))
def test_app_glue_compiles_against_the_firmware_api(policy, tmp_path):
    out = tmp_path / "app"
    export_firmware(SHIPPED[policy], out)
    api = tmp_path / "api"
    api.mkdir()
    for name, text in FIRMWARE_API.items():
        (api / name).write_text(f"#pragma once\n{text}")
    # warnings the firmware build treats as errors (out-of-tree apps report -Wdouble-promotion,
    # -Wmissing-braces, -Wsign-compare, -Wunused-variable), in its gnu11 dialect
    proc = subprocess.run(["arm-none-eabi-gcc", "-std=gnu11", "-Wall", "-Wextra", "-Werror",
                           "-Wdouble-promotion", "-Wmissing-braces", "-mcpu=cortex-m4",
                           "-mthumb", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard", "-O2",
                           "-I", str(api), "-c", "swarm_app.c", "-o", str(tmp_path / "app.o")],
                          cwd=out / "src", capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    symbols = subprocess.run(["arm-none-eabi-nm", str(tmp_path / "app.o")], capture_output=True,
                             text=True, check=True).stdout
    defined = set(re.findall(r" T (\w+)", symbols))
    expected = {"appMain"} | ({"controllerOutOfTree", "controllerOutOfTreeInit",
                               "controllerOutOfTreeTest"} if policy.endswith("motors") else set())
    assert expected <= defined
