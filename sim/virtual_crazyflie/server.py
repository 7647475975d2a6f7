"""The real-time UDP loop that serves a :class:`VirtualSwarm` to cflib.

One UDP socket per drone on 127.0.0.1 (port ``base_port + i``, or one the system picks when
``base_port`` is 0). One thread does everything, so no state is shared between threads: it
steps the swarm to keep up with the wall clock, sends the log data and console text that are
due, and answers each datagram as it arrives (a drone answers whoever sent to it last). If the
loop falls more than 0.1 s behind (the machine stalled), simulated time skips ahead rather
than racing to catch up, and the lag is recorded. A handler that raises is a bug: the packet
is dropped, the loop carries on, and :meth:`VirtualCrazyflieServer.summary` counts it.
"""
from __future__ import annotations

import heapq
import itertools
import logging
import math
import select
import socket
import threading
import time
from collections.abc import Callable

import numpy as np

from sim.virtual_crazyflie.config import HOST, LinkFaults, VirtualSwarmConfig
from sim.virtual_crazyflie.crtp import CrtpPacket, is_null
from sim.virtual_crazyflie.emulator import VirtualCrazyflie
from sim.virtual_crazyflie.faults import FaultyLink
from sim.virtual_crazyflie.swarm import VirtualSwarm

log = logging.getLogger(__name__)
MAX_LAG_S = 0.1
MAX_DATAGRAM = 64
MAX_BURST = 64


class VirtualCrazyflieServer:
    """N virtual Crazyflies on loopback UDP; ``start()`` in a thread or ``run()`` here."""

    def __init__(self, cfg: VirtualSwarmConfig) -> None:
        self.cfg = cfg
        self.swarm = VirtualSwarm(cfg)
        n = cfg.drones
        self.drones = [VirtualCrazyflie(self.swarm, i, f"cf{i + 1}") for i in range(n)]
        self.sockets: list[socket.socket] = []
        try:
            for i in range(n):
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sock.bind((HOST, cfg.base_port + i if cfg.base_port else 0))
                sock.setblocking(False)
                self.sockets.append(sock)
        except OSError:
            self.close()
            raise
        self._index = {s.fileno(): i for i, s in enumerate(self.sockets)}
        self._ports = [s.getsockname()[1] for s in self.sockets]
        self.clients: list[tuple[str, int] | None] = [None] * n
        seeds = np.random.SeedSequence(cfg.seed).spawn(n)
        self.links = [FaultyLink(cfg.faults.get(i, LinkFaults()), np.random.default_rng(s))
                      for i, s in enumerate(seeds)]
        self._delayed: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.packets_in = self.packets_out = self.bad_datagrams = self.handler_errors = 0
        self.lag_events = 0
        self.max_lag_s = 0.0
        self.wall_time_s = 0.0
        self.cpu_time_s = 0.0
        """CPU time of this process while serving (all threads; the loop is one)."""
        self._t0 = 0.0
        self.swarm.step()  # loads the compiled kernels before the clock starts

    @property
    def ports(self) -> list[int]:
        return list(self._ports)

    @property
    def uris(self) -> list[str]:
        return [f"udp://{HOST}:{p}" for p in self.ports]

    def start(self) -> "VirtualCrazyflieServer":
        self._thread = threading.Thread(target=self.run, name="virtual-crazyflie", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5.0)

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()

    def __enter__(self) -> "VirtualCrazyflieServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
        self.close()

    def elapsed_s(self) -> float:
        return time.monotonic() - self._t0

    def run(self, duration_s: float | None = None) -> None:
        """Serve until :meth:`stop` (or for ``duration_s`` of wall time)."""
        self._t0 = start = time.monotonic()
        cpu0 = time.process_time()
        try:
            self._loop(duration_s)
        finally:  # also when Ctrl-C interrupts the loop
            self.wall_time_s = time.monotonic() - start
            self.cpu_time_s = time.process_time() - cpu0

    def _loop(self, duration_s: float | None) -> None:
        dt = self.swarm.control_dt_s
        while not self._stop.is_set():
            now = self.elapsed_s()
            if duration_s is not None and now >= duration_s:
                break
            self._advance(now, dt)
            self._release(now)
            wake = min(self.swarm.time_s + dt,
                       self._delayed[0][0] if self._delayed else math.inf)
            timeout = min(max(wake - self.elapsed_s(), 0.0), 0.05)
            try:
                readable, _, _ = select.select(self.sockets, [], [], timeout)
            except (OSError, ValueError):
                break  # sockets closed under us
            for sock in readable:
                self._receive(sock)

    def _advance(self, now: float, dt: float) -> None:
        lag = now - self.swarm.time_s
        if lag > MAX_LAG_S:
            self.lag_events += 1
            self.max_lag_s = max(self.max_lag_s, lag)
            self._t0 += lag - dt  # skip ahead: sim time is not raced to catch up
            now = self.elapsed_s()
        while self.swarm.time_s + dt <= now:
            self.swarm.step()
            now_ms = 1000.0 * self.swarm.time_s
            for i, drone in enumerate(self.drones):
                if self.clients[i] is not None:
                    for packet in drone.downlink(now_ms):
                        self._send(i, packet, downlink_stream=True)

    def _release(self, now: float) -> None:
        while self._delayed and self._delayed[0][0] <= now:
            _, _, action = heapq.heappop(self._delayed)
            action()

    def _later(self, delay_s: float, action: Callable[[], None]) -> None:
        heapq.heappush(self._delayed, (self.elapsed_s() + delay_s, next(self._seq), action))

    def _receive(self, sock: socket.socket) -> None:
        i = self._index[sock.fileno()]
        for _ in range(MAX_BURST):  # a flood on one socket must not starve the physics
            try:
                datagram, addr = sock.recvfrom(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            self.packets_in += 1
            link = self.links[i]
            if is_null(datagram):  # scan probe: answer with a null packet
                if not link.blacked_out(self.elapsed_s()):
                    self._sendto(i, b"\xff", addr)
                continue
            packet = CrtpPacket.from_bytes(datagram)
            if packet is None:
                self.bad_datagrams += 1
                continue
            if link.drop_uplink(packet, self.elapsed_s()):
                continue
            self.clients[i] = addr
            if link.latency_s > 0:
                self._later(link.latency_s, lambda i=i, p=packet: self._dispatch(i, p))
            else:
                self._dispatch(i, packet)

    def _dispatch(self, i: int, packet: CrtpPacket) -> None:
        try:
            replies = self.drones[i].handle(packet)
        except Exception:  # a handler bug must not take the swarm down
            self.handler_errors += 1
            log.exception("virtual %s: packet %r raised", self.drones[i].name, packet)
            return
        for reply in replies:
            self._send(i, reply, downlink_stream=False)

    def _send(self, i: int, packet: CrtpPacket, downlink_stream: bool) -> None:
        addr = self.clients[i]
        link = self.links[i]
        if addr is None or link.drop_downlink(packet, self.elapsed_s()):
            return
        raw = packet.to_bytes()
        if link.latency_s > 0:
            self._later(link.latency_s, lambda: self._sendto(i, raw, addr))
        else:
            self._sendto(i, raw, addr)

    def _sendto(self, i: int, raw: bytes, addr: tuple[str, int]) -> None:
        try:
            self.sockets[i].sendto(raw, addr)
            self.packets_out += 1
        except OSError:
            pass  # the client went away; UDP has nobody to tell

    def summary(self) -> dict:
        """Figures of the run so far: real-time keeping, safety and per-drone state."""
        st = self.swarm.stats
        pos = self.swarm.true_positions()
        wall = self.wall_time_s or self.elapsed_s()
        return {
            "drones": self.cfg.drones, "uris": self.uris,
            "sim_time_s": st.sim_time_s, "wall_time_s": wall,
            "real_time_factor": st.sim_time_s / wall if wall > 0 else None,
            "lag_events": self.lag_events, "max_lag_ms": 1000.0 * self.max_lag_s,
            "cpu_fraction": self.cpu_time_s / wall if wall > 0 and self.cpu_time_s else None,
            "min_separation_m": None if math.isinf(st.min_separation_m)
            else st.min_separation_m,
            "collision_events": st.collision_events, "max_altitude_m": st.max_altitude_m,
            "packets_in": self.packets_in, "packets_out": self.packets_out,
            "bad_datagrams": self.bad_datagrams, "handler_errors": self.handler_errors,
            "per_drone": [{
                "name": d.name, "uri": uri, "final_pos_m": pos[i].round(4).tolist(),
                "vbat_v": round(self.swarm.batteries[i].vbat_v, 3),
                "battery_pct": round(self.swarm.batteries[i].level_pct, 1),
                "ignored_packets": d.ignored, "dropped_by_faults": self.links[i].dropped,
                "locked": self.swarm.onboard[i].locked,
            } for i, (d, uri) in enumerate(zip(self.drones, self.uris))],
        }


def serve_until_signal(server: VirtualCrazyflieServer, duration_s: float | None = None,
                       ready: Callable[[], None] | None = None) -> None:
    """Run ``server`` in this (main) thread until SIGINT or SIGTERM, or for ``duration_s``;
    ``ready`` is called once the sockets are bound and the loop is about to start."""
    import signal

    previous = signal.signal(signal.SIGTERM, lambda *_: server._stop.set())
    try:
        if ready is not None:
            ready()
        server.run(duration_s)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.close()
