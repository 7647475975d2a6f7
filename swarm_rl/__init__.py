"""swarm_rl: multi-agent RL control stack for Crazyflie quadrotor swarms.

Learning, the policy runtime and the ``swarm-rl`` command line live here; the simulated world
(physics, scenarios, sensing) lives in the sibling package ``sim``.
"""

__version__ = "0.1.0"
