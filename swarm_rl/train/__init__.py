"""MAPPO / IPPO training for swarms: config, rollouts, PPO updates, checkpoints."""
