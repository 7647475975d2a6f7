"""The physics-engine contract shared by the batched engine and PyBullet."""
from __future__ import annotations

from typing import Protocol

import numpy as np

from sim.forces import Effects
from sim.state import DroneParams, SwarmState
from sim.world import Collisions, World


class Physics(Protocol):
    """Integrates E environments of N quadrotors under motor thrust commands.

    ``step`` advances one physics step of ``dt_s`` seconds: the motors follow ``cmd_n`` (E, N, 4)
    through their first-order lag, then the rigid bodies move under thrust, drag torque, the
    enabled :class:`Effects`, gravity and contacts.
    """

    dt_s: float
    effects: Effects

    def reset(self, state: SwarmState, params: DroneParams, world: World) -> None:
        """Build the world and place the drones of every environment."""

    def step(self, cmd_n: np.ndarray) -> None: ...

    def state(self) -> SwarmState: ...

    def collisions(self) -> Collisions: ...
