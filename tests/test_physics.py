"""Physics tests: the batched (numba) engine against the PyBullet reference, and both against
closed-form results (hover, free fall, torque signs, motor lag, gyroscopic precession),
collision flags on hand-placed drones, and the simulated velocity controller.

Everything is deterministic (fixed seeds, no timing). Frames: world ENU, body FLU, ``rot`` maps
body to world, ``omega`` is body-frame. Motors (sim/crazyflie.py): M1 front-right, M2
back-right, M3 back-left, M4 front-left; M1 and M3 spin clockwise.
"""
from __future__ import annotations

import numpy as np
import pytest

from sim.batched_physics import BatchedPhysics
from sim.controller import VelocityController, VelocityGains
from sim.crazyflie import CF2X, GRAVITY_MPS2
from sim.forces import Effects, body_wrench, mixer, motor_lag
from sim.pybullet_physics import PyBulletPhysics
from sim.state import DroneParams, SwarmState
from sim.world import World

DT = 1.0 / 200.0
ONE_SECOND = 200
G = GRAVITY_MPS2
HOVER = CF2X.hover_thrust_per_motor_n
NO_EFFECTS = Effects(drag=False, ground_effect=False, downwash=False)
AGREEMENT_EFFECTS = Effects(drag=True, ground_effect=True, downwash=False)
ENGINES = ["batched", "pybullet"]


@pytest.fixture
def make_engine():
    """Factory ``make_engine(kind, E, N, effects)``; PyBullet clients are closed at teardown."""
    made = []

    def make(kind: str, num_envs: int, num_drones: int, effects: Effects):
        cls = {"batched": BatchedPhysics, "pybullet": PyBulletPhysics}[kind]
        engine = cls(num_envs, num_drones, DT, effects)
        made.append(engine)
        return engine

    yield make
    for engine in made:
        if isinstance(engine, PyBulletPhysics):
            engine.close()


def simulate(engine, state: SwarmState, params: DroneParams, world: World, cmds) -> dict:
    """Reset ``engine`` to ``state`` and apply each (E, N, 4) command; the state after every
    step, stacked along a leading time axis."""
    engine.reset(state.copy(), params, world)
    keys = ("pos", "vel", "rot", "omega", "thrust")
    out = {k: [] for k in keys}
    for cmd in cmds:
        engine.step(np.array(cmd, dtype=float))
        s = engine.state()
        for k in keys:
            out[k].append(np.array(getattr(s, k), dtype=float, copy=True))
    return {k: np.stack(v) for k, v in out.items()}


def hold(cmd: np.ndarray, steps: int) -> list[np.ndarray]:
    return [cmd] * steps


def record_controller_commands(state, params, world, effects, setpoints, steps):
    """Close the loop with :class:`VelocityController` on the *batched* engine and record the
    motor commands it sends; ``setpoints(k)`` gives (vel_sp (E, N, 3), yaw_rate_sp (E, N))."""
    shape = state.pos.shape[:-1]
    engine = BatchedPhysics(*shape, DT, effects)
    engine.reset(state.copy(), params, world)
    ctl = VelocityController(params.model, shape, DT)
    ctl.reset(state.rot)
    cmds = []
    for k in range(steps):
        s = engine.state()
        vel_sp, yaw_rate_sp = setpoints(k)
        cmd = ctl(s.vel, s.rot, s.omega, vel_sp, yaw_rate_sp)
        cmds.append(cmd.copy())
        engine.step(cmd)
    return cmds


def rotation_exp(phi) -> np.ndarray:
    """Rotation matrices (..., 3, 3) of rotation vectors (..., 3) (Rodrigues), for test setup."""
    phi = np.asarray(phi, dtype=float)
    theta = np.linalg.norm(phi, axis=-1)[..., None, None]
    k = np.zeros(phi.shape + (3,))
    k[..., 0, 1], k[..., 0, 2], k[..., 1, 2] = -phi[..., 2], phi[..., 1], -phi[..., 0]
    k = k - np.swapaxes(k, -1, -2)
    safe = np.where(theta > 0, theta, 1.0)
    return (np.eye(3) + np.sin(safe) / safe * k
            + (1 - np.cos(safe)) / safe ** 2 * (k @ k))


def tilt_deg(rot: np.ndarray) -> np.ndarray:
    """Angle between body z and world z (degrees)."""
    return np.degrees(np.arccos(np.clip(rot[..., 2, 2], -1.0, 1.0)))


# --------------------------------------------------------------------------------------------
# 1. Engine agreement
# --------------------------------------------------------------------------------------------

def _case_hover():
    """Open-loop hover thrust, three drones: one low enough that ground effect lifts it, one
    rolled 5 degrees (slides sideways, so drag acts, and its rotors are at different heights
    in ground effect), one yawed and spinning slowly."""
    pos = np.array([[[0.0, 0.0, 0.15], [1.5, -1.0, 0.3], [-1.5, 1.2, 2.0]]])
    params = DroneParams.nominal(CF2X, (1, 3))
    state = SwarmState.hovering(pos, params)
    state.rot[0, 1] = rotation_exp(np.array([np.radians(5.0), 0.0, 0.0]))
    state.rot[0, 2] = rotation_exp(np.array([0.0, np.radians(-3.0), 0.7]))
    state.omega[0, 2] = [0.0, 0.0, 0.5]
    world = World.empty((10, 10, 4), 1)
    cmds = hold(np.full((1, 3, 4), HOVER), ONE_SECOND)
    return state, params, world, AGREEMENT_EFFECTS, cmds


def _aggressive_setpoints(shape, seed=3):
    """Velocity steps of 1.8 m/s in a new direction every 0.25 s, yaw rate +-2 rad/s."""
    rng = np.random.default_rng(seed)
    segments = []
    for _ in range(4):
        d = rng.normal(size=shape + (3,))
        d[..., 2] *= 0.3
        segments.append(1.8 * d / np.linalg.norm(d, axis=-1, keepdims=True))
    yaw_rate = 2.0 * np.where(np.arange(shape[-1]) % 2 == 0, 1.0, -1.0) * np.ones(shape)
    return lambda k: (segments[min(k // 50, 3)], yaw_rate)


def _case_aggressive():
    """Two environments of two drones with randomised mass, thrust and motor lag, slightly
    tilted and yawed, moving; commands recorded from the controller on the batched engine."""
    shape = (2, 2)
    pos = np.array([[[0.0, 0.0, 1.5], [2.0, 1.0, 2.0]], [[-2.0, -1.0, 1.8], [1.0, -2.0, 2.2]]])
    params = DroneParams.randomised(CF2X, shape, np.random.default_rng(11), 0.1, 0.1, 0.2)
    state = SwarmState.hovering(pos, params)
    state.rot = rotation_exp(np.array([[[0.05, -0.03, 0.4], [0.0, 0.0, -1.2]],
                                       [[-0.04, 0.06, 2.0], [0.02, 0.02, 0.0]]]))
    state.vel[0, 0] = [0.3, -0.2, 0.1]
    state.omega[1, 0] = [0.4, -0.3, 0.6]
    world = World.empty((10, 10, 4), 2)
    cmds = record_controller_commands(state, params, world, AGREEMENT_EFFECTS,
                                      _aggressive_setpoints(shape), ONE_SECOND)
    return state, params, world, AGREEMENT_EFFECTS, cmds


def _case_stacked(commands: str):
    """Two drones stacked 0.5 m apart (0.05 m horizontal offset) with downwash on; either open
    loop hover thrust (the lower one sinks fast) or the controller holding position (recorded
    on the batched engine, downwash on)."""
    pos = np.array([[[0.0, 0.0, 2.5], [0.05, 0.0, 3.0]]])
    params = DroneParams.nominal(CF2X, (1, 2))
    state = SwarmState.hovering(pos, params)
    world = World.empty((10, 10, 4), 1)
    effects = Effects(drag=True, ground_effect=True, downwash=True)
    if commands == "hover":
        cmds = hold(np.full((1, 2, 4), HOVER), ONE_SECOND)
    else:
        zero = (np.zeros((1, 2, 3)), np.zeros((1, 2)))
        cmds = record_controller_commands(state, params, world, effects, lambda k: zero,
                                          ONE_SECOND)
    return state, params, world, effects, cmds


CASES = {
    "hover": _case_hover,
    "aggressive": _case_aggressive,
    "downwash-stacked-hover": lambda: _case_stacked("hover"),
    "downwash-stacked-hold": lambda: _case_stacked("hold"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_engines_agree(case, make_engine):
    state, params, world, effects, cmds = CASES[case]()
    shape = state.pos.shape[:-1]
    batched, pybullet = make_engine("batched", *shape, effects), make_engine("pybullet", *shape,
                                                                             effects)
    a = simulate(batched, state, params, world, cmds)
    b = simulate(pybullet, state, params, world, cmds)

    # Over the whole second (so also "after 1 s"). The requirement: positions within 1 cm,
    # attitude within 1e-3 per rotation-matrix entry, velocities within 1 cm/s, body rates
    # within 0.01 rad/s.
    dpos = np.abs(a["pos"] - b["pos"]).max()
    drot = np.abs(a["rot"] - b["rot"]).max()
    dvel = np.abs(a["vel"] - b["vel"]).max()
    domega = np.abs(a["omega"] - b["omega"]).max()
    assert dpos < 0.01 and drot < 1e-3 and dvel < 0.01 and domega < 0.01
    # Measured: about 1e-14 everywhere, because Bullet integrates a free multibody with the same
    # semi-implicit Euler, exponential-map rotation and explicit gyroscopic term as the batched
    # engine; only rounding differs. The loose bounds above would miss small modelling errors
    # (explicit Euler shifts positions by dt * dv, about 1 cm here; ground effect computed
    # without tilt, about 1e-5 m), so the engines are also held to 1e-6. If a deliberate change
    # of integrator in one engine breaks this, the requirement above is what must still hold.
    assert dpos < 1e-6 and drot < 1e-6 and dvel < 1e-6 and domega < 1e-5
    np.testing.assert_allclose(a["thrust"], b["thrust"], rtol=0, atol=1e-12)

    # Free flight only (contacts are compared elsewhere): nothing touched anything.
    assert a["pos"][..., 2].min() > 0.1
    assert not batched.collisions().any.any() and not pybullet.collisions().any.any()

    # The case must exercise what it claims to, or agreement would be trivial.
    if case == "hover":
        low, tilted = a["pos"][-1, 0, 0], a["pos"][-1, 0, 1]
        assert low[2] - 0.15 > 0.02, "ground effect should lift the drone at 0.15 m"
        assert abs(tilted[1] - (-1.0)) > 0.2, "the 5-degree roll should make it slide"
    elif case == "aggressive":
        for traj in (a, b):
            assert tilt_deg(traj["rot"]).max() > 20.0
            assert np.linalg.norm(traj["vel"], axis=-1).max() > 1.0
            assert np.abs(traj["omega"]).max() > 2.0
            assert traj["pos"][..., 2].min() > 0.5
    else:
        # Same commands without downwash: the lower drone must end clearly higher, the upper
        # one (nothing above it) must not care.
        # First step: the lower drone starts at rest under hover thrust, so its acceleration is
        # the downwash of the drone 0.5 m above, 0.05 m aside (gym-pybullet-drones' fit,
        # b clipped at 0.05 m): Fz = -c1 (r / (4 dz))^2 exp(-0.5 (dxy / b)^2) = -0.18 N.
        c1, c2, c3 = CF2X.downwash_coeffs
        dz, dxy = 0.5, 0.05
        b_width = max(abs(c2 * dz + c3), 0.05)
        fz = -c1 * (CF2X.prop_radius_m / (4 * dz)) ** 2 * np.exp(-0.5 * (dxy / b_width) ** 2)
        for traj in (a, b):
            assert traj["vel"][0, 0, 0, 2] == pytest.approx(fz / CF2X.mass_kg * DT, rel=1e-3)
            assert abs(traj["vel"][0, 0, 1, 2]) < 1e-5  # ground effect at 3 m: 2e-6
        no_dw = Effects(drag=True, ground_effect=True, downwash=False)
        c = simulate(make_engine("batched", *shape, no_dw), state, params, world, cmds)
        assert c["pos"][-1, 0, 0, 2] - a["pos"][-1, 0, 0, 2] > 0.3
        assert abs(c["pos"][-1, 0, 1, 2] - a["pos"][-1, 0, 1, 2]) < 1e-9


@pytest.mark.parametrize("engine", ENGINES)
def test_reset_copies_the_state(engine, make_engine):
    """Regression: stepping must not write into the SwarmState passed to reset (the batched
    engine once kept views of the caller's arrays, so re-using an initial state replayed from
    wherever the last run ended)."""
    params = DroneParams.nominal(CF2X, (1, 2))
    state = SwarmState.hovering(np.array([[[0.0, 0.0, 1.0], [1.0, 0.0, 1.0]]]), params)
    before = state.copy()
    eng = make_engine(engine, 1, 2, NO_EFFECTS)
    eng.reset(state, params, World.empty((10, 10, 4), 1))
    for _ in range(10):
        eng.step(np.zeros((1, 2, 4)))
    assert eng.state().pos[0, 0, 2] < 1.0
    for k in ("pos", "vel", "rot", "omega", "thrust"):
        np.testing.assert_array_equal(getattr(state, k), getattr(before, k), err_msg=k)


# --------------------------------------------------------------------------------------------
# 2. Hover and 3. free fall
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("engine", ENGINES)
def test_hover_thrust_holds_position(engine, make_engine):
    params = DroneParams.nominal(CF2X, (1, 1))
    state = SwarmState.hovering(np.array([[[0.3, -0.2, 1.0]]]), params)
    np.testing.assert_allclose(state.thrust, HOVER)
    out = simulate(make_engine(engine, 1, 1, NO_EFFECTS), state, params, World.empty(
        (10, 10, 4), 1), hold(np.full((1, 1, 4), HOVER), ONE_SECOND))
    assert np.abs(out["pos"] - state.pos).max() < 1e-6
    assert np.abs(out["vel"]).max() < 1e-6
    assert np.abs(out["rot"][-1] - np.eye(3)).max() < 1e-9


@pytest.mark.parametrize("engine", ENGINES)
def test_heavier_drone_sinks_on_nominal_hover_thrust(engine, make_engine):
    nominal = DroneParams.nominal(CF2X, (1, 1))
    heavy = DroneParams(CF2X, nominal.mass_kg * 1.2, nominal.max_thrust_n, nominal.motor_tau_s)
    state = SwarmState.hovering(np.array([[[0.0, 0.0, 2.0]]]), nominal)  # nominal hover thrust
    out = simulate(make_engine(engine, 1, 1, NO_EFFECTS), state, heavy,
                   World.empty((10, 10, 4), 1), hold(np.full((1, 1, 4), HOVER), ONE_SECOND))
    # a = (m g) / (1.2 m) - g = -g / 6; semi-implicit Euler drop after n steps: a dt^2 n(n+1)/2.
    n = ONE_SECOND
    expected_drop = G / 6.0 * DT ** 2 * n * (n + 1) / 2.0
    drop = 2.0 - out["pos"][-1, 0, 0, 2]
    assert drop == pytest.approx(expected_drop, rel=1e-6)
    assert drop > 0.8
    assert out["vel"][-1, 0, 0, 2] == pytest.approx(-G / 6.0, rel=1e-6)


@pytest.mark.parametrize("engine", ENGINES)
def test_free_fall(engine, make_engine):
    params = DroneParams.nominal(CF2X, (1, 1))
    state = SwarmState.hovering(np.array([[[0.0, 0.0, 2.0]]]), params)
    state.thrust[:] = 0.0
    n = 100
    t = n * DT
    out = simulate(make_engine(engine, 1, 1, NO_EFFECTS), state, params,
                   World.empty((10, 10, 4), 1), hold(np.zeros((1, 1, 4)), n))
    drop = 2.0 - out["pos"][-1, 0, 0, 2]
    # Semi-implicit Euler (v first, then x with the new v) gives exactly
    # g dt^2 n (n + 1) / 2 = 0.5 g t^2 (1 + dt / t): the relative error against the continuous
    # 0.5 g t^2 is dt / t = 1 % here (0.005 / 0.5). Explicit Euler would give -1 %.
    assert drop == pytest.approx(G * DT ** 2 * n * (n + 1) / 2.0, rel=1e-9)
    assert abs(drop / (0.5 * G * t ** 2) - 1.0) <= DT / t + 1e-9
    assert out["vel"][-1, 0, 0, 2] == pytest.approx(-G * t, rel=1e-9)
    assert np.abs(out["pos"][-1, 0, 0, :2]).max() < 1e-9
    assert np.abs(out["omega"]).max() < 1e-9


# --------------------------------------------------------------------------------------------
# 4. Torque signs (and magnitudes)
# --------------------------------------------------------------------------------------------
#
# sim.forces.body_wrench: torque = sum_i r_i x (0, 0, T_i) + yaw drag, with r_i = (x_i, y_i, 0)
# and a = arm / sqrt(2):  M1 (a, -a), M2 (-a, -a), M3 (-a, a), M4 (a, a).
#   r x F = (y T, -x T, 0), so
#   tau_x = a (-T1 - T2 + T3 + T4)   raising the left pair M3, M4 gives tau_x > 0: a positive
#            rotation about +x (forward) lifts +y (left) -- the drone rolls RIGHT, body x rate
#            > 0 (in FLU rolling right is a positive rate), and the tilted thrust pushes it
#            to -y (right).
#   tau_y = a (-T1 + T2 + T3 - T4)   raising the back pair M2, M3 gives tau_y > 0: a positive
#            rotation about +y (left) lowers +x -- NOSE DOWN, body y rate > 0, the drone
#            accelerates forward (+x).
#   tau_z = k (T1 - T2 + T3 - T4)    M1, M3 spin clockwise, their drag torque pushes the body
#            counter-clockwise: raising them gives a positive yaw rate.
# Each pattern's rate is about one principal axis, so there is no gyroscopic coupling and the
# rate is exactly (torque per delta) * delta / I * dt * sum_k (1 - (1 - alpha)^k) with the motor
# lag factor alpha = 1 - exp(-dt / tau): asserted to 1e-6 relative.

A = CF2X.arm_m / np.sqrt(2.0)
K = CF2X.yaw_torque_per_thrust_m
IXX, IYY, IZZ = CF2X.inertia_kgm2
PATTERNS = {
    # name: (per-motor sign of the thrust change, axis, torque per unit delta, inertia, dur, frac)
    "yaw-ccw": ([1, -1, 1, -1], 2, 4 * K, IZZ, 0.3, 0.1),
    "yaw-cw": ([-1, 1, -1, 1], 2, -4 * K, IZZ, 0.3, 0.1),
    "roll-right": ([-1, -1, 1, 1], 0, 4 * A, IXX, 0.15, 0.02),
    "roll-left": ([1, 1, -1, -1], 0, -4 * A, IXX, 0.15, 0.02),
    "pitch-nose-down": ([-1, 1, 1, -1], 1, 4 * A, IYY, 0.15, 0.02),
    "pitch-nose-up": ([1, -1, -1, 1], 1, -4 * A, IYY, 0.15, 0.02),
}


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("pattern", list(PATTERNS))
def test_torque_signs(pattern, engine, make_engine):
    signs, axis, torque_per_delta, inertia, duration, frac = PATTERNS[pattern]
    params = DroneParams.nominal(CF2X, (1, 1))
    state = SwarmState.hovering(np.array([[[0.0, 0.0, 1.5]]]), params)
    delta = frac * HOVER
    n = round(duration / DT)
    cmd = HOVER + delta * np.array(signs, dtype=float)[None, None, :]
    out = simulate(make_engine(engine, 1, 1, NO_EFFECTS), state, params,
                   World.empty((10, 10, 4), 1), hold(cmd, n))
    omega = out["omega"][-1, 0, 0]
    rot = out["rot"][-1, 0, 0]

    decay = np.exp(-DT / CF2X.motor_tau_s)
    lag_sum = sum(1.0 - decay ** k for k in range(1, n + 1))
    expected = torque_per_delta * delta / inertia * DT * lag_sum
    assert omega[axis] == pytest.approx(expected, rel=1e-6)
    assert abs(expected) > 1.0  # a clear rotation, not noise
    others = [i for i in range(3) if i != axis]
    assert np.abs(omega[others]).max() < 1e-6

    vel, z = out["vel"][-1, 0, 0], out["pos"][-1, 0, 0, 2]
    if pattern.startswith("yaw"):
        yaw = np.arctan2(rot[1, 0], rot[0, 0])
        assert np.sign(yaw) == np.sign(expected)  # counter-clockwise from above is +yaw
        assert abs(z - 1.5) < 3e-3  # collective unchanged: altitude holds
        assert tilt_deg(rot) < 1e-3
    elif pattern == "roll-right":
        assert omega[0] > 0 and rot[2, 1] > 0 and vel[1] < 0  # left side up, slides right
    elif pattern == "roll-left":
        assert omega[0] < 0 and rot[2, 1] < 0 and vel[1] > 0
    elif pattern == "pitch-nose-down":
        assert omega[1] > 0 and rot[2, 0] < 0 and vel[0] > 0  # nose down, accelerates forward
    elif pattern == "pitch-nose-up":
        assert omega[1] < 0 and rot[2, 0] > 0 and vel[0] < 0


def test_mixer_inverts_body_wrench():
    """The mixer (forces.mix_one, which the controller kernel calls) must produce exactly the
    wrench it asks for (a sign slip in one motor's row is otherwise absorbed by the feedback
    loops and goes unnoticed)."""
    rng = np.random.default_rng(5)
    collective = rng.uniform(0.1, 0.5, size=(64,))
    torque = rng.normal(scale=[1e-3, 1e-3, 3e-4], size=(64, 3))
    got_collective, got_torque = body_wrench(mixer(collective, torque, CF2X), CF2X)
    np.testing.assert_allclose(got_collective, collective, rtol=1e-12)
    np.testing.assert_allclose(got_torque, torque, rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(mixer(np.array(CF2X.weight_n), np.zeros(3), CF2X), HOVER)
    # A pure positive yaw torque raises the clockwise props M1, M3 (see the table above).
    yaw_only = mixer(np.array(0.0), np.array([0.0, 0.0, 1e-4]), CF2X)
    assert (np.sign(yaw_only) == [1, -1, 1, -1]).all()


@pytest.mark.parametrize("engine", ENGINES)
def test_gyroscopic_precession(engine, make_engine):
    """Torque-free (zero thrust, free fall) spin off the principal axes: Euler's equations for
    Ixx = Iyy = I give w_z constant and (w_x, w_y) turning counter-clockwise in the body frame at
    Omega = (Izz - I) / I * w_z. A missing or sign-flipped w x (I w) term fails this."""
    params = DroneParams.nominal(CF2X, (1, 1))
    state = SwarmState.hovering(np.array([[[0.0, 0.0, 3.0]]]), params)
    state.thrust[:] = 0.0
    state.omega[0, 0] = [3.0, -2.0, 5.0]
    n = 100
    out = simulate(make_engine(engine, 1, 1, NO_EFFECTS), state, params,
                   World.empty((10, 10, 4), 1), hold(np.zeros((1, 1, 4)), n))
    w = out["omega"][-1, 0, 0]
    big_omega = (IZZ - IXX) / IXX * 5.0
    turned = np.arctan2(w[1], w[0]) - np.arctan2(-2.0, 3.0)
    assert w[2] == pytest.approx(5.0, rel=1e-9)
    # Explicit Euler turns by atan(Omega dt) per step and grows |w_xy| by sqrt(1 + (Omega dt)^2)
    # per step (1 % over these 100 steps).
    assert turned == pytest.approx(n * np.arctan(big_omega * DT), rel=1e-6)
    assert turned == pytest.approx(big_omega * n * DT, rel=1e-3)
    assert np.hypot(w[0], w[1]) == pytest.approx(np.hypot(3.0, 2.0), rel=0.02)


# --------------------------------------------------------------------------------------------
# 5. Motor lag
# --------------------------------------------------------------------------------------------

def test_motor_lag_function():
    tau = np.array([0.04, 0.08])
    t0, t1 = HOVER, CF2X.max_thrust_per_motor_n
    thrust = np.full((2, 4), t0)
    cmd = np.full((2, 4), t1)
    steps_per_tau = round(0.04 / DT)  # 8
    for k in range(1, 3 * steps_per_tau + 1):
        thrust = motor_lag(thrust, cmd, tau, DT)
        if k == steps_per_tau:
            frac = (thrust - t0) / (t1 - t0)
            assert frac[0] == pytest.approx(1 - np.exp(-1), rel=1e-9)   # one tau
            assert frac[1] == pytest.approx(1 - np.exp(-0.5), rel=1e-9)  # half of tau = 0.08
    frac = (thrust - t0) / (t1 - t0)
    assert frac[0] == pytest.approx(1 - np.exp(-3), rel=1e-9)  # 95.0 % after 3 tau
    assert frac[1] == pytest.approx(1 - np.exp(-1.5), rel=1e-9)
    # The discretisation is exact, so one big step equals many small ones.
    one = motor_lag(np.full(4, t0), np.full(4, t1), 0.04, 0.04)
    assert (one - t0) / (t1 - t0) == pytest.approx(1 - np.exp(-1), rel=1e-12)


@pytest.mark.parametrize("engine", ENGINES)
def test_motor_lag_in_engine(engine, make_engine):
    params = DroneParams.nominal(CF2X, (1, 2))
    params.motor_tau_s[0, 1] = 0.08
    state = SwarmState.hovering(np.array([[[0.0, 0.0, 1.0], [1.0, 1.0, 1.0]]]), params)
    t0, t1 = HOVER, CF2X.max_thrust_per_motor_n
    # Commanding twice the maximum is clipped to the maximum.
    out = simulate(make_engine(engine, 1, 2, NO_EFFECTS), state, params,
                   World.empty((10, 10, 4), 1), hold(np.full((1, 2, 4), 2 * t1), 24))
    frac = (out["thrust"][:, 0] - t0) / (t1 - t0)  # (steps, N, 4)
    assert np.allclose(frac[7, 0], 1 - np.exp(-1), atol=0.01 * (1 - np.exp(-1)))  # 63.2 %
    assert np.allclose(frac[23, 0], 1 - np.exp(-3), atol=0.01 * (1 - np.exp(-3)))  # 95.0 %
    assert np.allclose(frac[15, 1], 1 - np.exp(-1), atol=0.01 * (1 - np.exp(-1)))  # tau 0.08
    assert np.allclose(frac[7, 0], 0.6321205588, rtol=1e-9)
    assert (out["thrust"] <= t1 + 1e-15).all()
    assert out["vel"][-1, 0, :, 2].min() > 0.5  # and the extra thrust lifts the drones


# --------------------------------------------------------------------------------------------
# 6. Collisions
# --------------------------------------------------------------------------------------------
#
# Contact models:
#  * batched: sim.world.detect_collisions on the state after the step, with level collision
#    cylinders (radius r = 0.06, height h = 0.025): drones when axes < 2 r apart and centres
#    < h apart vertically; a column when the axis is < r from its surface; the floor when the
#    centre is at or below h / 2; a wall / the ceiling when the centre is at or within r (h / 2).
#    The floor, walls and ceiling stop the drone inelastically: it is clamped exactly onto that
#    limit and the inward velocity cancelled; drones and columns are passed through.
#  * PyBullet: Bullet's contact points (distance <= 0) between the (tilting) drone cylinder and
#    the floor, wall and ceiling boxes and column cylinders, found in the collision pass of
#    stepSimulation, i.e. for the poses at the start of the step; contacts are resolved
#    (the drone bounces off a wall, rests on the floor).
# For the hand-placed, level drones below both give the same flags after one hover step.

COLLISION_WORLD = {"room_size_m": (4, 4, 3), "obstacle_xy": np.array([[[1.0, 1.0]]]),
                   "obstacle_mask": np.array([[True]]), "obstacle_radius_m": 0.1}
PLACED = {
    # name: (position, expected flag or None)
    "pair-a": ([-1.0, 0.0, 1.0], "drone"),          # 0.10 m apart horizontally: 2 r = 0.12
    "pair-b": ([-0.9, 0.0, 1.0], "drone"),
    "apart-a": ([0.0, -1.0, 1.0], None),            # 0.5 m apart
    "apart-b": ([0.5, -1.0, 1.0], None),
    "above-a": ([-1.0, -1.5, 1.5], None),           # 0.10 m apart, but 0.05 m > h vertically
    "above-b": ([-0.9, -1.5, 1.55], None),
    "column": ([1.0, 1.0 + 0.1 + 0.05, 1.0], "obstacle"),  # 0.05 m from the column surface
    "near-column": ([1.0, 1.0 - 0.1 - 0.08, 1.0], None),   # 0.08 m > r from it
    "floor": ([-1.0, 1.0, 0.01], "floor"),         # centre below h / 2 = 0.0125
    "low": ([0.0, 1.0, 0.05], None),
    "wall": ([2.0 - 0.03, -1.5, 1.0], "wall"),     # 0.03 m from the +x wall
    "near-wall": ([0.0, -2.0 + 0.08, 1.0], None),  # 0.08 m from the -y wall
    "ceiling": ([-1.5, 1.5, 3.0 - 0.01], "wall"),  # ceiling counts as wall
    "free": ([0.0, 1.0, 1.5], None),
}


@pytest.mark.parametrize("engine", ENGINES)
def test_collision_flags_hand_placed(engine, make_engine):
    names = list(PLACED)
    pos = np.array([[PLACED[k][0] for k in names]], dtype=float)
    n = len(names)
    params = DroneParams.nominal(CF2X, (1, n))
    state = SwarmState.hovering(pos, params)
    eng = make_engine(engine, 1, n, NO_EFFECTS)
    eng.reset(state, params, World(**COLLISION_WORLD))
    eng.step(state.thrust.copy())
    flags = eng.collisions()
    for kind in ("drone", "obstacle", "floor", "wall"):
        got = getattr(flags, kind)[0]
        want = np.array([PLACED[k][1] == kind for k in names])
        assert (got == want).all(), f"{kind}: flagged {[k for k, g in zip(names, got) if g]}"


@pytest.mark.parametrize("engine", ENGINES)
def test_collision_flags_when_flying_into_wall_and_landing(engine, make_engine):
    """Regression: the batched engine clamps a drone exactly onto the wall/floor limit, and
    detect_collisions used strict inequalities, so a drone that flew into a wall or landed was
    never flagged. Drone 0 flies at 1 m/s into the +x wall, drone 1 drops 0.3 m (no thrust)."""
    params = DroneParams.nominal(CF2X, (1, 2))
    state = SwarmState.hovering(np.array([[[1.85, 0.0, 1.0], [0.0, 0.0, 0.3]]]), params)
    state.vel[0, 0] = [1.0, 0.0, 0.0]
    state.thrust[0, 1] = 0.0
    cmd = state.thrust.copy()
    eng = make_engine(engine, 1, 2, NO_EFFECTS)
    eng.reset(state, params, World.empty((4, 4, 3), 1))
    wall, floor = [], []
    for _ in range(100):
        eng.step(cmd)
        c = eng.collisions()
        wall.append(c.wall[0, 0])
        floor.append(c.floor[0, 1])
        assert not c.drone.any() and not c.obstacle.any()
        assert not c.floor[0, 0] and not c.wall[0, 1]
    wall, floor = np.array(wall), np.array(floor)
    # The wall is 0.09 m away (18 steps at 1 m/s); the drop of 0.2875 m takes 49 steps.
    assert not wall[:15].any() and wall[15:25].any()
    assert not floor[:45].any() and floor[45:55].any()
    # Landed with no thrust, it stays down and stays flagged in both contact models.
    assert floor[60:].all()
    if engine == "batched":
        assert wall[25:].all()  # held against the wall by the inelastic clamp


# --------------------------------------------------------------------------------------------
# 7. Velocity controller (batched engine)
# --------------------------------------------------------------------------------------------

def _fly(params, pos, setpoints, steps, effects=AGREEMENT_EFFECTS):
    shape = params.mass_kg.shape
    state = SwarmState.hovering(np.asarray(pos, dtype=float), params)
    state.thrust[:] = HOVER  # the real motors start at the nominal hover thrust
    world = World.empty((30, 30, 8), shape[0])
    cmds = record_controller_commands(state, params, world, effects, setpoints, steps)
    return simulate(BatchedPhysics(*shape, DT, effects), state, params, world, cmds)


def test_controller_tracks_velocity_steps():
    params = DroneParams.nominal(CF2X, (1, 1))
    x_step = np.array([[[1.0, 0.0, 0.0]]])
    z_step = np.array([[[0.0, 0.0, 0.5]]])
    yaw0 = np.zeros((1, 1))
    steps = 300  # 1.5 s per setpoint
    out = _fly(params, [[[0.0, 0.0, 2.0]]],
               lambda k: (x_step if k < steps else z_step, yaw0), 2 * steps)
    vel = out["vel"][:, 0, 0]
    assert np.abs(vel[steps - 1] - x_step[0, 0]).max() < 0.1
    assert np.abs(vel[2 * steps - 1] - z_step[0, 0]).max() < 0.1
    # It really moved: about 1 m forward in the first phase, up in the second.
    assert out["pos"][steps - 1, 0, 0, 0] > 0.8
    assert out["pos"][-1, 0, 0, 2] - out["pos"][steps - 1, 0, 0, 2] > 0.4


def test_controller_tracks_yaw_rate():
    params = DroneParams.nominal(CF2X, (1, 1))
    rate = 1.5
    steps = 400
    out = _fly(params, [[[0.0, 0.0, 2.0]]],
               lambda k: (np.zeros((1, 1, 3)), np.full((1, 1), rate)), steps)
    rot = out["rot"][:, 0, 0]
    yaw = np.unwrap(np.arctan2(rot[:, 1, 0], rot[:, 0, 0]))
    late = slice(steps // 2, steps)  # steady state: the last second
    yaw_rate = np.diff(yaw[late]) / DT
    assert np.abs(yaw_rate - rate).max() < 0.05
    assert np.abs(out["omega"][late, 0, 0, 2] - rate).max() < 0.05
    assert np.abs(out["vel"][late]).max() < 0.05  # and it yaws in place


def test_controller_holds_altitude_with_heavier_drone():
    """The controller thinks the drone has the nominal mass m; it weighs 1.1 m. Level, its
    vertical acceleration is a_cmd / 1.1 - g (1 - 1 / 1.1), with a_cmd = -kp vz - ki int(vz):
    a step disturbance d = -g / 11 through the PI loop, so
        vz(t) = d / (p1 - p2) (exp(p1 t) - exp(p2 t)),  p1,2 roots of s^2 + kp/1.1 s + ki/1.1.
    Asserted: the response follows this prediction to 0.015 m/s (the 0.04 s motor lag, left
    out of the prediction, adds up to 0.01 m/s of sink), |vz| < 0.05 m/s after 3 s and
    < 0.025 m/s after 5 s."""
    nominal = DroneParams.nominal(CF2X, (1, 1))
    heavy = DroneParams(CF2X, nominal.mass_kg * 1.1, nominal.max_thrust_n, nominal.motor_tau_s)
    steps = 5 * ONE_SECOND
    out = _fly(heavy, [[[0.0, 0.0, 2.0]]],
               lambda k: (np.zeros((1, 1, 3)), np.zeros((1, 1))), steps)
    vz = out["vel"][:, 0, 0, 2]
    gains = VelocityGains()
    p1, p2 = np.roots([1.0, gains.vel_p / 1.1, gains.vel_i / 1.1])
    d = -G * (1.0 - 1.0 / 1.1)
    t = DT * np.arange(1, steps + 1)
    predicted = d / (p1 - p2) * (np.exp(p1 * t) - np.exp(p2 * t))
    assert np.abs(vz - predicted).max() < 0.015
    assert vz.min() < -0.1  # the mass error is felt ...
    assert abs(vz[3 * ONE_SECOND - 1]) < 0.05  # ... and absorbed by the integrator
    assert abs(vz[-1]) < 0.025
    # Collective thrust ends near the heavier drone's weight.
    total = out["thrust"][-1, 0, 0].sum()
    assert total == pytest.approx(heavy.mass_kg[0, 0] * G, rel=0.01)
