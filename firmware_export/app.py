"""``swarm-rl export firmware POLICY.onnx -o DIR``: an out-of-tree crazyflie-firmware app.

``DIR`` after an export::

    Makefile, Kbuild, app-config   the firmware's out-of-tree (Kbuild) app conventions;
                                   app-config enables the app layer and, for a motors policy,
                                   the out-of-tree controller (CONFIG_CONTROLLER_OOT)
    src/Kbuild                     the objects below
    src/swarm_policy.c/.h          the network (generated; .h: layout, action mode, figures)
    src/swarm_obs.c/.h             observation builder + peer velocity tracker (plain C99)
    src/swarm_app.c                firmware glue: rate, peer localization, params, logs,
                                   motor commands (motors) or velocity setpoints (velocity)
    src/swarm_app_config.h         rate and defaults chosen at export time
    manifest.json                  what was exported, from which file, with which figures

The policy must carry swarm_rl metadata with observation layout v1 (what ``swarm_obs.c``
builds); anything else is refused with an error naming the key. Imports onnx and numpy only.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

from firmware_export.codegen import generate, literal
from firmware_export.graph import FirmwareExportError, Network, lower

LAYOUT_VERSION = 1
OWN_DIM = 19
RATES_HZ = (25, 50, 100, 250, 500, 1000)
"""Rates the firmware's RATE_DO_EXECUTE accepts (divisors of its 1 kHz stabilizer loop)."""
APP_FILES = ("swarm_obs.c", "swarm_obs.h", "swarm_app.c")
MANIFEST = "manifest.json"
PEER_MAX_AGE_MS = 500
"""Default age (ms) after which a peer's position is no longer used."""
PEER_VEL_TAU_S = 0.05
"""Default time constant (s) of the low-pass filter on finite-differenced peer velocity."""
STOP_VALID_MS = 500
"""How long the last velocity setpoint stays valid after the policy is disabled (ms)."""
APP_STACK_WORDS = 350


def layout_v1_slices(k: int) -> str:
    """The ``obs_slices`` metadata of layout v1 with ``k`` neighbours (what swarm_obs.c
    builds; the same as ``sim.observation.ObsLayout(k).metadata()``, which a test checks)."""
    sizes = [("goal_error", 3), ("velocity", 3), ("rotation", 9), ("body_rates", 3),
             ("height", 1), ("neighbours", 6 * k), ("neighbour_mask", k), ("obstacles", 9)]
    parts, start = [], 0
    for name, size in sizes:
        parts.append(f"{name}:{start}:{start + size}")
        start += size
    return ";".join(parts)


def _check_policy(net: Network) -> dict[str, str]:
    meta, src = net.metadata, net.source
    needed = ("obs_layout_version", "obs_neighbours_k", "obs_slices", "action_mode",
              "control_hz", "max_speed_mps", "max_yaw_rate_rad_s", "neighbour_range_m")
    missing = [k for k in needed if k not in meta]
    if missing:
        raise FirmwareExportError(f"{src}: policy metadata lacks {', '.join(missing)}; export "
                                  "the policy with `swarm-rl export onnx`")
    try:
        version, k = int(meta["obs_layout_version"]), int(meta["obs_neighbours_k"])
        for key in ("max_speed_mps", "max_yaw_rate_rad_s", "neighbour_range_m"):
            float(meta[key])
        int(meta["control_hz"])
    except ValueError as exc:
        raise FirmwareExportError(f"{src}: malformed policy metadata: {exc}") from exc
    if version != LAYOUT_VERSION:
        raise FirmwareExportError(f"{src}: metadata 'obs_layout_version' is {version}; the "
                                  f"onboard observation builder implements layout "
                                  f"v{LAYOUT_VERSION}")
    if meta["obs_slices"] != layout_v1_slices(k):
        raise FirmwareExportError(f"{src}: metadata 'obs_slices' is {meta['obs_slices']!r}, "
                                  f"expected {layout_v1_slices(k)!r} for layout v1, K = {k}")
    if net.obs_dim != OWN_DIM + 7 * k + 9:
        raise FirmwareExportError(f"{src}: graph input has {net.obs_dim} values, layout v1 "
                                  f"with K = {k} has {OWN_DIM + 7 * k + 9}")
    if meta["action_mode"] not in ("motors", "velocity") or net.action_dim != 4:
        raise FirmwareExportError(f"{src}: metadata 'action_mode' {meta['action_mode']!r} "
                                  f"with {net.action_dim} outputs; the app flies 'motors' or "
                                  "'velocity' policies with 4 outputs")
    return meta


def _files(net: Network, rate_hz: int, goal_m: tuple[float, float, float],
           peer_max_age_ms: int, peer_vel_tau_s: float) -> dict[str, str]:
    meta = net.metadata
    motors = meta["action_mode"] == "motors"
    sources = generate(net)
    c_dir = resources.files("firmware_export") / "c"
    files = {f"src/{name}": text for name, text in sources.files.items()}
    for name in APP_FILES:
        files[f"src/{name}"] = (c_dir / name).read_text()
    files["src/swarm_app_config.h"] = "\n".join([
        "/* swarm_app_config.h - generated by `swarm-rl export firmware`; choices made at",
        " * export time (the parameters of the same names can change most at run time). */",
        "#ifndef SWARM_APP_CONFIG_H",
        "#define SWARM_APP_CONFIG_H",
        "",
        f"#define SWARM_APP_RATE_HZ {rate_hz} /* policy ticks per second */",
        f"#define SWARM_APP_DEFAULT_GOAL_M {{{', '.join(literal(g) for g in goal_m)}}}",
        f"#define SWARM_APP_PEER_MAX_AGE_MS {peer_max_age_ms}",
        f"#define SWARM_APP_PEER_VEL_TAU_S {literal(peer_vel_tau_s)}",
        f"#define SWARM_APP_STOP_VALID_MS {STOP_VALID_MS}",
        "",
        "#endif /* SWARM_APP_CONFIG_H */",
        "",
    ])
    files["src/Kbuild"] = "".join(f"obj-y += {n}.o\n"
                                  for n in ("swarm_policy", "swarm_obs", "swarm_app"))
    files["Kbuild"] = "obj-y += src/\n"
    files["app-config"] = "".join([
        "CONFIG_APP_ENABLE=y\n",
        "CONFIG_APP_PRIORITY=1\n",
        f"CONFIG_APP_STACKSIZE={APP_STACK_WORDS}\n",
        "CONFIG_CONTROLLER_OOT=y\n" if motors else "",
    ])
    files["Makefile"] = "\n".join([
        "# Out-of-tree crazyflie-firmware app generated by swarm_rl (`swarm-rl export "
        "firmware`).",
        "#   make CRAZYFLIE_BASE=/path/to/crazyflie-firmware        build build/cf2.bin",
        "#   make CRAZYFLIE_BASE=/path/to/crazyflie-firmware cload  flash it over the radio",
        "CRAZYFLIE_BASE ?= ../crazyflie-firmware",
        "OOT_CONFIG := $(CURDIR)/app-config",
        "",
        "include $(CRAZYFLIE_BASE)/tools/make/oot.mk",
        "",
    ])
    return files


def export_firmware(policy: str | Path, out: str | Path, rate_hz: int | None = None,
                    goal_m: tuple[float, float, float] = (0.0, 0.0, 1.0),
                    peer_max_age_ms: int = PEER_MAX_AGE_MS,
                    peer_vel_tau_s: float = PEER_VEL_TAU_S) -> dict[str, Any]:
    """Write the crazyflie-firmware app of ``policy`` (ONNX with swarm_rl metadata) to
    ``out``.

    ``rate_hz`` is how often the policy runs (default: the ``control_hz`` it was trained at;
    one of :data:`RATES_HZ`). ``goal_m`` is the default goal (world frame, m), changeable at
    run time through the parameters ``swarmPolicy.goalX/Y/Z``. ``out`` is replaced if it
    holds an earlier export (it has a ``manifest.json``) and refused if it holds anything
    else; the new files are written to a temporary folder first, so a failed export leaves
    the old one as it was. Returns the manifest (figures included).
    """
    net = lower(policy)
    meta = _check_policy(net)
    rate = int(meta["control_hz"]) if rate_hz is None else rate_hz
    if rate not in RATES_HZ:
        raise FirmwareExportError(f"--rate-hz: must be one of {', '.join(map(str, RATES_HZ))} "
                                  f"(divisors of the firmware's 1 kHz loop), got {rate}")
    if not (isinstance(peer_max_age_ms, int) and 0 < peer_max_age_ms <= 65535):
        raise FirmwareExportError(f"peer_max_age_ms: must be in 1..65535, got "
                                  f"{peer_max_age_ms!r}")
    if not peer_vel_tau_s >= 0:
        raise FirmwareExportError(f"peer_vel_tau_s: must be >= 0, got {peer_vel_tau_s!r}")
    out = Path(out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir())
                                              and not (out / MANIFEST).is_file())):
        raise FirmwareExportError(f"{out}: exists and is not an earlier firmware export (no "
                                  f"{MANIFEST}); choose an empty or new directory")
    files = _files(net, rate, tuple(float(g) for g in goal_m), peer_max_age_ms,
                   float(peer_vel_tau_s))
    source_bytes = Path(policy).read_bytes()
    manifest = {
        "policy": str(policy),
        "policy_sha256": hashlib.sha256(source_bytes).hexdigest(),
        "action_mode": meta["action_mode"],
        "obs_dim": net.obs_dim,
        "neighbours_k": int(meta["obs_neighbours_k"]),
        "rate_hz": rate,
        "macs": net.macs,
        "params": net.weights,
        "transcendentals": net.transcendentals,
        "onnx_ops": dict(sorted(net.op_counts.items())),
        "files": sorted(files),
        "producer": "swarm_rl firmware_export",
    }
    files[MANIFEST] = json.dumps(manifest, indent=2) + "\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    os.chmod(tmp, 0o755)
    try:
        for name, text in files.items():
            path = tmp / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        if out.exists():
            old = out.with_name(f".{out.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {**manifest, "out": str(out)}
