"""Deploy-side runtime: no torch, no pybullet."""
