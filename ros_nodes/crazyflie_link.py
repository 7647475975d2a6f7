"""One Crazyflie over cflib, with the safety logic a radio bridge needs; no ROS, no DDS.

A :class:`CrazyflieLink` owns one cflib ``Crazyflie`` (``radio://`` on hardware, ``udp://``
against the virtual Crazyflie) and one worker thread that connects (TOC cache on disk),
reconnects with exponential back-off after a link loss, and streams setpoints at a fixed rate:

- ``send_velocity_world`` stores the latest command; the worker sends it as a velocity-world
  setpoint every tick, clamped to ``max_speed_mps`` and by the :class:`Geofence`.
- Watchdog: once commands have started, ``hover_after_s`` (0.2 s) without one -> hold the
  position where the drone is (position setpoint), ``land_after_s`` (1 s) -> land.
- ``takeoff`` / ``land`` are position-setpoint ramps (smooth up, constant speed down), then a
  STOP setpoint on the ground; they need a position estimate, as the firmware's high-level
  commander does, and avoid mixing it with streamed setpoints.
- Low battery (filtered ``pm.vbat`` under ``battery_land_v`` for ``battery_low_hold_s``) ->
  land; takeoff is refused under ``battery_takeoff_min_v``.
- ``emergency_stop`` -> supervisor emergency stop + STOP setpoints; latched.
- Link lost (cflib reports it, or no log data for ``link_timeout_s``) -> reported through
  ``on_status``, then reconnect attempts at ``reconnect_initial_s`` doubling to
  ``reconnect_max_s``. After a reconnect an airborne drone hovers (and the watchdog lands it
  unless commands resume); a grounded one is idle.

State arrives as one 100 Hz log block (``stateEstimateZ`` position, velocity and compressed
quaternion, ``pm.vbat``, ``supervisor.info``: 22 bytes, one packet per sample) and is passed to
``on_state`` as a :class:`CrazyflieState` on cflib's receive thread: keep the callback short.
Frames: world ENU, metres, quaternions (x, y, z, w); times: ``stamp_s`` is host wall time
(``time.time()``) at reception, ``cf_time_ms`` the firmware's clock.
"""
from __future__ import annotations

import enum
import logging
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ros_nodes.geofence import Geofence

log = logging.getLogger(__name__)

STATE_LOG_VARIABLES = (
    ("stateEstimateZ.x", "int16_t"), ("stateEstimateZ.y", "int16_t"),
    ("stateEstimateZ.z", "int16_t"), ("stateEstimateZ.vx", "int16_t"),
    ("stateEstimateZ.vy", "int16_t"), ("stateEstimateZ.vz", "int16_t"),
    ("stateEstimateZ.quat", "uint32_t"), ("pm.vbat", "float"), ("supervisor.info", "uint16_t"),
)
SUPERVISOR_LOCKED_BIT = 6
DEFAULT_TOC_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) \
    / "swarm_rl" / "cflib_toc"

_drivers_lock = threading.Lock()
_drivers_ready = False


def init_cflib_drivers() -> None:
    """``cflib.crtp.init_drivers()`` once per process (it appends drivers on every call)."""
    global _drivers_ready
    with _drivers_lock:
        if not _drivers_ready:
            import cflib.crtp

            cflib.crtp.init_drivers()
            _drivers_ready = True


class LinkState(str, enum.Enum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    LOST = "lost"
    CLOSED = "closed"


class FlightMode(str, enum.Enum):
    IDLE = "idle"
    """On the ground, motors off (nothing streamed)."""
    TAKING_OFF = "taking_off"
    HOVERING = "hovering"
    """Holding a position: after takeoff, or when the watchdog fired."""
    FLYING = "flying"
    """Tracking ``send_velocity_world`` commands."""
    LANDING = "landing"
    EMERGENCY = "emergency"


@dataclass(frozen=True)
class CrazyflieLinkConfig:
    """Rates, limits and timeouts of one link. SI units."""

    setpoint_rate_hz: float = 50.0
    log_period_ms: int = 10
    max_speed_mps: float = 1.0
    """Norm limit of commanded velocities."""
    max_yaw_rate_rad_s: float = 1.5
    hover_after_s: float = 0.2
    land_after_s: float = 1.0
    land_speed_mps: float = 0.4
    landed_height_m: float = 0.05
    """A landing ends (motors stopped) once the estimate is below this height."""
    battery_land_v: float = 3.3
    """Loaded battery voltage under which an airborne drone lands."""
    battery_takeoff_min_v: float = 3.6
    battery_filter_s: float = 0.5
    """Time constant of the low-pass filter on pm.vbat."""
    battery_low_hold_s: float = 1.0
    link_timeout_s: float = 0.5
    """No log data for this long: the link is lost."""
    connect_timeout_s: float = 10.0
    """Whole connection set-up (an uncached TOC download over a radio takes seconds)."""
    first_answer_timeout_s: float = 0.5
    """Give up an attempt that got no packet at all back in this time."""
    reconnect_initial_s: float = 0.25
    reconnect_max_s: float = 4.0
    status_period_s: float = 0.5
    geofence: Geofence = field(default_factory=Geofence)
    toc_cache_dir: str | None = str(DEFAULT_TOC_CACHE)
    """cflib's TOC cache (None: no cache, every connect downloads the TOCs)."""

    def validate(self) -> None:
        positive = ("setpoint_rate_hz", "max_speed_mps", "max_yaw_rate_rad_s", "hover_after_s",
                    "land_after_s", "land_speed_mps", "battery_filter_s", "link_timeout_s",
                    "connect_timeout_s", "first_answer_timeout_s", "reconnect_initial_s",
                    "reconnect_max_s",
                    "status_period_s")
        for name in positive:
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name}: must be a number > 0, got {value!r}")
        if not 10 <= self.log_period_ms <= 2540:
            raise ValueError(f"log_period_ms: must be in 10..2540, got {self.log_period_ms}")
        if self.land_after_s <= self.hover_after_s:
            raise ValueError("land_after_s: must exceed hover_after_s")
        if self.reconnect_max_s < self.reconnect_initial_s:
            raise ValueError("reconnect_max_s: must be >= reconnect_initial_s")
        self.geofence.validate()


@dataclass(frozen=True)
class CrazyflieState:
    """One state sample of one drone (world ENU)."""

    name: str
    stamp_s: float
    cf_time_ms: int
    pos_m: tuple[float, float, float]
    vel_mps: tuple[float, float, float]
    quat_xyzw: tuple[float, float, float, float]
    vbat_v: float
    supervisor_info: int


@dataclass(frozen=True)
class LinkStatus:
    """Link and flight state of one drone, sent on every change and every status period."""

    name: str
    uri: str
    stamp_s: float
    link: LinkState
    mode: FlightMode
    battery_v: float | None
    """Filtered pm.vbat; None before the first sample."""
    low_battery: bool
    link_quality: float
    """Fraction of the expected log samples received over the last second (0..1)."""
    radio_link_quality: float | None
    """cflib's radio link quality (0..100), None on links that do not report it (udp)."""
    latency_ms: float | None
    log_rate_hz: float
    reconnects: int
    locked: bool
    """The firmware's supervisor reports the motors locked (emergency stop)."""
    message: str
    """Why the last change happened."""


def state_from_log(name: str, stamp_s: float, cf_time_ms: int, data: dict
                   ) -> CrazyflieState | None:
    """A :class:`CrazyflieState` from one sample of the state log block; None if a value is
    missing or not finite (a corrupted packet)."""
    from cflib.utils.encoding import decompress_quaternion

    try:
        raw = [float(data[n]) for n, _ in STATE_LOG_VARIABLES]
    except (KeyError, TypeError, ValueError):
        return None
    if not all(math.isfinite(v) for v in raw):
        return None
    pos = tuple(v / 1000.0 for v in raw[0:3])
    vel = tuple(v / 1000.0 for v in raw[3:6])
    with np.errstate(invalid="ignore"):  # a corrupted quaternion decodes to NaN
        q = decompress_quaternion(int(raw[6]) & 0xFFFFFFFF)
    norm = float(np.linalg.norm(q))
    if not math.isfinite(norm) or norm < 0.5:
        return None
    q = q / norm
    return CrazyflieState(name, stamp_s, int(cf_time_ms), pos, vel,
                          (float(q[0]), float(q[1]), float(q[2]), float(q[3])), raw[7],
                          int(raw[8]))


def smoothstep(s: float) -> float:
    """0..1 with zero slope at both ends (cubic)."""
    s = min(max(s, 0.0), 1.0)
    return s * s * (3.0 - 2.0 * s)


@dataclass
class _Ramp:
    """A position-setpoint ramp: x, y held, z from z0 to z1."""

    start_s: float
    duration_s: float
    xy: np.ndarray
    z0: float
    z1: float
    yaw_deg: float
    smooth: bool

    def at(self, now_s: float) -> tuple[np.ndarray, bool]:
        s = (now_s - self.start_s) / self.duration_s
        frac = smoothstep(s) if self.smooth else min(max(s, 0.0), 1.0)
        z = self.z0 + (self.z1 - self.z0) * frac
        return np.array([self.xy[0], self.xy[1], z]), s >= 1.0


class CrazyflieLink:
    """One drone's cflib link with watchdog, geofence, battery and link-loss handling.

    ``on_state(CrazyflieState)`` runs on cflib's receive thread for every log sample;
    ``on_status(LinkStatus)`` runs on the link's worker thread within one setpoint period of
    every change of link state or flight mode, and every ``status_period_s``. Both may be
    None; an exception in either is logged and swallowed.
    """

    def __init__(self, uri: str, name: str, config: CrazyflieLinkConfig = CrazyflieLinkConfig(),
                 on_state: Callable[[CrazyflieState], None] | None = None,
                 on_status: Callable[[LinkStatus], None] | None = None) -> None:
        config.validate()
        if not (uri.startswith("radio://") or uri.startswith("udp://")
                or uri.startswith("usb://")):
            raise ValueError(f"{name}: uri must be radio://, udp:// or usb://, got {uri!r}")
        self.uri, self.name, self.config = uri, name, config
        self.on_state, self.on_status = on_state, on_status
        self._lock = threading.RLock()
        self._closing = threading.Event()
        self._lost_event = threading.Event()
        self._thread: threading.Thread | None = None
        self._cf = None
        self.link = LinkState.CONNECTING
        self.mode = FlightMode.IDLE
        self._message = "starting"
        self._state: CrazyflieState | None = None
        self._last_log_s = 0.0
        self._log_times: deque[float] = deque()
        self._vbat_filtered: float | None = None
        self._low_since: float | None = None
        self._low_battery = False
        self._latency_ms: float | None = None
        self._radio_quality: float | None = None
        self._cmd: tuple[np.ndarray, float] | None = None
        self._cmd_s = -math.inf
        self._watchdog_armed = False
        self._hold: np.ndarray | None = None
        self._hold_yaw_deg = 0.0
        self._ramp: _Ramp | None = None
        self._ramp_done_s: float | None = None
        self._resume_pending = False
        self._closers: list[threading.Thread] = []
        self.reconnects = 0
        self.rejected_commands = 0
        self._last_status_s = -math.inf
        self._notified: tuple[LinkState, FlightMode] | None = None

    # --- public API -------------------------------------------------------------------------

    def start(self) -> "CrazyflieLink":
        """Start the worker thread: connect, then stream."""
        init_cflib_drivers()
        self._thread = threading.Thread(target=self._run, name=f"crazyflie-link-{self.name}",
                                        daemon=True)
        self._thread.start()
        return self

    def close(self, land_timeout_s: float = 10.0) -> None:
        """Land if airborne (waiting up to ``land_timeout_s``), then disconnect."""
        if self.mode in (FlightMode.TAKING_OFF, FlightMode.HOVERING, FlightMode.FLYING):
            self.land()
        deadline = time.monotonic() + land_timeout_s
        while self.mode == FlightMode.LANDING and self.link == LinkState.CONNECTED \
                and time.monotonic() < deadline:
            time.sleep(0.02)
        self._closing.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        self._disconnect()
        self._set(link=LinkState.CLOSED, message="closed")

    def __enter__(self) -> "CrazyflieLink":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def state(self) -> CrazyflieState | None:
        """The latest state sample."""
        return self._state

    def wait_connected(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.link == LinkState.CONNECTED and self._state is not None:
                return True
            time.sleep(0.01)
        return False

    def send_velocity_world(self, vel_mps, yaw_rate_rad_s: float = 0.0) -> bool:
        """Set the commanded velocity (world ENU, m/s) and yaw rate (rad/s, counter-clockwise).

        Streamed until replaced; the watchdog holds position ``hover_after_s`` after the last
        call. Accepted while hovering or flying; returns False (and counts it) otherwise: idle,
        taking off, landing, emergency, or link not connected. Raises ValueError for a
        non-finite or mis-shaped value.
        """
        v = np.asarray(vel_mps, dtype=float)
        if v.shape != (3,) or not np.isfinite(v).all() or not math.isfinite(yaw_rate_rad_s):
            raise ValueError(f"{self.name}: velocity command must be 3 finite numbers and a "
                             f"finite yaw rate, got {vel_mps!r}, {yaw_rate_rad_s!r}")
        with self._lock:
            if self.mode not in (FlightMode.HOVERING, FlightMode.FLYING) or \
                    self.link != LinkState.CONNECTED:
                self.rejected_commands += 1
                return False
            self._cmd = (v, float(yaw_rate_rad_s))
            self._cmd_s = time.monotonic()
            self._watchdog_armed = True
            if self.mode == FlightMode.HOVERING:
                self._set(mode=FlightMode.FLYING, message="velocity commands")
            return True

    def takeoff(self, height_m: float, duration_s: float) -> bool:
        """Rise to ``height_m`` (absolute, clamped into the geofence) over ``duration_s``, then
        hover. False if not connected, not idle, without a state, or the battery is low."""
        with self._lock:
            st = self._state
            if self.mode != FlightMode.IDLE or self.link != LinkState.CONNECTED or st is None:
                return False
            if not (math.isfinite(height_m) and math.isfinite(duration_s) and duration_s > 0):
                raise ValueError(f"{self.name}: takeoff needs a finite height and duration > 0")
            if self._vbat_filtered is not None and \
                    self._vbat_filtered < self.config.battery_takeoff_min_v:
                self._message = (f"takeoff refused: battery {self._vbat_filtered:.2f} V < "
                                 f"{self.config.battery_takeoff_min_v} V")
                return False
            fence = self.config.geofence
            pos = fence.clamp_position(np.array(st.pos_m))
            z1 = float(np.clip(height_m, fence.lower_m[2], fence.upper_m[2]))
            self._ramp = _Ramp(time.monotonic(), duration_s, pos[:2], float(st.pos_m[2]), z1,
                               _yaw_deg(st.quat_xyzw), smooth=True)
            self._watchdog_armed = False
            self._cmd = None
            self._set(mode=FlightMode.TAKING_OFF, message=f"takeoff to {z1:.2f} m")
            return True

    def land(self, reason: str = "land requested") -> bool:
        """Descend at ``land_speed_mps`` where the drone is, then stop the motors."""
        with self._lock:
            st = self._state
            if self.mode not in (FlightMode.TAKING_OFF, FlightMode.HOVERING,
                                 FlightMode.FLYING) or st is None:
                return False
            start = self._hold if self.mode == FlightMode.HOVERING and self._hold is not None \
                else np.array(st.pos_m)
            start = self.config.geofence.clamp_position(start)
            z0 = float(st.pos_m[2])
            self._ramp = _Ramp(time.monotonic(), max(z0, 0.05) / self.config.land_speed_mps,
                               start[:2], z0, 0.0, _yaw_deg(st.quat_xyzw), smooth=False)
            self._ramp_done_s = None
            self._set(mode=FlightMode.LANDING, message=reason)
            return True

    def emergency_stop(self) -> None:
        """Cut the motors now (supervisor emergency stop, then STOP setpoints); latched."""
        with self._lock:
            self._set(mode=FlightMode.EMERGENCY, message="emergency stop")
            cf = self._cf
        if cf is not None and self.link == LinkState.CONNECTED:
            try:
                cf.supervisor.send_emergency_stop()
                cf.commander.send_stop_setpoint()
            except Exception as exc:  # the link may have just gone; keep the latch
                log.warning("%s: emergency stop send failed: %s", self.name, exc)

    def clear_emergency(self) -> bool:
        """Leave EMERGENCY once the drone reports its motors unlocked (after a reboot)."""
        with self._lock:
            st = self._state
            if self.mode != FlightMode.EMERGENCY or st is None or \
                    st.supervisor_info >> SUPERVISOR_LOCKED_BIT & 1:
                return False
            self._set(mode=FlightMode.IDLE, message="emergency cleared")
            return True

    def status(self) -> LinkStatus:
        now = time.monotonic()
        with self._lock:
            times = self._log_times
            while times and times[0] < now - 1.0:
                times.popleft()
            rate = float(len(times))
            expected = 1000.0 / self.config.log_period_ms
            st = self._state
            return LinkStatus(
                self.name, self.uri, time.time(), self.link, self.mode, self._vbat_filtered,
                self._low_battery, min(rate / expected, 1.0), self._radio_quality,
                self._latency_ms, rate, self.reconnects,
                bool(st is not None and st.supervisor_info >> SUPERVISOR_LOCKED_BIT & 1),
                self._message)

    # --- worker -----------------------------------------------------------------------------

    def _set(self, link: LinkState | None = None, mode: FlightMode | None = None,
             message: str | None = None) -> None:
        with self._lock:
            if link is not None:
                self.link = link
            if mode is not None:
                self.mode = mode
            if message is not None:
                self._message = message
                log.info("%s: %s (%s, %s)", self.name, message, self.link.value,
                         self.mode.value)

    def _notify(self, force: bool = False) -> None:
        now = time.monotonic()
        key = (self.link, self.mode)
        if not force and key == self._notified and now - self._last_status_s < \
                self.config.status_period_s:
            return
        self._notified, self._last_status_s = key, now
        if self.on_status is not None:
            try:
                self.on_status(self.status())
            except Exception:
                log.exception("%s: on_status callback raised", self.name)

    def _run(self) -> None:
        backoff = self.config.reconnect_initial_s
        period = 1.0 / self.config.setpoint_rate_hz
        next_tick = time.monotonic()
        while not self._closing.is_set():
            if self.link != LinkState.CONNECTED:
                self._notify()
                try:
                    connected = self._connect()
                except Exception as exc:  # whatever cflib raises, the worker keeps trying
                    log.exception("%s: connect attempt raised", self.name)
                    self._message = f"connect failed: {exc}"
                    connected = False
                if connected:
                    backoff = self.config.reconnect_initial_s
                    next_tick = time.monotonic()
                else:
                    self._closing.wait(backoff)
                    backoff = min(2.0 * backoff, self.config.reconnect_max_s)
                self._notify()
                continue
            now = time.monotonic()
            if self._lost_event.is_set() or now - self._last_log_s > self.config.link_timeout_s:
                reason = "cflib reported the link lost" if self._lost_event.is_set() \
                    else f"no log data for {self.config.link_timeout_s:.1f} s"
                self._set(link=LinkState.LOST, message=f"link lost: {reason}")
                self._notify(force=True)
                self._disconnect(wait=False)
                continue
            try:
                self._tick(now)
            except Exception as exc:  # a send on a dying link; the loss check handles it
                log.warning("%s: setpoint send failed: %s", self.name, exc)
            self._notify()
            next_tick += period
            delay = next_tick - time.monotonic()
            if delay < -period:
                next_tick = time.monotonic()
            elif delay > 0:
                self._closing.wait(delay)

    def _connect(self) -> bool:
        from cflib.crazyflie import Crazyflie
        from cflib.crazyflie.log import LogConfig

        self._set(link=LinkState.CONNECTING if self.reconnects == 0 and self._state is None
                  else LinkState.LOST, message=f"connecting to {self.uri}")
        cache = self.config.toc_cache_dir
        if cache:
            # cflib creates a missing cache directory with a check-then-create race that
            # fails when several links start together; create it here first.
            os.makedirs(os.path.expanduser(cache), exist_ok=True)
            cache = os.path.expanduser(cache)
        cf = Crazyflie(rw_cache=cache) if cache else Crazyflie()
        done = threading.Event()
        result: dict[str, str | bool] = {}
        cf.connected.add_callback(lambda uri: (result.update(ok=True), done.set()))
        cf.connection_failed.add_callback(
            lambda uri, msg: (result.update(ok=False, msg=msg), done.set()))
        cf.connection_lost.add_callback(lambda uri, msg: self._lost_event.set())
        cf.link_statistics.latency_updated.add_callback(self._on_latency)
        cf.link_statistics.link_quality_updated.add_callback(self._on_radio_quality)
        answered = threading.Event()
        cf.link_established.add_callback(lambda uri: answered.set())
        self._lost_event.clear()
        t0 = time.monotonic()
        cf.open_link(self.uri)
        while not done.wait(0.02):
            waited = time.monotonic() - t0
            if waited > self.config.connect_timeout_s or self._closing.is_set() or (
                    not answered.is_set() and waited > self.config.first_answer_timeout_s):
                break
        if not result.get("ok"):
            msg = result.get("msg", "no answer" if not answered.is_set() else
                             f"not connected in {self.config.connect_timeout_s:.1f} s")
            self._message = f"connect failed: {str(msg).strip().splitlines()[0]}"
            threading.Thread(target=self._safe_close, args=(cf,), daemon=True).start()
            return False
        block = LogConfig("swarm_rl_state", self.config.log_period_ms)
        for var, ctype in STATE_LOG_VARIABLES:
            block.add_variable(var, ctype)
        try:
            cf.log.add_config(block)
            block.data_received_cb.add_callback(self._on_log)
            block.start()
        except (KeyError, AttributeError) as exc:
            self._message = f"connect failed: firmware lacks the state log variables ({exc})"
            self._safe_close(cf)
            return False
        with self._lock:
            self._cf = cf
            self._last_log_s = time.monotonic() + self.config.link_timeout_s  # grace
            was_lost = self._state is not None
            if was_lost:
                self.reconnects += 1
            # A battery may have been swapped (a reboot is a reconnect): judge it afresh.
            self._vbat_filtered, self._low_since, self._low_battery = None, None, False
            self._set(link=LinkState.CONNECTED,
                      message=f"connected in {time.monotonic() - t0:.2f} s")
            self._after_reconnect()
        return True

    def _after_reconnect(self) -> None:
        """Choose the flight mode for a fresh link from what the drone says (on next state)."""
        if self.mode in (FlightMode.TAKING_OFF, FlightMode.FLYING, FlightMode.LANDING,
                         FlightMode.HOVERING):
            self._resume_pending = True
        else:
            self._resume_pending = False

    def _resume(self, st: CrazyflieState) -> None:
        """First state after a reconnect: an airborne drone hovers where it is (the watchdog
        lands it unless commands resume); one on the ground is idle."""
        self._resume_pending = False
        if st.pos_m[2] > self.config.landed_height_m:
            self._hold = self.config.geofence.clamp_position(np.array(st.pos_m))
            self._hold_yaw_deg = _yaw_deg(st.quat_xyzw)
            self._cmd, self._cmd_s, self._watchdog_armed = None, time.monotonic(), True
            self._set(mode=FlightMode.HOVERING, message="reconnected airborne: holding")
        else:
            self._set(mode=FlightMode.IDLE, message="reconnected on the ground")

    @staticmethod
    def _safe_close(cf) -> None:
        """Close ``cf`` without cflib's parting zero-thrust setpoint: ``close_link`` sends
        one, which would cut the motors of a drone still in the air if the link were only
        flaky. So the driver is closed first, and ``close_link`` finds no link to send on."""
        driver, cf.link = cf.link, None
        try:
            if driver is not None:
                driver.close()
            cf.close_link()
        except Exception as exc:
            log.debug("close_link: %s", exc)

    def _disconnect(self, wait: bool = True) -> None:
        """Drop the current cflib object; closing it can block for a second (cflib joins
        its receive thread), so after a link loss it is closed in the background."""
        with self._lock:
            cf, self._cf = self._cf, None
        if cf is None:
            return
        closer = threading.Thread(target=self._safe_close, args=(cf,), daemon=True,
                                  name=f"crazyflie-close-{self.name}")
        closer.start()
        self._closers.append(closer)
        if wait:
            for t in self._closers:
                t.join(timeout=3.0)
            self._closers.clear()

    def _on_latency(self, latency_ms: float) -> None:
        self._latency_ms = float(latency_ms)

    def _on_radio_quality(self, quality: float) -> None:
        self._radio_quality = float(quality)

    def _on_log(self, cf_time_ms: int, data: dict, block) -> None:
        st = state_from_log(self.name, time.time(), cf_time_ms, data)
        now = time.monotonic()
        if st is None:
            return
        with self._lock:
            self._state = st
            self._last_log_s = now
            self._log_times.append(now)
            self._filter_battery(st.vbat_v, now)
            if self._resume_pending:
                self._resume(st)
        if self.on_state is not None:
            try:
                self.on_state(st)
            except Exception:
                log.exception("%s: on_state callback raised", self.name)

    def _filter_battery(self, vbat: float, now: float) -> None:
        if not 0.0 < vbat < 10.0:
            return
        dt = 1000.0 / self.config.log_period_ms
        alpha = 1.0 - math.exp(-1.0 / (dt * self.config.battery_filter_s))
        f = vbat if self._vbat_filtered is None else \
            self._vbat_filtered + alpha * (vbat - self._vbat_filtered)
        self._vbat_filtered = f
        if f < self.config.battery_land_v:
            self._low_since = now if self._low_since is None else self._low_since
            if now - self._low_since >= self.config.battery_low_hold_s:
                self._low_battery = True
        else:
            self._low_since = None

    def _tick(self, now: float) -> None:
        with self._lock:
            cf, st, mode = self._cf, self._state, self.mode
            if cf is None or st is None or self._resume_pending:
                return  # after a reconnect, nothing is sent before a fresh state decides
            if self._low_battery and mode in (FlightMode.TAKING_OFF, FlightMode.HOVERING,
                                              FlightMode.FLYING):
                self.land(reason=f"low battery ({self._vbat_filtered:.2f} V)")
                mode = self.mode
            if mode == FlightMode.FLYING and now - self._cmd_s > self.config.hover_after_s:
                self._hold = self.config.geofence.clamp_position(np.array(st.pos_m))
                self._hold_yaw_deg = _yaw_deg(st.quat_xyzw)
                self._set(mode=FlightMode.HOVERING,
                          message=f"watchdog: no command for {self.config.hover_after_s} s")
                mode = self.mode
            if mode == FlightMode.HOVERING and self._watchdog_armed and \
                    now - self._cmd_s > self.config.land_after_s:
                self.land(reason=f"watchdog: no command for {self.config.land_after_s} s")
                mode = self.mode
            send = self._setpoint(mode, st, now)
        if send is not None:
            send(cf.commander)

    def _setpoint(self, mode: FlightMode, st: CrazyflieState, now: float):
        """The commander call for this tick (made outside the lock), or None."""
        if mode == FlightMode.EMERGENCY:
            return lambda c: c.send_stop_setpoint()
        if mode == FlightMode.FLYING and self._cmd is not None:
            v, yaw_rate = self._cmd
            speed = float(np.linalg.norm(v))
            if speed > self.config.max_speed_mps:
                v = v * (self.config.max_speed_mps / speed)
            v = self.config.geofence.clamp_velocity(np.array(st.pos_m), v)
            rate = math.degrees(float(np.clip(yaw_rate, -self.config.max_yaw_rate_rad_s,
                                              self.config.max_yaw_rate_rad_s)))
            return lambda c: c.send_velocity_world_setpoint(float(v[0]), float(v[1]),
                                                             float(v[2]), rate)
        if mode == FlightMode.HOVERING and self._hold is not None:
            p, yaw = self._hold, self._hold_yaw_deg
            return lambda c: c.send_position_setpoint(float(p[0]), float(p[1]), float(p[2]),
                                                      yaw)
        if mode == FlightMode.TAKING_OFF and self._ramp is not None:
            p, done = self._ramp.at(now)
            if done:
                self._hold, self._hold_yaw_deg = p, self._ramp.yaw_deg
                self._set(mode=FlightMode.HOVERING, message="takeoff done")
            yaw = self._ramp.yaw_deg
            return lambda c: c.send_position_setpoint(float(p[0]), float(p[1]), float(p[2]),
                                                      yaw)
        if mode == FlightMode.LANDING and self._ramp is not None:
            p, done = self._ramp.at(now)
            if done and self._ramp_done_s is None:
                self._ramp_done_s = now
            grounded = st.pos_m[2] < self.config.landed_height_m
            if grounded or (self._ramp_done_s is not None and now - self._ramp_done_s > 1.0):
                self._ramp, self._hold, self._cmd = None, None, None
                self._set(mode=FlightMode.IDLE, message="landed")
                return lambda c: c.send_stop_setpoint()
            p = p.copy()
            p[2] = max(p[2] - 0.05, -0.05)  # lead the descent a little so it touches down
            yaw = self._ramp.yaw_deg
            return lambda c: c.send_position_setpoint(float(p[0]), float(p[1]), float(p[2]),
                                                      yaw)
        return None


def _yaw_deg(q_xyzw) -> float:
    x, y, z, w = q_xyzw
    return math.degrees(math.atan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z)))


__all__ = ["CrazyflieLink", "CrazyflieLinkConfig", "CrazyflieState", "FlightMode", "Geofence",
           "LinkState", "LinkStatus", "state_from_log"]
