"""``swarm-rl bench firmware``: accuracy and cost of the generated C for each policy.

Per policy: the host check (gcc, max |C - reference| over the observations), the target check
(Cortex-M4F image under QEMU netduinoplus2, same comparison) and the figures the issue sets
targets for: flash (.text + .rodata, libm routines included), RAM (.data + .bss + measured
stack) and multiply-accumulates per inference, plus the instructions one inference executes
in the emulator. The caller supplies the observations and the
reference actions (onnxruntime in ``swarm_rl.cli``), so this module imports onnx and numpy
only.
"""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from firmware_export.check import (HOST_CC, QEMU, TARGET_CC, build_host, build_target,
                                   max_abs_error, missing_target_tools)
from firmware_export.codegen import generate
from firmware_export.graph import Network, lower

CLOCK_HZ = 168_000_000
"""The Crazyflie 2.x's STM32F405 core clock."""
PARITY_TOL = 1e-5
"""Largest |C - onnxruntime| action difference the checks accept."""
TARGETS = {"flash_bytes": 32 * 1024, "ram_bytes": 8 * 1024, "macs": 10_000,
           "max_abs_error": PARITY_TOL}
"""Budgets from the issue: 500 Hz must fit a 168 MHz Cortex-M4 with a wide margin."""


def shipped_policies(directory: Path) -> list[Path]:
    """The deployable policies in ``directory``: ``*.onnx`` whose metadata says
    ``model_preset: deploy``, sorted by name."""
    out = []
    for path in sorted(Path(directory).glob("*.onnx")):
        meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
        if meta.get("model_preset") == "deploy":
            out.append(path)
    return out


def _tool_version(tool: str) -> str | None:
    if shutil.which(tool) is None:
        return None
    try:
        proc = subprocess.run([tool, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout.splitlines()[0].strip() if proc.stdout else None


def bench_policy(path: Path, obs: np.ndarray, reference: np.ndarray, workdir: Path,
                 target: bool = True) -> dict[str, Any]:
    """Figures of one policy; ``reference`` holds the reference actions of ``obs``."""
    net: Network = lower(path)
    sources = generate(net)
    host = build_host(sources, workdir / "host")
    host_err = max_abs_error(host.run(obs), reference)
    meta = net.metadata
    row: dict[str, Any] = {
        "policy": str(path), "action_mode": meta.get("action_mode"),
        "encoder": meta.get("encoder"), "neighbours_k": meta.get("obs_neighbours_k"),
        "obs_dim": net.obs_dim, "samples": int(obs.shape[0]), "macs": net.macs,
        "params": net.weights,
        "transcendentals": net.transcendentals, "arena_bytes": 4 * sources.arena_floats,
        "host_max_abs_error": host_err,
    }
    missing = missing_target_tools()
    if not target or missing:
        row["target_skipped"] = ("--host-only" if not target
                                 else f"{', '.join(missing)} not installed")
        checks = {"macs": net.macs, "max_abs_error": host_err}
    else:
        build = build_target(sources, workdir / "target")
        run = build.run(obs)
        stack = run.stack_bytes
        row.update({
            "target_max_abs_error": max_abs_error(run.actions, reference),
            "instructions": run.instructions, "instructions_max": run.instructions_max,
            "cpu_share_at_500hz_lower_bound": run.instructions_max * 500 / CLOCK_HZ,
            "flash_bytes": build.flash_bytes, "text_bytes": build.text_bytes,
            "rodata_bytes": build.rodata_bytes, "libm_bytes": build.libm_bytes,
            "ram_bytes": build.ram_bytes(stack), "data_bytes": build.data_bytes,
            "bss_bytes": build.bss_bytes, "stack_bytes": stack,
        })
        checks = {"flash_bytes": row["flash_bytes"], "ram_bytes": row["ram_bytes"],
                  "macs": net.macs,
                  "max_abs_error": max(host_err, row["target_max_abs_error"])}
    row["within_targets"] = all(checks[k] <= TARGETS[k] for k in checks)
    return row


def run_bench(policies: list[Path], observations: Callable[[Path], np.ndarray],
              reference: Callable[[Path, np.ndarray], np.ndarray], target: bool = True
              ) -> dict[str, Any]:
    """Bench every policy: ``observations(path)`` gives the (n, obs_dim) inputs and
    ``reference(path, obs)`` the actions the C code must match."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="swarm_rl_fw_bench_") as tmp:
        for i, path in enumerate(policies):
            obs = observations(path)
            rows.append(bench_policy(Path(path), obs, reference(path, obs), Path(tmp) / str(i),
                                     target))
    return {"policies": rows, "targets": TARGETS,
            "toolchain": {"host_cc": _tool_version(HOST_CC),
                          "target_cc": _tool_version(TARGET_CC), "qemu": _tool_version(QEMU)}}


def format_table(report: dict[str, Any]) -> str:
    """Plain-text table of a :func:`run_bench` report."""
    def num(value: Any, fmt: str) -> str:
        return "n/a" if value is None else format(value, fmt)

    header = ("policy", "MACs", "instr", "instr max", "flash B", "RAM B", "stack B", "host err",
              "target err", "targets")
    lines = [header]
    for r in report["policies"]:
        lines.append((Path(r["policy"]).name, f"{r['macs']:,}", num(r.get("instructions"), ","),
                      num(r.get("instructions_max"), ","),
                      num(r.get("flash_bytes"), ","),
                      num(r.get("ram_bytes"), ","), num(r.get("stack_bytes"), ","),
                      f"{r['host_max_abs_error']:.1e}", num(r.get("target_max_abs_error"), ".1e"),
                      "ok" if r["within_targets"] else "MISSED"))
    widths = [max(len(str(row[c])) for row in lines) for c in range(len(header))]
    text = ["  ".join(str(v).ljust(w) if c == 0 else str(v).rjust(w)
                      for c, (v, w) in enumerate(zip(row, widths))) for row in lines]
    t = report["targets"]
    text.append(f"targets: flash <= {t['flash_bytes']:,} B, RAM <= {t['ram_bytes']:,} B, "
                f"MACs <= {t['macs']:,}, max abs error <= {t['max_abs_error']:g}")
    text.append("instr: instructions per inference on the emulated Cortex-M4 (QEMU -icount), "
                "mean and max; cycles are more (float loads, branches, divides)")
    skipped = {r["target_skipped"] for r in report["policies"] if "target_skipped" in r}
    if skipped:
        text.append(f"emulator check skipped: {'; '.join(sorted(skipped))}")
    return "\n".join(text)
