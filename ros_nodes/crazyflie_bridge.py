"""``crazyflie_bridge``: real (or virtual) Crazyflies behind the topics of the sim bridge.

One bridge drives the robots of a ``crazyflies.yaml`` (all enabled ones, or the ``robots``
listed: one bridge per radio, or per group of URIs), each through a
:class:`ros_nodes.crazyflie_link.CrazyflieLink` (cflib; ``radio://`` on hardware, ``udp://``
against ``swarm-rl virtual-crazyflie``), which owns the safety logic: watchdog (no command for
200 ms -> hold position, 1 s -> land), geofence clamp, low battery -> land, emergency stop,
link loss reported and reconnected with back-off.

    log block (100 Hz) ──► /cfN/odom, /cfN/pose         (on cflib's receive thread)
    /cfN/cmd_velocity_world ──► link.send_velocity_world (streamed at setpoint_rate_hz)
    /cfN/takeoff, /cfN/land, /cfN/emergency, /all/...  (std_msgs/Empty)
    link status ──► /cfN/status (battery, link quality, mode, reconnects)

``auto_takeoff`` takes every robot off once connected. On shutdown airborne robots land
before the links close. ``report_dir``: ``bridge_report.json`` and ``trajectories.npz``
(positions sampled at 10 Hz from the estimates) for ``swarm-rl launch``.

The odometry's angular twist is zero: the state log block carries no body rates (the policy
then sees zero rates; docs/hardware.md).
"""
import logging
import math
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from threading import Event

import numpy as np

from ros_nodes import messages as m
from ros_nodes.crazyflie_config import load_crazyflies
from ros_nodes.crazyflie_link import CrazyflieLink, CrazyflieState, LinkStatus
from ros_nodes.node_main import run_node
from ros_nodes.params import ParamError, spec
from ros_nodes.transport import QosKind, Transport, robot_topic
from sim.errors import ConfigError
from swarm_rl import files

log = logging.getLogger(__name__)
REPORT_FILE = "bridge_report.json"
TRAJECTORY_FILE = "trajectories.npz"
SAMPLE_PERIOD_S = 0.1


@dataclass(frozen=True)
class CrazyflieBridgeParams:
    config: str = spec("", "crazyflies.yaml: the robots, their URIs and limits.")
    robots: list[str] = spec([], "Robots of the config this bridge drives; empty: every "
                             "enabled one.")
    auto_takeoff: bool = spec(False, "Take every robot off once it is connected.")
    connect_timeout_s: float = spec(20.0, "auto_takeoff: longest wait for all links (s).",
                                    min=0.1, max=600.0)
    status_rate_hz: float = spec(2.0, "Rate of /cfN/status (Hz).", min=0.1, max=50.0)
    report_dir: str = spec("", "Write bridge_report.json and trajectories.npz here on exit.")


class CrazyflieBridge:
    def __init__(self, transport: Transport, params: CrazyflieBridgeParams) -> None:
        if not params.config:
            raise ParamError("crazyflie_bridge: parameter config: give the crazyflies.yaml")
        try:
            entries = load_crazyflies(params.config)
        except ConfigError as exc:
            raise ParamError(f"crazyflie_bridge: parameter config: {exc}") from None
        known = {e.name: e for e in entries}
        missing = sorted(set(params.robots) - set(known))
        if missing:
            raise ParamError(f"crazyflie_bridge: parameter robots: not in {params.config}: "
                             f"{', '.join(missing)}")
        self.entries = [known[n] for n in params.robots] if params.robots else \
            [e for e in entries if e.enabled]
        if not self.entries:
            raise ParamError(f"crazyflie_bridge: {params.config} has no enabled robot")
        self.transport = transport
        self.params = params
        self.names = [e.name for e in self.entries]
        self._lock = threading.Lock()
        self.latest_status: dict[str, LinkStatus] = {}
        self.link_losses = {n: 0 for n in self.names}
        self.rejected = {n: 0 for n in self.names}
        self.samples: list[np.ndarray] = []
        self._pos = np.full((len(self.names), 3), np.nan)
        self._odom = {}
        self._pose = {}
        self._status = {}
        for e in self.entries:
            self._odom[e.name] = transport.create_publisher(
                m.Odometry, robot_topic(e.name, "odom"), QosKind.SENSOR)
            self._pose[e.name] = transport.create_publisher(
                m.PoseStamped, robot_topic(e.name, "pose"), QosKind.SENSOR)
            self._status[e.name] = transport.create_publisher(
                m.DiagnosticArray, robot_topic(e.name, "status"), QosKind.EVENTS)
        self.links = {e.name: CrazyflieLink(e.uri, e.name, e.link, on_state=self._on_state,
                                            on_status=self._on_status) for e in self.entries}
        self.index = {n: i for i, n in enumerate(self.names)}
        for e in self.entries:
            transport.create_subscription(
                m.TwistStamped, robot_topic(e.name, "cmd_velocity_world"),
                lambda msg, n=e.name: self._on_command(n, msg), QosKind.COMMAND)
            for leaf in ("takeoff", "land", "emergency"):
                transport.create_subscription(
                    m.Empty, robot_topic(e.name, leaf),
                    lambda _msg, leaf=leaf, names=(e.name,): self._event(leaf, names),
                    QosKind.EVENTS)
        for leaf in ("takeoff", "land", "emergency"):
            transport.create_subscription(m.Empty, f"/all/{leaf}",
                                          lambda _msg, leaf=leaf: self._event(leaf, self.names),
                                          QosKind.EVENTS)
        transport.create_timer(1.0 / params.status_rate_hz, self._publish_status)
        transport.create_timer(SAMPLE_PERIOD_S, self._sample)
        for link in self.links.values():
            link.start()

    # --- from the drones ---------------------------------------------------------------------

    def _on_state(self, st: CrazyflieState) -> None:
        """cflib's receive thread: publish at once (short)."""
        self._odom[st.name].publish(m.odometry(st.name, st.stamp_s, st.pos_m, st.vel_mps,
                                               st.quat_xyzw, (0.0, 0.0, 0.0)))
        self._pose[st.name].publish(m.pose_stamped(st.stamp_s, st.pos_m, st.quat_xyzw))
        self._pos[self.index[st.name]] = st.pos_m

    def _on_status(self, status: LinkStatus) -> None:
        with self._lock:
            before = self.latest_status.get(status.name)
            if before is not None and before.link.value == "connected" \
                    and status.link.value == "lost":
                self.link_losses[status.name] += 1
            self.latest_status[status.name] = status

    def _sample(self) -> None:
        self.samples.append(self._pos.copy())

    # --- to the drones -----------------------------------------------------------------------

    def _on_command(self, name: str, msg: m.TwistStamped) -> None:
        try:
            accepted = self.links[name].send_velocity_world(m.vec(msg.twist.linear),
                                                            float(msg.twist.angular.z))
        except ValueError:
            accepted = False
        if not accepted:
            self.rejected[name] += 1

    def _event(self, leaf: str, names) -> None:
        for name in names:
            link = self.links[name]
            entry = self.entries[self.index[name]]
            if leaf == "takeoff":
                link.takeoff(entry.takeoff_height_m, entry.takeoff_duration_s)
            elif leaf == "land":
                link.land("land requested")
            else:
                link.emergency_stop()

    def _publish_status(self) -> None:
        now = self.transport.now_s()
        with self._lock:
            statuses = dict(self.latest_status)
        for name, st in statuses.items():
            level = (m.DIAG_ERROR if st.link.value != "connected" or st.locked
                     else m.DIAG_WARN if st.low_battery else m.DIAG_OK)
            values = {"link": st.link.value, "mode": st.mode.value,
                      "battery_v": st.battery_v if st.battery_v is not None else "n/a",
                      "low_battery": st.low_battery, "link_quality": st.link_quality,
                      "radio_link_quality": st.radio_link_quality
                      if st.radio_link_quality is not None else "n/a",
                      "log_rate_hz": st.log_rate_hz, "reconnects": st.reconnects,
                      "link_losses": self.link_losses[name],
                      "rejected_commands": self.rejected[name], "uri": st.uri}
            self._status[name].publish(m.diagnostics(now, f"{name}/crazyflie_bridge", level,
                                                     st.message, values, st.uri))

    # --- life cycle --------------------------------------------------------------------------

    def run(self, stop: Event) -> None:
        if self.params.auto_takeoff:
            deadline = time.monotonic() + self.params.connect_timeout_s
            pending = set(self.names)
            while pending and not stop.is_set() and time.monotonic() < deadline:
                for name in list(pending):
                    link = self.links[name]
                    entry = self.entries[self.index[name]]
                    if link.state is not None and link.takeoff(entry.takeoff_height_m,
                                                               entry.takeoff_duration_s):
                        pending.discard(name)
                self.transport.spin_until(stop.is_set, 0.05)
            if pending:
                log.warning("no takeoff (not connected in %.0f s): %s",
                            self.params.connect_timeout_s, ", ".join(sorted(pending)))
        self.transport.spin_until(stop.is_set)

    def report(self) -> dict:
        pos = np.array(self.samples) if self.samples else np.zeros((0, len(self.names), 3))
        sep = math.inf
        if len(pos) and len(self.names) > 1:
            d = np.linalg.norm(pos[:, :, None] - pos[:, None], axis=-1)
            d[:, np.arange(len(self.names)), np.arange(len(self.names))] = np.inf
            airborne = pos[..., 2] > 0.1
            both = airborne[:, :, None] & airborne[:, None, :]
            d = np.where(both, d, np.inf)
            sep = float(np.nanmin(d)) if np.isfinite(d).any() else math.inf
        statuses = {n: self.latest_status.get(n) for n in self.names}
        return {"names": self.names, "uris": [e.uri for e in self.entries],
                "min_separation_estimated_m": sep, "link_losses": self.link_losses,
                "reconnects": {n: s.reconnects if s else 0 for n, s in statuses.items()},
                "rejected_commands": self.rejected,
                "final_modes": {n: s.mode.value if s else "unknown"
                                for n, s in statuses.items()},
                "final_positions_m": pos[-1].tolist() if len(pos) else []}

    def shutdown(self) -> None:
        closers = [threading.Thread(target=link.close) for link in self.links.values()]
        for t in closers:
            t.start()  # land all at once, not one after the other
        for t in closers:
            t.join(timeout=30.0)
        if self.params.report_dir:
            out = Path(self.params.report_dir)
            out.mkdir(parents=True, exist_ok=True)
            files.write_json(out / REPORT_FILE, self.report())
            with files.atomic_open(out / TRAJECTORY_FILE, "wb") as f:
                np.savez(f, positions_m=np.array(self.samples), dt_s=SAMPLE_PERIOD_S,
                         names=np.array(self.names))


def main(argv: list[str] | None = None) -> int:
    return run_node("crazyflie_bridge", CrazyflieBridgeParams, CrazyflieBridge,
                    sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
