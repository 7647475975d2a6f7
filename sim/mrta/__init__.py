"""Multi-robot task allocation with dynamic coalitions (issue #6; REFERENCE.md section 7).

One module per job: :mod:`~sim.mrta.config` (the world's parameters and presets),
:mod:`~sim.mrta.tasks` (the task table: spawn, respawn, arrivals), :mod:`~sim.mrta.coalition`
(the completion rule and the L^2 reward), :mod:`~sim.mrta.motion` (kinematic flight with a
separation rule), :mod:`swarm_rl.mrta.flight` (the same decisions flown on the simulated
drones), :mod:`~sim.mrta.intention` (planned paths, message checks), :mod:`~sim.mrta.observation`
(the one observation function), :mod:`~sim.mrta.env` (the batched decision-level
environment), :mod:`~sim.mrta.allocators` (greedy and market baselines) and
:mod:`~sim.mrta.decide` (what a robot node calls). Numpy only: no torch, no pybullet.
"""
