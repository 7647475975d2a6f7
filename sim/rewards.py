"""Per-agent rewards for swarm flight (quad-swarm-rl style terms, each integrated over dt)."""
from __future__ import annotations

import numpy as np

from sim.config import RewardConfig
from sim.world import Collisions


def swarm_rewards(weights: RewardConfig, dt_s: float, goal_dist_m: np.ndarray,
                  rot: np.ndarray, omega: np.ndarray, action_sq: np.ndarray,
                  collisions: Collisions, nearest_m: np.ndarray, contact_radius_m: float,
                  collision_scale: float = 1.0) -> dict[str, np.ndarray]:
    """Reward terms (E, N) per agent for one control step of ``dt_s`` seconds, plus ``total``.

    ``action_sq`` is the squared norm of the normalised action (motors: deviation from the
    hover command), ``nearest_m`` the distance to the nearest swarm-mate, ``collision_scale``
    the curriculum's factor on the drone-contact and proximity penalties. Distances in m.
    """
    w = weights
    span = max(w.proximity_radius_m - contact_radius_m, 1e-6)
    closeness = np.clip((w.proximity_radius_m - nearest_m) / span, 0.0, 1.0)
    terms = {
        "distance": -w.distance * goal_dist_m,
        "precision": w.precision * np.exp(-goal_dist_m / w.precision_scale_m),
        "effort": -w.effort * action_sq,
        "orientation": -w.orientation * (1.0 - rot[..., 2, 2]),
        "spin": -w.spin * np.linalg.norm(omega, axis=-1),
        "crash": -w.crash * (collisions.floor | collisions.wall),
        "collision": -w.collision * collision_scale * (collisions.drone | collisions.obstacle),
        "proximity": -w.proximity * collision_scale * closeness,
    }
    terms = {k: v * dt_s for k, v in terms.items()}
    terms["total"] = sum(terms.values())
    return terms
