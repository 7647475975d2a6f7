"""``swarm-rl bench train``: end-to-end training throughput (collection + PPO update)."""
from __future__ import annotations

import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from swarm_rl.train.config import load_preset
from swarm_rl.train.ppo import Trainer


def run_bench(preset: str = "swap_goals_8", updates: int = 5,
              overrides: list[str] | None = None) -> dict[str, Any]:
    """Agent-steps/s of whole PPO updates on ``preset`` with its full drone count (curriculum
    off), after one warm-up update that also compiles the simulator kernels. The machine's
    1-minute load average before and after says whether other jobs shared it."""
    load_before = os.getloadavg()[0]
    cfg = load_preset(preset, ["curriculum.num_drones=[]"] + list(overrides or []))
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, Path(tmp))
        trainer.update(trainer.collect())
        collect_s = update_s = 0.0
        for _ in range(updates):
            t0 = time.perf_counter()
            rollout = trainer.collect()
            t1 = time.perf_counter()
            trainer.update(rollout)
            collect_s += t1 - t0
            update_s += time.perf_counter() - t1
    samples = updates * cfg.ppo.rollout_steps * cfg.ppo.num_envs * cfg.env.num_drones
    return {
        "preset": preset, "drones": cfg.env.num_drones, "num_envs": cfg.ppo.num_envs,
        "samples_per_update": samples // updates, "updates": updates,
        "epochs": cfg.ppo.epochs, "minibatch_size": cfg.ppo.minibatch_size,
        "model_preset": cfg.model.preset, "critic": cfg.model.critic,
        "agent_steps_per_s": samples / (collect_s + update_s),
        "collect_steps_per_s": samples / collect_s, "update_samples_per_s": samples / update_s,
        "collect_share": collect_s / (collect_s + update_s),
        "machine": {"processor": platform.processor() or platform.machine(),
                    "cpu_count": os.cpu_count(), "torch": torch.__version__,
                    "torch_threads": torch.get_num_threads(),
                    "load_average_1min": [load_before, os.getloadavg()[0]]},
    }


def format_table(report: dict[str, Any]) -> str:
    r = report
    return "\n".join([
        f"preset {r['preset']}: {r['drones']} drones x {r['num_envs']} envs, "
        f"{r['samples_per_update']:,} samples/update, {r['epochs']} epochs, "
        f"minibatch {r['minibatch_size']}, {r['model_preset']} actor, {r['critic']} critic",
        f"end to end   {r['agent_steps_per_s']:>12,.0f} agent-steps/s",
        f"collection   {r['collect_steps_per_s']:>12,.0f} agent-steps/s "
        f"({r['collect_share']:.0%} of the time)",
        f"PPO update   {r['update_samples_per_s']:>12,.0f} samples/s",
        "load average {:.2f} before, {:.2f} after".format(*r["machine"]["load_average_1min"]),
    ])
