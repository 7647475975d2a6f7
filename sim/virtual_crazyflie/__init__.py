"""A virtual Crazyflie swarm that the real cflib connects to over ``udp://``.

Each emulated drone is one CRTP-over-UDP endpoint on 127.0.0.1 (one CRTP packet per datagram,
byte 0 the header, as cflib's ``udpdriver`` speaks it) flying in the batched simulator under an
emulated onboard stack: commander arbitration and watchdog, high-level planner, position loop,
the simulated cascaded controller of :mod:`sim.controller`, a battery model and a supervisor.

Modules, one job each:

- :mod:`.crtp`: packet framing, ports and channels;
- :mod:`.toc`: value types and the table-of-contents protocol shared by log and param;
- :mod:`.variables`: the emulated firmware's log variables and parameters;
- :mod:`.log_service`, :mod:`.param_service`: the LOG and PARAM ports;
- :mod:`.setpoints`: decoding commander packets into :class:`.setpoints.Setpoint`;
- :mod:`.planner`: the high-level commander's trajectory planner;
- :mod:`.onboard`: one drone's commander, watchdog, supervisor and position loop;
- :mod:`.battery`: the battery model;
- :mod:`.emulator`: one drone's CRTP dispatch (packet in, packets out);
- :mod:`.swarm`: physics and control of all drones in one world;
- :mod:`.faults`: optional link faults (loss, latency, blackouts);
- :mod:`.server`: the real-time UDP loop.

Frames: world ENU, body FLU, SI units; the wire carries what the firmware carries (degrees
where the firmware uses degrees, millimetres in ``stateEstimateZ``), converted at decoding.
"""
from sim.virtual_crazyflie.config import LinkFaults, VirtualSwarmConfig
from sim.virtual_crazyflie.server import VirtualCrazyflieServer

__all__ = ["LinkFaults", "VirtualCrazyflieServer", "VirtualSwarmConfig"]
