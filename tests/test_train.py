"""The trainer on tiny budgets: it learns, resumes exactly, and fails clearly on bad input."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from sim.errors import ConfigError
from sim.swarm_env import SwarmVecEnv
from swarm_rl.train.checkpoint import CheckpointError, load_checkpoint
from swarm_rl.train.config import load_preset, parse_overrides
from swarm_rl.train.ppo import CHECKPOINT_NAME, Trainer, gae, stage_value

TINY = ["ppo.num_envs=16", "ppo.rollout_steps=20", "env.episode_s=0.4", "threads=1",
        "ppo.minibatch_size=512", "checkpoint_every=1", "init_from="]


def _tiny(extra: list[str] | None = None, preset: str = "hover_single"):
    return load_preset(preset, TINY + (extra or []))


def test_short_run_improves_return(tmp_path: Path) -> None:
    """One drone, 1 s episodes: a few hundred thousand steps make the return clearly better
    (the untrained, noisy policy tumbles and drifts; the trained one holds and approaches)."""
    cfg = load_preset("hover_single", ["ppo.num_envs=128", "ppo.rollout_steps=50",
                                       "env.episode_s=1.0", "total_steps=384000", "threads=1",
                                       "ppo.minibatch_size=2048", "checkpoint_every=100"])
    Trainer(cfg, tmp_path).train(progress_bar=False)
    rows = [json.loads(line) for line in (tmp_path / "progress.jsonl").read_text().splitlines()]
    returns = [r["return"] for r in rows if "return" in r]
    assert len(returns) >= 50
    early, late = np.mean(returns[:3]), np.mean(returns[-3:])
    assert late > early + 0.2 * abs(early), (early, late)  # seeds 0/1 gave +28 %/+50 %


def test_gae_matches_hand_computation() -> None:
    rewards = torch.tensor([[1.0], [0.0], [2.0]])
    values = torch.tensor([[0.5], [0.4], [0.3]])
    dones = torch.tensor([[0.0], [1.0], [0.0]])
    next_value = torch.tensor([0.7])
    g, lam = 0.9, 0.8
    d2 = 2.0 + g * 0.7 - 0.3
    d1 = 0.0 - 0.4
    d0 = 1.0 + g * 0.4 - 0.5
    expected = [d0 + g * lam * d1, d1, d2]
    adv = gae(rewards, values, dones, next_value, g, lam)
    assert adv[:, 0].tolist() == pytest.approx(expected)


def test_stage_value_is_stepwise() -> None:
    stages = [[0.0, 2], [0.3, 4], [0.6, 8]]
    assert [stage_value(stages, p, 1) for p in (0.0, 0.29, 0.3, 0.99)] == [2, 2, 4, 8]
    assert stage_value([], 0.5, 7) == 7


def test_resume_reproduces_next_update_bit_for_bit(tmp_path: Path) -> None:
    one, two = 16 * 20 * 1, 16 * 20 * 2
    straight = Trainer(_tiny([f"total_steps={two}"]), tmp_path / "a")
    straight.train(progress_bar=False)
    Trainer(_tiny([f"total_steps={one}"]), tmp_path / "b").train(progress_bar=False)
    resumed = Trainer.resume(tmp_path / "b", _tiny([f"total_steps={two}"]))
    assert resumed.steps == one
    resumed.train(progress_bar=False)
    for name in ("actor", "critic"):
        a = getattr(straight, name).state_dict()
        b = getattr(resumed, name).state_dict()
        for key in a:
            assert torch.equal(a[key], b[key]), f"{name}.{key} differs after resume"
    assert resumed.steps == straight.steps == two


def test_resume_with_curriculum_and_eight_drones(tmp_path: Path) -> None:
    cfg = _tiny(["total_steps=1280", "ppo.num_envs=4"], preset="swap_goals_8")
    trainer = Trainer(cfg, tmp_path)
    trainer.train(progress_bar=False)
    assert trainer.env.num_drones == 8
    data = load_checkpoint(tmp_path / CHECKPOINT_NAME)
    assert data["steps"] == trainer.steps


def test_interrupted_run_keeps_last_checkpoint(tmp_path: Path, monkeypatch) -> None:
    trainer = Trainer(_tiny(["total_steps=100000"]), tmp_path)
    calls = {"n": 0}
    real_step = SwarmVecEnv.step

    def failing_step(self, actions):
        calls["n"] += 1
        if calls["n"] > 50:  # during the third rollout of 20 steps
            raise KeyboardInterrupt
        return real_step(self, actions)

    monkeypatch.setattr(SwarmVecEnv, "step", failing_step)
    with pytest.raises(KeyboardInterrupt):
        trainer.train(progress_bar=False)
    data = load_checkpoint(tmp_path / CHECKPOINT_NAME)
    assert data["steps"] == 2 * 16 * 20  # two full updates were checkpointed
    lines = (tmp_path / "progress.jsonl").read_text().splitlines()
    assert [json.loads(line)["update"] for line in lines] == [1, 2]
    monkeypatch.undo()
    resumed = Trainer.resume(tmp_path)
    assert resumed.steps == data["steps"]


def test_unknown_preset_and_override_keys_name_the_problem() -> None:
    with pytest.raises(ConfigError, match="--preset: unknown preset 'nope'.*hover_single"):
        load_preset("nope")
    with pytest.raises(ConfigError, match=r"ppo\.lrr: unknown option.*\blr\b"):
        load_preset("hover_single", ["ppo.lrr=1"])
    with pytest.raises(ConfigError, match=r"env\.scenario: unknown scenario"):
        load_preset("hover_single", ["env.scenario=maze"])
    with pytest.raises(ConfigError, match="model.encoder: unknown value 'rnn'"):
        load_preset("hover_single", ["model.encoder=rnn"])
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_overrides(["ppo.lr"])
    with pytest.raises(ConfigError, match="ppo.gamma: must be in"):
        load_preset("hover_single", ["ppo.gamma=1.5"])


def test_corrupt_and_mismatched_checkpoints_fail_clearly(tmp_path: Path) -> None:
    Trainer(_tiny(["total_steps=320"]), tmp_path / "run").train(progress_bar=False)
    path = tmp_path / "run" / CHECKPOINT_NAME
    truncated = tmp_path / "bad" / CHECKPOINT_NAME
    truncated.parent.mkdir()
    truncated.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        Trainer.resume(truncated.parent)
    data = torch.load(path, weights_only=False)
    big = Trainer(_tiny(["total_steps=320", "model.preset=offboard"]), tmp_path / "big")
    from swarm_rl.train.checkpoint import load_module_state
    with pytest.raises(CheckpointError, match="another shape.*own"):
        load_module_state(big.actor, data["actor"], "actor", path)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        Trainer.resume(tmp_path / "missing")


def test_env_pickled_by_an_older_version_still_steps() -> None:
    """Checkpoints pickle the environment; one written before per-environment seeding existed
    lacks ``env_rngs`` and must still resume."""
    import pickle

    from sim.config import make_config

    env = SwarmVecEnv(make_config(num_drones=2, episode_s=0.1), num_envs=2, seed=4)
    env.reset()
    old = pickle.loads(pickle.dumps(env))
    del old.__dict__["env_rngs"]
    revived = pickle.loads(pickle.dumps(old))
    assert revived.env_rngs is None
    result = revived.step(revived.hover_action())
    assert np.isfinite(result.obs).all()


def test_fine_tuning_opens_inputs_the_source_never_saw(tmp_path: Path) -> None:
    """A single-drone policy never saw neighbours (normaliser variance 0: any real neighbour
    would hit the +-10 clip) nor columns. init_from re-normalises those inputs only and zeroes
    their path into the trunk, so the fine-tune starts from the source's exact behaviour."""
    source = Trainer(_tiny(["total_steps=320"]), tmp_path / "single")
    source.train(progress_bar=False)
    source.save_actor(tmp_path / "actor.pt")
    sl = source.actor.layout.slices
    assert bool(source.actor.norm.unseen()[sl["neighbours"]].all())
    assert not bool(source.actor.norm.unseen()[:18].any())
    tuned = Trainer(_tiny(["total_steps=320", f"init_from={tmp_path / 'actor.pt'}"],
                          preset="swap_goals_8"), tmp_path / "swarm")
    norm = tuned.actor.norm
    assert torch.equal(norm.var[sl["neighbours"]], torch.ones(36))
    assert torch.equal(norm.mean[sl["neighbours"]], torch.zeros(36))
    own = slice(0, 18)  # goal error, velocity, rotation, body rates: seen, kept
    assert torch.equal(norm.var[own], source.actor.norm.var[own])
    assert bool((norm.count[sl["neighbours"]] <= 1e4).all())
    torch.testing.assert_close(norm.count[own], source.actor.norm.count[own], atol=0, rtol=0)
    # Same actions as the source flying alone, whatever the neighbours and columns now read.
    obs = torch.from_numpy(tuned.obs.reshape(-1, tuned.env.obs_dim))
    alone = obs.clone()
    alone[:, sl["neighbours"]] = 0.0
    alone[:, sl["neighbour_mask"]] = 0.0
    alone[:, sl["obstacles"]] = source.actor.norm.mean[sl["obstacles"]]
    with torch.no_grad():
        torch.testing.assert_close(tuned.actor(obs), source.actor(alone), atol=1e-6, rtol=0)


def test_fine_tune_with_frozen_normaliser_keeps_the_sources_statistics(tmp_path: Path) -> None:
    """init_norm=freeze_seen: the entries the source saw vary keep its statistics through the
    fine-tune (and a resume); the re-opened ones follow the new data. With adapt they move."""
    source = Trainer(_tiny(["total_steps=320"]), tmp_path / "single")
    source.train(progress_bar=False)
    source.save_actor(tmp_path / "actor.pt")
    seen = ~source.actor.norm.unseen()
    assert bool(seen[:18].all()) and not bool(seen.all())
    runs = {}
    for mode in ("freeze_seen", "adapt"):
        init = [f"init_from={tmp_path / 'actor.pt'}", f"init_norm={mode}"]
        Trainer(_tiny(["total_steps=320"] + init, preset="swap_goals_8"),
                tmp_path / mode).train(progress_bar=False)
        resumed = Trainer.resume(tmp_path / mode, _tiny(["total_steps=640"] + init,
                                                        preset="swap_goals_8"))
        resumed.train(progress_bar=False)
        assert resumed.steps == 640
        runs[mode] = resumed.actor.norm
    frozen, adapted = runs["freeze_seen"], runs["adapt"]
    for buf in ("mean", "var", "count"):
        src = getattr(source.actor.norm, buf)
        assert torch.equal(getattr(frozen, buf)[seen], src[seen]), buf
        assert not torch.equal(getattr(adapted, buf)[seen], src[seen]), buf
        assert torch.equal(getattr(frozen, buf)[~seen], getattr(adapted, buf)[~seen]), buf
    assert bool((frozen.count[~seen] > 0.0).all())
    assert not bool(frozen.unseen()[source.actor.layout.slices["neighbours"]].any())


def test_critic_warmup_leaves_the_actor_as_it_was(tmp_path: Path) -> None:
    trainer = Trainer(_tiny(["total_steps=640", "ppo.critic_warmup_updates=1"]), tmp_path)
    actor0 = {k: v.clone() for k, v in trainer.actor.state_dict().items() if "norm" not in k}
    critic0 = {k: v.clone() for k, v in trainer.critic.state_dict().items()}
    trainer.update(trainer.collect())
    trainer.update_index += 1
    assert all(torch.equal(trainer.actor.state_dict()[k], v) for k, v in actor0.items())
    assert not all(torch.equal(trainer.critic.state_dict()[k], v) for k, v in critic0.items())
    trainer.update(trainer.collect())  # past the warm-up: the actor learns
    assert not all(torch.equal(trainer.actor.state_dict()[k], v) for k, v in actor0.items())


def test_fine_tuning_options_are_checked() -> None:
    with pytest.raises(ConfigError, match="init_norm: unknown value 'fixed'.*freeze_seen"):
        load_preset("hover_single", ["init_norm=fixed"])
    with pytest.raises(ConfigError, match="ppo.critic_warmup_updates: must be >= 0"):
        load_preset("hover_single", ["ppo.critic_warmup_updates=-1"])


def test_reopened_normaliser_entries_do_not_unsettle_the_others() -> None:
    """Fine-tuning re-opens the entries a source never saw vary; a first rollout from another
    phase of flight (here: mean 5) must move those, not the settled ones."""
    from swarm_rl.models import RunningNorm

    gen = torch.Generator().manual_seed(0)
    norm = RunningNorm(3)
    settled = torch.randn(100_000, 3, generator=gen) * torch.tensor([1.0, 2.0, 0.0])
    norm.update(settled + torch.tensor([0.0, 0.0, 2.0]))  # entry 2: always 2.0
    assert norm.unseen().tolist() == [False, False, True]
    assert norm.reset_unseen(count=1e4) == 1
    norm.update(torch.full((1000, 3), 5.0))
    np.testing.assert_allclose(norm.mean[:2].numpy(), 5.0 * 1000 / 101_000, atol=0.02)
    np.testing.assert_allclose(float(norm.mean[2]), 5.0 * 1000 / 11_000, rtol=1e-5)


def test_normaliser_with_one_count_from_an_older_checkpoint_loads() -> None:
    from swarm_rl.models import RunningNorm
    from swarm_rl.train.checkpoint import load_module_state

    old = {"mean": torch.zeros(4), "var": torch.ones(4),
           "count": torch.tensor(123.0, dtype=torch.float64)}
    norm = RunningNorm(4)
    load_module_state(norm, old, "normaliser", Path("old.pt"))
    assert norm.count.tolist() == [123.0] * 4
