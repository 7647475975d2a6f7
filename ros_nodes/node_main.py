"""The ``main`` of every node: choose the transport, read the parameters, spin, shut down.

Transport: rclpy when it can be imported (a sourced ROS 2 install), else Cyclone DDS with
ROS 2 wire conventions; ``SWARM_RL_TRANSPORT=dds|rclpy`` forces one. Parameters: ROS 2's
``--ros-args -p name:=value`` syntax on both (rclpy also declares them on the node). On the DDS
transport a few transport settings travel as parameters too, all optional:
``use_sim_time`` (follow ``/clock``), ``dds.network`` (``localhost``, the default, or
``system``), and, for tests of degraded links, ``dds.loss`` / ``dds.delay_s`` / ``dds.seed``
(see :class:`ros_nodes.dds_transport.LinkFaults`). The DDS domain is ``ROS_DOMAIN_ID``.

A node object is built by ``factory(transport, params)``. If it has ``run(stop)``, that is its
main loop (the sim bridge paces physics itself); otherwise the transport's executor spins
until SIGINT / SIGTERM. Either way ``shutdown()`` runs last if the node has it (reports are
written there). Bad parameters, policy files or configs print ``error: ...`` and exit 2.
"""
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

from ros_nodes.params import ParamError, build_params, parse_ros_args
from sim.errors import ConfigError
from swarm_rl.errors import PolicyFileError, PolicyMismatchError

log = logging.getLogger(__name__)
BAD_INPUT = (ParamError, ConfigError, PolicyFileError, PolicyMismatchError)


def transport_backend() -> str:
    choice = os.environ.get("SWARM_RL_TRANSPORT", "")
    if choice in ("dds", "rclpy"):
        return choice
    if choice:
        raise ParamError(f"SWARM_RL_TRANSPORT: must be dds or rclpy, got {choice!r}")
    try:
        import rclpy  # noqa: F401
    except ImportError:
        return "dds"
    return "rclpy"


def make_dds_transport(node_name: str, values: dict[str, Any]):
    """A :class:`~ros_nodes.dds_transport.DdsTransport` from the transport parameters in
    ``values`` (removed from it)."""
    from ros_nodes.dds_transport import NETWORK_MODES, DdsTransport, LinkFaults

    use_sim_time = values.pop("use_sim_time", False)
    network = values.pop("dds.network", "localhost")
    fault_args = {key: values.pop(f"dds.{key}") for key in ("loss", "delay_s", "seed")
                  if f"dds.{key}" in values}
    if not isinstance(use_sim_time, bool):
        raise ParamError(f"{node_name}: parameter use_sim_time: expected true or false")
    if network not in NETWORK_MODES:
        raise ParamError(f"{node_name}: parameter dds.network: must be one of "
                         f"{', '.join(NETWORK_MODES)}, got {network!r}")
    try:
        faults = LinkFaults(**fault_args)
    except (TypeError, ValueError) as exc:
        raise ParamError(f"{node_name}: dds fault parameters: {exc}") from None
    return DdsTransport(node_name, use_sim_time=use_sim_time, network=network, faults=faults)


def run_node(default_name: str, params_cls: type, factory: Callable[[Any, Any], Any],
             argv: list[str]) -> int:
    logging.basicConfig(level=os.environ.get("SWARM_RL_LOG", "WARNING"),
                        format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    stop = threading.Event()
    transport = node = None
    try:
        if transport_backend() == "rclpy":
            from ros_nodes.rclpy_transport import RclpyTransport

            transport = RclpyTransport(default_name, argv)
            params = transport.declare(params_cls)
        else:
            name, values = parse_ros_args(argv)
            name = name or default_name
            transport = make_dds_transport(name, values)
            params = build_params(params_cls, values, name)
        node = factory(transport, params)
    except BAD_INPUT as exc:
        print(f"error: {exc}", file=sys.stderr)
        if transport is not None:
            transport.close()
        return 2
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        if hasattr(node, "run"):
            node.run(stop)
        else:
            transport.spin_until(stop.is_set)
    finally:
        if hasattr(node, "shutdown"):
            node.shutdown()
        transport.close()
    return 0
