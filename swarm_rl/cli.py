"""``swarm-rl``: the one command-line entry point.

Thin by design: each command parses and checks its options, calls a function in a module
(:mod:`swarm_rl.demo`, :mod:`swarm_rl.bench_sim`, ...) and prints the result. Conventions:

- results go to stdout; diagnostics go through :mod:`logging` to stderr (``-v`` for more);
- with ``--json`` a command prints its figures as ONE JSON object on the last line of stdout;
- a bad option value exits with code 2 and an error naming the option and its allowed values;
  a :class:`sim.errors.ConfigError` raised inside a command prints ``error: <message>`` to
  stderr and exits 2, without a traceback.
"""
import enum
import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from typer.core import TyperGroup

import swarm_rl
from sim.config import FORMATIONS
from sim.errors import ConfigError
from sim.swarm_env import BACKENDS
from swarm_rl.errors import (CheckpointError, ExportError, PolicyFileError,
                             PolicyMismatchError)
from swarm_rl.bench_report import figure
from swarm_rl.files import json_safe

log = logging.getLogger("swarm_rl")
REPO_ROOT = Path(__file__).resolve().parents[1]

Formation = enum.Enum("Formation", {name: name for name in FORMATIONS}, type=str)
Backend = enum.Enum("Backend", {name: name for name in BACKENDS}, type=str)
RuntimeLayout = enum.Enum("RuntimeLayout", {name: name for name in ("formation", "spread")},
                          type=str)
Shield = enum.Enum("Shield", {"none": "none", "cbf": "cbf"}, type=str)


class _Group(TyperGroup):
    """Turns bad input found inside any command (a config, checkpoint or policy file) into
    ``error: ...`` on stderr and exit code 2."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (ConfigError, CheckpointError, ExportError, PolicyFileError,
                PolicyMismatchError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None


def _typer(**kwargs: Any) -> typer.Typer:
    return typer.Typer(cls=_Group, no_args_is_help=True, add_completion=False,
                       rich_markup_mode=None, pretty_exceptions_enable=False, **kwargs)


app = _typer(help="Control stack for Crazyflie quadrotor swarms: simulate, train, evaluate, "
                  "export and launch.")
bench_app = _typer(help="Measure throughput and latency: bench sim, bench runtime, bench train, "
                        "bench graph, bench firmware.")
app.add_typer(bench_app, name="bench")
export_app = _typer(help="Export a trained policy: export onnx, export firmware.")
app.add_typer(export_app, name="export")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"swarm-rl {swarm_rl.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True,
                                         help="More diagnostics on stderr (-v info, -vv debug).",
                                         show_default=False)
                       ] = 0,
    version: Annotated[bool | None, typer.Option("--version", callback=_version,
                                                    is_eager=True,
                                                    help="Print the version and exit.")] = None,
) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")


def emit_json(obj: Any) -> None:
    """Print ``obj`` as one line of JSON (the last line of a ``--json`` command's stdout)."""
    typer.echo(json.dumps(json_safe(obj), separators=(",", ":"), allow_nan=False))


def _positive(value: float) -> float:
    if value <= 0:
        raise typer.BadParameter(f"must be > 0, got {value}")
    return value


def _counts(value: str, flag: str, example: str) -> tuple[int, ...]:
    """A comma-separated list of swarm sizes (integers >= 1) given to ``flag``."""
    try:
        counts = tuple(int(v) for v in value.split(","))
    except ValueError:
        counts = ()
    if not counts or min(counts) < 1:
        raise typer.BadParameter(f"expected comma-separated counts, integers >= 1 "
                                 f"(e.g. {example}), got '{value}'", param_hint=f"'{flag}'")
    return counts


JsonFlag = Annotated[bool, typer.Option("--json", help="Print the figures as one JSON object "
                                                       "on the last line of stdout.")]


@app.command()
def demo(
    out: Annotated[Path, typer.Option(file_okay=False, help="Directory for metrics.json, "
                                      "summary.md and trajectories.png (created).")
                   ] = Path("results/demo"),
    drones: Annotated[int, typer.Option(min=1, help="Number of drones.")] = 8,
    formation: Annotated[Formation, typer.Option(help="Goal formation.")] = "circle",
    seconds: Annotated[float, typer.Option(callback=_positive,
                                           help="Episode length (s).")] = 15.0,
    backend: Annotated[Backend, typer.Option(help="Physics engine.")] = "pybullet",
    gui: Annotated[bool, typer.Option("--gui", help="Open the PyBullet viewer (needs a "
                                                    "display; pybullet backend only).")] = False,
    seed: Annotated[int, typer.Option(help="Random seed (spawns, goals, sensor noise).")] = 0,
    as_json: JsonFlag = False,
) -> None:
    """Fly a simulated swarm into a formation with a scripted controller (no policy needed).

    Each drone's velocity setpoint is a P law towards its goal plus repulsion from close
    neighbours, computed from its observation vector. Writes metrics.json, summary.md and
    trajectories.png into --out.
    """
    from swarm_rl.demo import run_demo

    summary = run_demo(out, drones, Formation(formation).value, seconds,
                       Backend(backend).value, gui, seed)
    typer.echo(f"{summary['drones']} drones, {summary['formation']} formation, "
               f"{summary['backend']} physics, {summary['seconds']:g} s "
               f"(real-time factor {summary['real_time_factor']:.1f})")
    typer.echo(f"success rate {summary['success_rate']:.0%}, collisions per drone-minute "
               f"{summary['collisions_per_drone_minute']:.2f}, min separation "
               f"{figure(summary['min_separation_m'], '{:.3f} m')}, final distance to goal "
               f"{figure(summary['final_distance_m'], '{:.3f} m')}")
    typer.echo(f"wrote {summary['out']}/{{metrics.json,summary.md,trajectories.png}}")
    if as_json:
        emit_json(summary)


@bench_app.command("sim")
def bench_sim(
    drones: Annotated[str, typer.Option(metavar="N[,N...]",
                                           help="Comma-separated drone counts.")] = "1,8,32,128",
    seconds: Annotated[float, typer.Option(callback=_positive,
                                           help="Wall time per measurement (s).")] = 3.0,
    as_json: JsonFlag = False,
) -> None:
    """Agent-steps per second of the full env step, batched engine vs PyBullet."""
    from swarm_rl.bench_sim import format_table, run_bench

    report = run_bench(_counts(drones, "--drones", "1,8,32,128"), seconds)
    typer.echo(format_table(report))
    if as_json:
        emit_json(report)


@bench_app.command("runtime")
def bench_runtime(
    robots: Annotated[str, typer.Option(metavar="N[,N...]",
                                        help="Comma-separated swarm sizes.")] = "1,8,16,32",
    steps: Annotated[int, typer.Option(min=1, help="Timed 50 Hz ticks per swarm size (after "
                                       "20 warm-up ticks).")] = 500,
    per_robot_tables: Annotated[bool, typer.Option(
        "--per-robot-tables", help="Give every robot its own neighbour table fed with all "
        "others (one process per robot) instead of one shared table (co-hosted robots).")
    ] = False,
    layout: Annotated[RuntimeLayout, typer.Option(
        help="formation: the static_formation scenario's spawns fly into a formation (the "
        "shield acts, as in bench graph); spread: robots apart with goals 1 m away (the shield "
        "hardly acts).")] = "formation",
    idle_ms: Annotated[float, typer.Option(
        min=0.0, max=1000.0, help="Sleep this long (wall ms) before each timed part of a tick, "
        "as a node idles between 50 Hz ticks (caches go cold); 0: ticks back to back.")] = 0.0,
    as_json: JsonFlag = False,
) -> None:
    """Latency of the deploy runtime's per-robot step (observation, ONNX policy, CBF shield) on
    policies/formation_velocity_8.onnx, and the largest swarm one core steps at 50 Hz."""
    from swarm_rl.bench_runtime import format_table, run_bench

    report = run_bench(_counts(robots, "--robots", "1,8,16,32"), steps,
                       shared_table=not per_robot_tables, layout=RuntimeLayout(layout).value,
                       idle_ms=idle_ms)
    typer.echo(format_table(report))
    if as_json:
        emit_json(report)


@bench_app.command("graph")
def bench_graph(
    robots: Annotated[str, typer.Option(help="Swarm sizes, comma-separated.")] = "8,16,32,48",
    processes: Annotated[int, typer.Option(min=1, help="robot_node processes the robots are "
                                           "split over.")] = 2,
    rate: Annotated[int, typer.Option(min=1, help="Control rate (Hz).")] = 50,
    seconds: Annotated[float, typer.Option(min=1.0, help="Simulated seconds per size.")] = 10.0,
    backend: Annotated[Backend, typer.Option(help="The sim bridge's physics engine (PyBullet, "
                                             "the reference, or the batched engine).")
                       ] = "pybullet",
    realtime_priority: Annotated[int, typer.Option(
        min=0, max=99, help="Run the bridge and robot nodes under SCHED_FIFO at this priority "
        "(chrt -f; needs root or CAP_SYS_NICE); 0: the default scheduler.")] = 0,
    as_json: JsonFlag = False,
) -> None:
    """The node graph over DDS in real time: state-to-command latency, largest real-time swarm."""
    from ros_nodes.bench_graph import format_table, run_bench

    report = run_bench(_counts(robots, "--robots", "8,16,32"), processes, rate, seconds,
                       backend=Backend(backend).value, realtime_priority=realtime_priority)
    typer.echo(format_table(report))
    if as_json:
        emit_json(report)


@bench_app.command("train")
def bench_train(
    preset: Annotated[str, typer.Option(help="Training preset to time.")] = "swap_goals_8",
    updates: Annotated[int, typer.Option(min=1, help="Timed PPO updates.")] = 5,
    overrides: Annotated[list[str] | None, typer.Option(
        "--set", metavar="KEY=VALUE", help="Override a preset value (repeatable).")] = None,
    as_json: JsonFlag = False,
) -> None:
    """End-to-end training throughput (collection + PPO update), agent-steps/s."""
    from swarm_rl.bench_train import format_table, run_bench

    report = run_bench(preset, updates, overrides)
    typer.echo(format_table(report))
    if as_json:
        emit_json(report)


@bench_app.command("firmware")
def bench_firmware(
    policies: Annotated[list[Path] | None, typer.Option(
        "--policy", dir_okay=False, exists=True, help="Policy file (.onnx); repeatable "
        "(default: every deploy-preset policy in policies/).")] = None,
    samples: Annotated[int, typer.Option(min=1, help="Random observations per check.")
                       ] = 10_000,
    host_only: Annotated[bool, typer.Option("--host-only", help="Skip the cross-compiled "
                                            "check under QEMU.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Generated C vs onnxruntime (max abs error, on the host and on an emulated STM32F405),
    flash, RAM and multiply-accumulates per inference of each policy."""
    from firmware_export.bench import format_table, shipped_policies

    chosen = list(policies or []) or _firmware_errors(
        lambda: shipped_policies(REPO_ROOT / "policies"))
    report = _firmware_errors(lambda: _firmware_bench(chosen, samples, not host_only))
    typer.echo(format_table(report))
    if as_json:
        emit_json(report)


@app.command()
def train(
    preset: Annotated[str, typer.Option(help="Training preset: a name in config/train/ or a "
                                        "YAML path.")] = "hover_single",
    steps: Annotated[int | None, typer.Option(min=1, help="Agent-steps to train for "
                                              "(overrides the preset's total_steps).")] = None,
    out: Annotated[Path | None, typer.Option(file_okay=False, help="Run directory "
                                             "(default runs/PRESET).")] = None,
    resume: Annotated[Path | None, typer.Option(file_okay=False, exists=True,
                                                help="Continue the run in this directory "
                                                "from its last checkpoint.")] = None,
    overrides: Annotated[list[str] | None, typer.Option(
        "--set", metavar="KEY=VALUE", help="Override a preset value, e.g. --set ppo.lr=3e-4 "
        "--set env.num_drones=4 (repeatable).")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Train a policy with MAPPO (IPPO with --set model.critic=local); writes checkpoint.pt,
    progress.jsonl, tb/ (TensorBoard), policy.onnx and actor.pt into the run directory.
    A task-allocation preset (config/mrta/, e.g. mrta_paper) trains the MRTA task policy."""
    from swarm_rl.mrta import commands as mrta

    if mrta.is_mrta(preset):
        text, result = mrta.train(preset, steps, out, resume, list(overrides or []))
        typer.echo(text)
        if as_json:
            emit_json(result)
        return
    from swarm_rl.export import export_onnx
    from swarm_rl.train.config import load_preset
    from swarm_rl.train.ppo import CHECKPOINT_NAME, Trainer

    extra = list(overrides or []) + ([f"total_steps={steps}"] if steps else [])
    cfg = load_preset(preset, extra)
    if resume is not None:
        trainer = Trainer.resume(resume, cfg if steps else None)
        run_dir = resume
    else:
        run_dir = out or Path("runs") / Path(preset).stem
        trainer = Trainer(cfg, run_dir)
    try:
        last = trainer.train()
    except KeyboardInterrupt:
        typer.echo(f"interrupted: last checkpoint in {run_dir}/{CHECKPOINT_NAME} "
                   f"(resume with --resume {run_dir})", err=True)
        raise typer.Exit(130) from None
    summary = export_onnx(run_dir / CHECKPOINT_NAME, run_dir / "policy.onnx")
    trainer.save_actor(run_dir / "actor.pt")
    result = {"run_dir": str(run_dir), "steps": trainer.steps, "wall_s": trainer.wall_s,
              "steps_per_s": trainer.steps / max(trainer.wall_s, 1e-9),
              "policy": summary["path"], "final": last}
    typer.echo(f"trained {trainer.steps:,} agent-steps in {trainer.wall_s:.0f} s; "
               f"policy {summary['path']}")
    if as_json:
        emit_json(result)


def _eval_config(scenario: str, meta: dict[str, str], drones: int | None):
    """The environment to evaluate a policy in: a scenario file (``config/scenarios/NAME.yaml``
    or a path), or a bare scenario name configured from the policy's own metadata."""
    from sim.config import resolve_scenario, scenario_file

    if scenario_file(scenario) is not None:
        return resolve_scenario(scenario, **({"num_drones": drones} if drones else {}))
    try:
        return resolve_scenario(
            scenario, action_mode=meta["action_mode"],
            neighbours_k=int(meta["obs_neighbours_k"]),
            neighbour_range_m=float(meta["neighbour_range_m"]),
            max_speed_mps=float(meta["max_speed_mps"]),
            max_yaw_rate_rad_s=float(meta["max_yaw_rate_rad_s"]),
            num_drones=drones or int(meta["num_drones"]))
    except ConfigError as exc:
        raise ConfigError(f"--{exc}") from None


@app.command("eval")
def eval_cmd(
    policy: Annotated[Path | None, typer.Option(dir_okay=False, help="Policy file (.onnx); "
                                                "optional with --baseline.")] = None,
    scenario: Annotated[str, typer.Option(help="A scenario name (hover, static_formation, "
                                          "swap_goals, dynamic_goals, obstacles), a file in "
                                          "config/scenarios/ by name, a task-allocation "
                                          "preset in config/mrta/ (e.g. mrta_paper), or a "
                                          "YAML path.")] = "",
    drones: Annotated[int | None, typer.Option(min=1, help="Override the drone count.")
                      ] = None,
    episodes: Annotated[int | None, typer.Option(min=1, help="Held-out episodes (default "
                                                 "100; MRTA: 96 per seed).")] = None,
    seed: Annotated[int, typer.Option(min=0, help="Evaluation seed (episode k uses "
                                      "seed + 10000 k, never a training stream).")] = 0,
    backend: Annotated[Backend, typer.Option(help="Physics engine.")] = "batched",
    shield: Annotated[Shield, typer.Option(help="Filter each drone's velocity command "
                                           "through the runtime CBF shield.")] = "none",
    plot: Annotated[Path | None, typer.Option(dir_okay=False, help="Trajectory plot (PNG) "
                                              "of the first episode.")] = None,
    run: Annotated[Path | None, typer.Option(file_okay=False, exists=True, help="Training run "
                                             "directory: also plot its learning curve.")
                   ] = None,
    baseline: Annotated[list[str] | None, typer.Option(
        help="MRTA: also evaluate a scripted allocator, market or greedy (repeatable).")
    ] = None,
    compare: Annotated[list[Path] | None, typer.Option(
        dir_okay=False, help="MRTA: another task policy for the table, e.g. one trained "
        "without intention sharing (repeatable).")] = None,
    ablations: Annotated[bool, typer.Option(
        "--ablations", help="MRTA: add --policy with revision off and with intention "
        "sharing off at test time.")] = False,
    seeds: Annotated[int, typer.Option(min=1, help="MRTA: evaluation seeds (episodes per "
                                       "seed: --episodes).")] = 5,
    as_json: JsonFlag = False,
) -> None:
    """Evaluate a policy: metrics table (mean and 95 % CI) over held-out episodes. On a
    task-allocation preset: return, completions per level and travel per robot of the policy,
    the --baseline allocators and ablations, over --seeds x --episodes episodes."""
    from swarm_rl.mrta import commands as mrta

    if mrta.is_mrta(scenario):
        from swarm_rl.mrta.evaluate import run_eval

        text, summary = run_eval(scenario, policy, list(baseline or []), list(compare or []),
                                 ablations, seeds, episodes or 96, seed, plot, run)
        typer.echo(text)
        if as_json:
            emit_json(summary)
        return
    if policy is None or not scenario or baseline:
        raise typer.BadParameter("--policy and --scenario are required; --baseline is for "
                                 "task-allocation presets (config/mrta/)",
                                 param_hint="'--policy' / '--baseline'")
    episodes = episodes or 100
    from swarm_rl.evaluate import OnnxPolicy, evaluate
    from swarm_rl.plots import format_table, plot_learning_curve, plot_trajectories

    pol = OnnxPolicy(policy)
    env_cfg = _eval_config(scenario, pol.metadata, drones)
    cbf = None
    if Shield(shield).value == "cbf":
        from swarm_rl.runtime.shield import CBFShield, ShieldConfig

        x, y, z = env_cfg.room_size_m
        cbf = CBFShield(ShieldConfig(ceiling_m=z - 0.5, geofence_lower_m=(-x / 2 + 0.5,
                                     -y / 2 + 0.5, -np.inf),
                                     geofence_upper_m=(x / 2 - 0.5, y / 2 - 0.5, np.inf),
                                     v_max_mps=env_cfg.max_speed_mps * np.sqrt(3)))
    result = evaluate(pol, env_cfg, episodes, seed, Backend(backend).value,
                      record=plot is not None, shield=cbf)
    typer.echo(f"{policy} on {env_cfg.scenario}, {env_cfg.num_drones} drones, "
               f"{episodes} episodes ({Backend(backend).value}, shield {Shield(shield).value})")
    typer.echo(format_table(result.table))
    out = result.to_dict()
    if plot is not None:
        t = result.trajectory
        plot_trajectories(t.positions_m, t.goals_m, t.dt_s, plot,
                          f"{policy.name} on {env_cfg.scenario}: first episode")
        out["plot"] = str(plot)
    if run is not None:
        curve = (plot.with_name(plot.stem + "_learning.png") if plot is not None
                 else run / "learning_curve.png")
        plot_learning_curve(run / "progress.jsonl", curve, run.name)
        out["learning_curve"] = str(curve)
    if as_json:
        emit_json(out)


@app.command("launch")
def launch_cmd(
    config: Annotated[Path, typer.Argument(dir_okay=False, help="Launch config YAML "
                                           "(config/sim_swarm.yaml is the reference).")],
    duration: Annotated[float | None, typer.Option(min=0.1, help="Override duration_s "
                                                   "(simulated seconds).")] = None,
    out: Annotated[Path | None, typer.Option(file_okay=False, help="Override the output "
                                             "directory.")] = None,
    lockstep: Annotated[bool, typer.Option("--lockstep", help="Step the simulator in lockstep "
                                           "with the robots (sim.real_time_factor 0): the "
                                           "same flight on any machine, however loaded.")
                        ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Run the decentralised node graph (sim bridge + robot nodes) as processes over DDS."""
    from ros_nodes.launcher import load_launch_config, run_launch, summary_markdown

    overrides: dict[str, Any] = {}
    if duration is not None:
        overrides["duration_s"] = duration
    if out is not None:
        overrides["out"] = str(out)
    cfg = load_launch_config(config, overrides)
    if lockstep:
        cfg.sim.real_time_factor = 0.0
    summary = run_launch(cfg)
    typer.echo(summary_markdown(summary))
    if as_json:
        emit_json(summary)


@export_app.command("onnx")
def export_onnx_cmd(
    checkpoint: Annotated[Path, typer.Argument(help="checkpoint.pt or its run directory.")],
    output: Annotated[Path, typer.Option("-o", "--output", dir_okay=False,
                                         help="ONNX file to write.")],
    opset: Annotated[int, typer.Option(min=17, help="ONNX opset.")] = 17,
    as_json: JsonFlag = False,
) -> None:
    """Export a checkpoint's actor as ONNX: raw observation in, clamped action out, with the
    normaliser inside and the observation layout in the metadata. A task-allocation (MRTA)
    checkpoint exports its task policy: observation in, masked choice logits out."""
    from swarm_rl.export import export_onnx
    from swarm_rl.mrta import commands as mrta

    if mrta.is_mrta_checkpoint(checkpoint):
        from swarm_rl.mrta.export import export_task_policy

        summary = export_task_policy(checkpoint, output, opset=opset)
    else:
        summary = export_onnx(checkpoint, output, opset=opset)
    typer.echo(f"wrote {summary['path']} (opset {summary['opset']}, {summary['params']} "
               f"parameters, parity {summary['parity_max_abs_error']:.1e})")
    if as_json:
        emit_json(summary)


def _firmware_bench(policies: list[Path], samples: int, target: bool) -> dict:
    """firmware_export's checks with this package's inputs: random layout-v1 observations
    (seed 0) and onnxruntime as the reference."""
    from firmware_export.bench import run_bench
    from sim.observation import ObsLayout
    from swarm_rl.export import random_observations
    from swarm_rl.runtime.policy import OnnxPolicy

    def observations(path: Path) -> np.ndarray:
        layout = ObsLayout(OnnxPolicy(path).neighbours_k)
        return random_observations(layout, samples, np.random.default_rng(0))

    return run_bench(policies, observations, lambda path, obs: OnnxPolicy(path)(obs), target)


def _firmware_errors(call: Any) -> Any:
    """Run ``call``; a FirmwareExportError becomes ``error: ...`` and exit code 2."""
    from firmware_export.graph import FirmwareExportError

    try:
        return call()
    except FirmwareExportError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


@export_app.command("firmware")
def export_firmware_cmd(
    policy: Annotated[Path, typer.Argument(dir_okay=False, help="Policy file (.onnx) with "
                                           "swarm_rl metadata.")],
    output: Annotated[Path, typer.Option("-o", "--output", file_okay=False,
                                         help="App directory to write (an earlier export "
                                         "there is replaced).")],
    rate_hz: Annotated[int | None, typer.Option(help="Policy ticks per second on board: 25, "
                                                "50, 100, 250, 500 or 1000 (default: the "
                                                "rate it was trained at).")] = None,
    goal: Annotated[str, typer.Option(metavar="X,Y,Z", help="Default goal, world frame (m); "
                                      "parameters swarmPolicy.goalX/Y/Z change it in "
                                      "flight.")] = "0,0,1",
    check: Annotated[bool, typer.Option("--check", help="Also compile the network with gcc "
                                        "(and for the Cortex-M4 under QEMU when installed) "
                                        "and compare it with onnxruntime on 10,000 "
                                        "observations.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Compile a policy into an out-of-tree crazyflie-firmware app (C99 network, observation
    builder, app glue, Kbuild files); see docs/firmware.md to build and flash it."""
    from firmware_export.app import export_firmware

    try:
        goal_m = tuple(float(v) for v in goal.split(","))
    except ValueError:
        goal_m = ()
    if len(goal_m) != 3 or not all(np.isfinite(goal_m)):
        raise typer.BadParameter(f"expected three comma-separated numbers (m), got '{goal}'",
                                 param_hint="'--goal'")
    summary = _firmware_errors(lambda: export_firmware(policy, output, rate_hz=rate_hz,
                                                       goal_m=goal_m))
    typer.echo(f"wrote {summary['out']} ({summary['action_mode']} policy at "
               f"{summary['rate_hz']} Hz, {summary['macs']:,} MACs, {summary['params']:,} "
               "weights)")
    if check:
        row = _firmware_errors(lambda: _firmware_bench([policy], 10_000, True))["policies"][0]
        summary["check"] = row
        target = (f"target {row['target_max_abs_error']:.1e}, flash {row['flash_bytes']:,} B, "
                  f"RAM {row['ram_bytes']:,} B" if "target_max_abs_error" in row
                  else f"target skipped ({row['target_skipped']})")
        typer.echo(f"check on {row['samples']:,} observations: max |C - onnxruntime| host "
                   f"{row['host_max_abs_error']:.1e}, {target}")
    if as_json:
        emit_json(summary)


@app.command("virtual-crazyflie")
def virtual_crazyflie_cmd(
    drones: Annotated[int, typer.Option(min=1, max=64, help="Number of emulated drones.")] = 4,
    base_port: Annotated[int, typer.Option(min=0, max=65535, help="Drone i listens on "
                                           "udp://127.0.0.1:BASE+i (0: free ports, printed).")
                         ] = 19850,
    duration: Annotated[float | None, typer.Option(min=0.1, help="Stop after this many "
                                                   "seconds (default: until Ctrl-C).")
                        ] = None,
    drain_scale: Annotated[float, typer.Option(min=0.0, help="Battery discharge multiplier "
                                               "(1: a real Crazyflie's ~7 min hover).")
                           ] = 1.0,
    battery: Annotated[float, typer.Option(min=0.0, max=1.0, help="Initial state of charge "
                                           "(0..1).")] = 1.0,
    loss: Annotated[float, typer.Option(min=0.0, max=1.0, help="Drop this fraction of "
                                        "streamed packets (log data, setpoints).")] = 0.0,
    latency_ms: Annotated[float, typer.Option(min=0.0, help="Added one-way latency (ms).")
                          ] = 0.0,
    blackout_after: Annotated[float | None, typer.Option(min=0.0, help="Drop all traffic "
                                                         "from this time (s) ...")] = None,
    blackout_for: Annotated[float, typer.Option(min=0.0, help="... for this long (s).")
                            ] = 0.0,
    seed: Annotated[int, typer.Option(help="Seed of estimator noise and link faults.")] = 0,
    as_json: JsonFlag = False,
) -> None:
    """Emulated Crazyflies that cflib connects to over udp:// (CRTP, one packet per datagram),
    flying in the simulator. Prints one URI per drone, then 'ready'; on exit (Ctrl-C,
    SIGTERM or --duration) prints a summary: collisions, minimum separation, real-time lag."""
    from sim.virtual_crazyflie import LinkFaults, VirtualCrazyflieServer, VirtualSwarmConfig
    from sim.virtual_crazyflie.server import serve_until_signal

    fault = LinkFaults(loss=loss, latency_s=latency_ms / 1000.0,
                       blackout_after_s=blackout_after, blackout_for_s=blackout_for)
    cfg = VirtualSwarmConfig(drones=drones, base_port=base_port, seed=seed,
                             battery_drain_scale=drain_scale, battery_soc=battery,
                             faults={i: fault for i in range(drones)})
    try:
        server = VirtualCrazyflieServer(cfg)
    except OSError as exc:
        typer.echo(f"error: --base-port: cannot bind {drones} UDP ports from {base_port}: "
                   f"{exc}", err=True)
        raise typer.Exit(2) from None

    def ready() -> None:
        for drone, uri in zip(server.drones, server.uris):
            typer.echo(f"{drone.name} {uri}")
        typer.echo("ready")
        sys.stdout.flush()

    serve_until_signal(server, duration, ready)
    summary = server.summary()
    sep = summary["min_separation_m"]
    typer.echo(f"flew {summary['sim_time_s']:.1f} s: {summary['collision_events']} "
               f"collisions, min separation {figure(sep, '{:.3f} m')}, max lag "
               f"{summary['max_lag_ms']:.0f} ms, {summary['handler_errors']} handler errors")
    if as_json:
        emit_json(summary)


def main() -> None:
    """Console-script entry point (``swarm-rl``)."""
    app(prog_name="swarm-rl")


if __name__ == "__main__":
    main()
