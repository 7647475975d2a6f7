"""What ``swarm-rl train`` and ``swarm-rl eval`` do when given an MRTA preset
(``config/mrta/NAME.yaml``, ``kind: mrta``); :mod:`swarm_rl.cli` dispatches here so that the
project keeps one train and one eval command."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from sim.mrta.config import preset_path


def is_mrta(preset_or_scenario: str) -> bool:
    """True when the name or path is an MRTA preset."""
    return preset_path(preset_or_scenario) is not None


def is_mrta_checkpoint(checkpoint: Path) -> bool:
    """True when ``checkpoint`` (a file, or a run directory holding ``checkpoint.pt``) was
    written by the MRTA trainer (``kind: mrta``)."""
    from swarm_rl.train.checkpoint import load_checkpoint

    path = checkpoint / "checkpoint.pt" if checkpoint.is_dir() else checkpoint
    return path.is_file() and load_checkpoint(path).get("kind") == "mrta"


def train(preset: str, steps: int | None, out: Path | None, resume: Path | None,
          overrides: list[str]) -> tuple[str, dict[str, Any]]:
    """Train (or resume) the task policy; export ``policy.onnx`` and write ``init.pt`` (the
    networks for a later ``init``, :meth:`MRTATrainer.save_init`) into the run directory."""
    from swarm_rl.mrta.config import load_mrta_preset
    from swarm_rl.mrta.export import export_task_policy
    from swarm_rl.mrta.train import CHECKPOINT_NAME, MRTATrainer

    if resume is not None:
        trainer = MRTATrainer.resume(resume, steps)
        run_dir = resume
    else:
        extra = list(overrides) + ([f"total_steps={steps}"] if steps else [])
        cfg = load_mrta_preset(preset, extra)
        run_dir = out or Path("runs") / Path(preset).stem
        trainer = MRTATrainer(cfg, run_dir)
    last = trainer.train()
    summary = export_task_policy(run_dir / CHECKPOINT_NAME, run_dir / "policy.onnx")
    trainer.save_init(run_dir / "init.pt")
    result = {"run_dir": str(run_dir), "steps": trainer.steps, "wall_s": trainer.wall_s,
              "steps_per_s": trainer.steps / max(trainer.wall_s, 1e-9),
              "policy": summary["path"], "final": last}
    text = (f"trained {trainer.steps:,} agent decisions in {trainer.wall_s:.0f} s; "
            f"policy {summary['path']}")
    return text, result
