"""The world: Crazyflie model, physics engines, scenarios, sensing and rewards.

Import direction: ``sim`` imports numpy (and pybullet only inside ``sim.pybullet_physics``),
never torch and never ``swarm_rl`` or ``ros_nodes``.
"""
