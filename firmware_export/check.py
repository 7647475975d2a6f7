"""Compile the generated C and run it: on the host (gcc) and on an emulated STM32F405
(arm-none-eabi-gcc for the Cortex-M4F, ``qemu-system-arm -M netduinoplus2`` with semihosting).

Both runs go through ``c/harness.c``: observations are streamed from a file of raw float32
rows and the actions written to another, so any number of observations fits the target (QEMU
semihosting reads the host files). The caller compares the actions with its reference
(onnxruntime in the tests and in ``swarm-rl bench firmware``); this module imports onnx and
numpy only.

Target figures (:class:`TargetBuild`): flash = ``.text`` + ``.rodata`` of the network's
object plus the libm routines it pulls into the linked image (from the linker map); RAM =
``.data`` + ``.bss`` of the object plus the stack one inference uses, measured in the emulator
by stack painting (``-DHARNESS_STACK_PAINT``); instructions per inference counted with SysTick
under ``qemu -icount shift=0`` (``-DHARNESS_SYSTICK``).
"""
from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from firmware_export.codegen import CSources
from firmware_export.graph import FirmwareExportError

HOST_CC = "gcc"
HOST_CFLAGS = ("-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-Wdouble-promotion",
               "-Wshadow", "-O2")
"""The issue's ``-std=c99 -Wall -Wextra -Werror``, plus the Crazyflie firmware's
``-Wdouble-promotion`` and ``-Wshadow``."""
TARGET_CC = "arm-none-eabi-gcc"
TARGET_SIZE = "arm-none-eabi-size"
QEMU = "qemu-system-arm"
CPU_FLAGS = ("-mcpu=cortex-m4", "-mthumb", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard")
TARGET_CFLAGS = ("-std=c99", "-Wall", "-Wextra", "-Werror", "-Wdouble-promotion", "-O2",
                 "-ffunction-sections", "-fdata-sections", *CPU_FLAGS)
QEMU_MACHINE = "netduinoplus2"
"""QEMU's Netduino Plus 2 board: an STM32F405RG, the Crazyflie 2.x's MCU."""
QEMU_SYSCLK_HZ = 168_000_000
"""netduinoplus2's system clock in QEMU, which drives SysTick with CLKSOURCE = processor."""
HARNESS_FILES = ("harness.c", "startup_m4.c", "stm32f405.ld")


def _c_file(name: str) -> str:
    return (resources.files("firmware_export") / "c" / name).read_text()


def missing_target_tools() -> list[str]:
    """Executables of the emulator check that are not on PATH (empty when it can run)."""
    return [tool for tool in (TARGET_CC, TARGET_SIZE, QEMU) if shutil.which(tool) is None]


def _run(cmd: list[str], cwd: Path, what: str, timeout_s: float) -> subprocess.CompletedProcess:
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout_s)
    except FileNotFoundError as exc:
        raise FirmwareExportError(f"{what}: '{cmd[0]}' is not installed") from exc
    except subprocess.TimeoutExpired as exc:
        raise FirmwareExportError(f"{what}: no result within {timeout_s:g} s: "
                                  f"{' '.join(cmd)}") from exc
    if proc.returncode != 0:
        raise FirmwareExportError(f"{what} failed (exit {proc.returncode}): {' '.join(cmd)}\n"
                                  f"{(proc.stdout + proc.stderr).strip()[-4000:]}")
    return proc


def write_sources(sources: CSources, directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in sources.files.items():
        path = directory / name
        path.write_text(text)
        paths.append(path)
    return paths


def _write_rows(path: Path, obs: np.ndarray, dim: int) -> int:
    obs = np.ascontiguousarray(obs, dtype="<f4")
    if obs.ndim != 2 or obs.shape[1] != dim:
        raise ValueError(f"obs: expected shape (n, {dim}), got {obs.shape}")
    obs.tofile(path)
    return obs.shape[0]


def _read_rows(path: Path, n: int, dim: int, what: str) -> np.ndarray:
    out = np.fromfile(path, dtype="<f4")
    if out.size != n * dim:
        raise FirmwareExportError(f"{what}: expected {n} x {dim} actions, got {out.size} "
                                  "values")
    return out.reshape(n, dim)


@dataclass
class HostBuild:
    """A host executable of the harness and one network."""

    executable: Path
    obs_dim: int
    action_dim: int

    def run(self, obs: np.ndarray, timeout_s: float = 120.0) -> np.ndarray:
        """Actions (n, action_dim) float32 of observations (n, obs_dim)."""
        work = self.executable.parent
        n = _write_rows(work / "obs.f32", obs, self.obs_dim)
        _run([str(self.executable), "obs.f32", "act.f32"], work, "host harness", timeout_s)
        return _read_rows(work / "act.f32", n, self.action_dim, "host harness")


def build_host(sources: CSources, directory: Path, cc: str = HOST_CC) -> HostBuild:
    """Compile the network and the harness with ``cc`` and :data:`HOST_CFLAGS` into
    ``directory`` (created). Any warning fails the build (``-Werror``)."""
    if sources.prefix != "swarm_policy":
        raise ValueError("the harness calls swarm_policy_run: generate with the default prefix")
    directory = Path(directory)
    write_sources(sources, directory)
    (directory / "harness.c").write_text(_c_file("harness.c"))
    exe = directory / "harness"
    _run([cc, *HOST_CFLAGS, "-o", str(exe), "harness.c", "swarm_policy.c", "-lm"], directory,
         f"host build ({cc})", 120.0)
    return HostBuild(exe, _define(sources, "OBS_DIM"), _define(sources, "ACTION_DIM"))


def _define(sources: CSources, name: str) -> int:
    match = re.search(rf"#define {sources.prefix.upper()}_{name} (\d+)", sources.header)
    assert match, name
    return int(match.group(1))


@dataclass
class TargetRun:
    """What one emulator run measured."""

    actions: np.ndarray
    """(n, action_dim) float32."""
    stack_bytes: int
    """Stack one inference uses (painted and scanned)."""
    instructions: int
    """Instructions executed per inference, mean over the observations (SysTick under QEMU
    -icount shift=0). Not cycles: on the Cortex-M4 a float load or a taken branch takes
    more than one cycle, a divide 14."""
    instructions_max: int
    """The most any one inference executed."""


@dataclass
class TargetBuild:
    """The emulator image of one network, with its size on the Cortex-M4F (bytes)."""

    elf: Path
    obs_dim: int
    action_dim: int
    text_bytes: int
    rodata_bytes: int
    data_bytes: int
    bss_bytes: int
    libm_bytes: int
    """Code and constants of the libm routines the network calls (tanhf, expf, ...) that the
    linker pulled into the image."""
    libm_functions: tuple[str, ...]

    @property
    def flash_bytes(self) -> int:
        """Network code + weights (``.text`` + ``.rodata``) + the libm routines it needs."""
        return self.text_bytes + self.rodata_bytes + self.libm_bytes

    def ram_bytes(self, stack_bytes: int) -> int:
        """``.data`` + ``.bss`` (the arena) + the measured stack of one inference."""
        return self.data_bytes + self.bss_bytes + stack_bytes

    def run(self, obs: np.ndarray, timeout_s: float = 300.0) -> TargetRun:
        """Run the image in QEMU (``-icount shift=0``: one instruction = 1 ns of virtual
        time) on observations (n, obs_dim)."""
        work = self.elf.parent
        n = _write_rows(work / "obs.f32", obs, self.obs_dim)
        act = work / "act.f32"
        act.unlink(missing_ok=True)
        proc = _run([QEMU, "-M", QEMU_MACHINE, "-nographic", "-monitor", "none",
                     "-semihosting-config", "enable=on,target=native", "-icount", "shift=0",
                     "-kernel", self.elf.name], work, f"QEMU ({QEMU_MACHINE})", timeout_s)
        match = re.search(r"harness: (\d+) inferences, stack (-?\d+) bytes, systick (-?\d+) "
                          r"ticks, max (-?\d+)", proc.stdout)
        if not match or int(match.group(1)) != n:
            raise FirmwareExportError(f"QEMU ({QEMU_MACHINE}): the harness did not finish its "
                                      f"{n} inferences; output: {proc.stdout.strip()[-2000:]}")
        per_tick = 1e9 / QEMU_SYSCLK_HZ  # instructions per SysTick tick
        return TargetRun(_read_rows(act, n, self.action_dim, "target harness"),
                         int(match.group(2)), round(int(match.group(3)) * per_tick / max(n, 1)),
                         round(int(match.group(4)) * per_tick))


def _section_sizes(obj: Path, cwd: Path) -> dict[str, int]:
    out = _run([TARGET_SIZE, "-A", str(obj)], cwd, "arm-none-eabi-size", 60.0).stdout
    sizes = {"text": 0, "rodata": 0, "data": 0, "bss": 0}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) < 2 or not parts[1].isdigit():
            continue
        name = parts[0]
        for key in sizes:
            if name == f".{key}" or name.startswith(f".{key}."):
                sizes[key] += int(parts[1])
    return sizes


_MAP_ENTRY = re.compile(r"^\s*(\.(?:text|rodata)\S*)?\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)\s+(\S+)$")


def libm_usage(map_text: str) -> tuple[int, tuple[str, ...]]:
    """(bytes, object names) of libm code and constants placed in a linked image, from a GNU
    ld map file (discarded and zero-size sections not counted)."""
    start = map_text.find("Linker script and memory map")
    total, members = 0, set()
    pending = None
    for line in map_text[start:].splitlines():
        stripped = line.strip()
        if re.fullmatch(r"\.(?:text|rodata)\S*", stripped):
            pending = stripped  # a long section name: address and size on the next line
            continue
        match = _MAP_ENTRY.match(line)
        if match and (match.group(1) or pending):
            addr, size, source = int(match.group(2), 16), int(match.group(3), 16), match.group(4)
            member = re.search(r"libm\.a\((.+)\)$", source)
            if member and addr and size:
                total += size
                members.add(member.group(1))
        pending = None
    return total, tuple(sorted(members))


def build_target(sources: CSources, directory: Path) -> TargetBuild:
    """Cross-compile the network for the Cortex-M4F (:data:`TARGET_CFLAGS`) and link it
    with the harness and start-up code into an STM32F405 image in ``directory``."""
    missing = missing_target_tools()
    if missing:
        raise FirmwareExportError(f"target check: {', '.join(missing)} not installed (Debian: "
                                  "apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi "
                                  "qemu-system-arm)")
    if sources.prefix != "swarm_policy":
        raise ValueError("the harness calls swarm_policy_run: generate with the default prefix")
    directory = Path(directory)
    write_sources(sources, directory)
    for name in HARNESS_FILES:
        (directory / name).write_text(_c_file(name))
    _run([TARGET_CC, *TARGET_CFLAGS, "-c", "swarm_policy.c", "-o", "swarm_policy.o"], directory,
         "target build (network)", 120.0)
    _run([TARGET_CC, *TARGET_CFLAGS, "-DHARNESS_STACK_PAINT", "-DHARNESS_SYSTICK",
          '-DHARNESS_OBS_PATH="obs.f32"',
          '-DHARNESS_ACT_PATH="act.f32"', "-nostartfiles", "--specs=rdimon.specs",
          "-T", "stm32f405.ld", "-Wl,--gc-sections", "-Wl,-Map=target.map",
          "startup_m4.c", "harness.c", "swarm_policy.o", "-lm", "-o", "target.elf"],
         directory, "target link", 120.0)
    sizes = _section_sizes(directory / "swarm_policy.o", directory)
    libm_bytes, libm_members = libm_usage((directory / "target.map").read_text())
    return TargetBuild(directory / "target.elf", _define(sources, "OBS_DIM"),
                       _define(sources, "ACTION_DIM"), sizes["text"], sizes["rodata"],
                       sizes["data"], sizes["bss"], libm_bytes, libm_members)


def max_abs_error(got: np.ndarray, reference: np.ndarray) -> float:
    """max |got - reference| (inf where exactly one side is NaN or the shapes differ)."""
    got, reference = np.asarray(got, np.float64), np.asarray(reference, np.float64)
    if got.shape != reference.shape or (np.isnan(got) != np.isnan(reference)).any():
        return float("inf")
    if got.size == 0:
        return 0.0
    return float(np.nan_to_num(np.abs(got - reference), nan=0.0).max())
