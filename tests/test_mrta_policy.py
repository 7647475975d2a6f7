"""The learned task policy: a short training run improves the return; ONNX export runs
without torch with the same choices; resume continues a run exactly."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from sim.mrta.config import load_mrta_env
from swarm_rl.errors import CheckpointError, PolicyFileError, PolicyMismatchError
from swarm_rl.mrta.config import load_mrta_preset
from swarm_rl.mrta.evaluate import Method, chooser_allocator, run_method
from swarm_rl.mrta.export import export_task_policy
from swarm_rl.mrta.onnx_policy import TaskPolicy
from swarm_rl.mrta.train import MRTATrainer
from swarm_rl.train.checkpoint import load_checkpoint, save_checkpoint

REPO = Path(__file__).resolve().parents[1]


def torch_chooser(actor):
    def choose(obs):
        with torch.no_grad():
            return actor(torch.from_numpy(np.ascontiguousarray(obs))).argmax(-1).numpy()
    return choose


def mean_return(chooser, cfg, episodes=64):
    method = Method("p", chooser_allocator(chooser), cfg)
    return run_method(method, [0], episodes, progress=False).row("return")["mean"]


def test_short_training_run_improves_the_return_and_exports_to_onnx(tmp_path):
    cfg = load_mrta_preset("mrta_small")  # 64,000 decisions: 25 updates
    trainer = MRTATrainer(cfg, tmp_path / "run")
    before = mean_return(torch_chooser(trainer.actor), cfg.env)
    trainer.train(progress_bar=False)
    after = mean_return(torch_chooser(trainer.actor), cfg.env)
    assert after > before + 5.0, (before, after)
    summary = export_task_policy(tmp_path / "run", tmp_path / "p.onnx")
    assert summary["parity_max_abs_error"] < 1e-4
    policy = TaskPolicy(tmp_path / "p.onnx")
    assert policy.metadata["preset"] == "mrta_small" and policy.intention_sharing
    assert mean_return(policy, cfg.env) == after  # same choices without torch
    progress = (tmp_path / "run" / "progress.jsonl").read_text().splitlines()
    assert len(progress) == 25


def test_policy_refuses_what_it_does_not_fit(tmp_path):
    cfg = load_mrta_preset("mrta_small", ["total_steps=100", "ppo.num_envs=2"])
    trainer = MRTATrainer(cfg, tmp_path / "run")
    trainer.train(progress_bar=False)
    export_task_policy(tmp_path / "run", tmp_path / "p.onnx")
    policy = TaskPolicy(tmp_path / "p.onnx")
    with pytest.raises(PolicyMismatchError, match="view_range_m.*task_slots|task_slots"):
        policy.check_compatible(load_mrta_env("mrta_paper"))
    with pytest.raises(PolicyFileError, match="not a task-allocation policy"):
        TaskPolicy(REPO / "policies" / "formation_velocity_8.onnx")
    with pytest.raises(ValueError, match="NaN"):
        policy(np.full((1, policy.layout.dim), np.nan, np.float32))


def test_resume_continues_the_run_exactly(tmp_path):
    args = ["ppo.num_envs=2", "total_steps=160"]
    straight = MRTATrainer(load_mrta_preset("mrta_small", args), tmp_path / "a")
    straight.train(progress_bar=False)
    half = MRTATrainer(load_mrta_preset("mrta_small", ["ppo.num_envs=2", "total_steps=80"]),
                       tmp_path / "b")
    half.train(progress_bar=False)
    resumed = MRTATrainer.resume(tmp_path / "b", total_steps=160)
    resumed.train(progress_bar=False)
    for (name, a), b in zip(straight.actor.state_dict().items(),
                            resumed.actor.state_dict().values()):
        assert torch.equal(a, b), name


def test_init_starts_from_another_runs_networks_with_a_fresh_schedule(tmp_path):
    """``init`` (fine-tuning a shipped task policy): the new run starts with the source run's
    actor, critic and value normaliser, at step 0 with a fresh optimizer, from its checkpoint
    or from the small shippable init file; a checkpoint that is not an MRTA run's is refused
    by name."""
    source = MRTATrainer(load_mrta_preset("mrta_small", ["ppo.num_envs=2", "total_steps=80"]),
                         tmp_path / "src")
    source.train(progress_bar=False)
    ckpt = tmp_path / "src" / "checkpoint.pt"
    small = source.save_init(tmp_path / "src" / "init.pt")
    assert small.stat().st_size < 0.6 * ckpt.stat().st_size
    for init in (ckpt, small):
        tuned = MRTATrainer(load_mrta_preset("mrta_small", ["ppo.num_envs=2", "total_steps=80",
                                                            "seed=3", f"init={init}"]),
                            tmp_path / f"ft_{init.stem}")
        for net in ("actor", "critic", "value_norm"):
            for (name, a), b in zip(getattr(source, net).state_dict().items(),
                                    getattr(tuned, net).state_dict().values()):
                assert torch.equal(a, b), f"{net}.{name}"
        assert tuned.steps == 0 and tuned.update_index == 0
        assert not tuned.optimizer.state_dict()["state"], "the optimizer starts afresh"
    fresh = MRTATrainer(load_mrta_preset("mrta_small", ["ppo.num_envs=2", "seed=3"]),
                        tmp_path / "fresh")
    assert not all(torch.equal(a, b) for a, b in zip(fresh.actor.state_dict().values(),
                                                    tuned.actor.state_dict().values()))
    other = tmp_path / "other.pt"
    save_checkpoint(other, {"actor": source.actor.state_dict()})  # a flight run's shape
    with pytest.raises(CheckpointError, match="not an MRTA training checkpoint"):
        MRTATrainer(load_mrta_preset("mrta_small", ["ppo.num_envs=2", f"init={other}"]),
                    tmp_path / "bad")


def test_a_newer_layout_starts_from_older_networks_that_compute_what_they_did(tmp_path):
    """``init`` from a layout-4 run into a layout-5 run: the task encoder and the critic get
    zero weights for the added features, so on the same state the actor's logits and the
    critic's value are the old ones; a layout that only drops inputs is refused by name."""
    old_cfg = load_mrta_preset("mrta_small", ["ppo.num_envs=2", "env.obs_layout=4"])
    source = MRTATrainer(old_cfg, tmp_path / "v4")
    with torch.no_grad():  # weights away from their zero-bias start
        for p in list(source.actor.parameters()) + list(source.critic.parameters()):
            p.add_(0.05 * torch.randn_like(p))
    init = source.save_init(tmp_path / "v4" / "init.pt")
    wide = MRTATrainer(load_mrta_preset("mrta_small", ["ppo.num_envs=2", "env.obs_layout=5",
                                                       f"init={init}"]), tmp_path / "v5")
    assert wide.env.layout.task_feats == source.env.layout.task_feats + 2
    env4, env5 = source.env, wide.env
    for env in (env4, env5):
        env.reset([7, 8])
    obs4, obs5 = env4.observe().obs, env5.observe().obs
    lay = env5.layout
    added = obs5[..., lay.slices["tasks"]].reshape(-1, lay.task_slots, lay.task_feats)[..., 14:]
    assert (added > 0).any(), "the state must show the added features"
    flat = lambda o: torch.from_numpy(o.reshape(-1, o.shape[-1]))  # noqa: E731
    with torch.no_grad():
        torch.testing.assert_close(wide.actor(flat(obs5)), source.actor(flat(obs4)))
        n = env4.num_robots
        state = [torch.from_numpy(np.repeat(a, n, axis=0)) for a in env4.critic_state()]
        torch.testing.assert_close(wide.critic(flat(obs5), *state),
                                   source.critic(flat(obs4), *state))
    with pytest.raises(CheckpointError, match="cannot be widened to v4"):
        MRTATrainer(load_mrta_preset("mrta_small", ["ppo.num_envs=2", "env.obs_layout=4",
                                                    f"init={wide.save_init(tmp_path / 'w.pt')}"]),
                    tmp_path / "back")


def test_deploy_side_imports_neither_torch_nor_pybullet():
    code = ("import sys, sim.mrta.decide, sim.mrta.env, swarm_rl.mrta.onnx_policy; "
            "bad = [m for m in ('torch', 'pybullet') if m in sys.modules]; "
            "assert not bad, bad")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("name", ["mrta_paper", "mrta_paper_respawn", "mrta_paper_dagger",
                                  "mrta_paper_respawn128", "mrta_paper_respawn128_ft",
                                  "mrta_room_8_v1", "mrta_room_8", "mrta_room_8_market06",
                                  "mrta_room_8_l5", "mrta_paper_arrival_004_market15",
                                  "mrta_paper_arrival_004_l5"])
def test_shipped_init_file_holds_the_shipped_policy(tmp_path, name):
    """A shipped ``policies/NAME.init.pt`` (what fine-tuning presets start from) exports to a
    policy that makes the shipped ONNX file's choices, so the fine-tuning reruns from a clean
    clone on the networks the report describes."""
    onnx = export_task_policy(REPO / "policies" / f"{name}.init.pt", tmp_path / "p.onnx")
    ours, shipped = TaskPolicy(onnx["path"]), TaskPolicy(REPO / "policies" / f"{name}.onnx")
    assert ours.layout == shipped.layout
    obs = np.random.default_rng(0).random((4096, ours.layout.dim)).astype(np.float32)
    obs[:, ours.layout.slices["action_mask"]] = 1.0
    np.testing.assert_array_equal(ours(obs), shipped(obs))


@pytest.mark.parametrize("preset", ["mrta_paper_respawn", "mrta_paper_respawn128_ft",
                                    "mrta_room_8_market06", "mrta_paper_arrival_004_market15",
                                    "mrta_room_8_l5", "mrta_paper_arrival_004_l5"])
def test_fine_tuning_preset_starts_from_a_shipped_file(preset):
    """A fine-tuning preset names a shipped ``init`` file whose network fits the preset (in
    its layout, or an earlier one that the trainer widens)."""
    cfg = load_mrta_preset(preset)
    assert cfg.init and (REPO / cfg.init).is_file()
    src = load_checkpoint(REPO / cfg.init)["config"]
    assert src["model"]["hidden"] == cfg.model.hidden
    assert src["env"]["obs_layout"] <= cfg.env.obs_layout
    assert src["env"]["task_slots"] == cfg.env.task_slots
