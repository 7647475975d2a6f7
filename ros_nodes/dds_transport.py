"""Cyclone DDS backend of :class:`ros_nodes.transport.Transport`, with ROS 2 wire conventions.

What ROS 2 (rmw_cyclonedds_cpp) puts on the wire, this puts on the wire: topic ``/cf1/odom`` is
DDS topic ``rt/cf1/odom``; the type is ``nav_msgs::msg::dds_::Odometry_``
(:mod:`ros_nodes.messages`); samples are plain CDR (XCDR1); QoS as :class:`QosKind` says. A
ROS 2 machine on the same DDS domain sees these nodes as ordinary topics.

Network exposure is opt-in. By default (``network="localhost"``) the participant is configured
like ROS 2's ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``: the loopback interface only,
multicast off, unicast discovery of peers on 127.0.0.1 (REFERENCE.md section 10), so a swarm
is never visible on a network by accident. ``network="system"`` uses whatever Cyclone DDS
configuration the environment gives (``CYCLONEDDS_URI``), for swarms across machines.

Executor: :meth:`DdsTransport.spin_until` waits on one DDS WaitSet for all readers, takes every
sample, and calls the callbacks and the due timers from the calling thread, in arrival order.
Samples that fail to deserialise are counted (:attr:`DdsTransport.dropped`), never raised.

Fault injection (for tests of degraded links, off by default): ``loss`` drops that share of
received samples, ``delay_s`` holds each one back before its callback, both seeded.
"""
import ctypes
import heapq
import itertools
import logging
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
from cyclonedds._clayer import ddspy_take, ddspy_write
from cyclonedds.core import (InstanceState, Policy, Qos, ReadCondition, SampleState, ViewState,
                             WaitSet)
from cyclonedds.domain import Domain, DomainParticipant
from cyclonedds.internal import InvalidSample, dds_c_t
from cyclonedds.pub import DataWriter
from cyclonedds.sub import DataReader
from cyclonedds.topic import Topic
from cyclonedds.util import duration

from ros_nodes.cdr_codec import Codec, NotPlainCdr, codec_for
from ros_nodes.messages import Clock, from_time
from ros_nodes.transport import QosKind

T = TypeVar("T")
log = logging.getLogger(__name__)

MAX_PARTICIPANTS = 120
"""Discovery probes this many participant indices on 127.0.0.1 (ports 7410 + 250 d + 2 i for
domain d); enough for one process per robot in a 100-robot swarm on one machine."""

NETWORK_MODES = ("localhost", "system")


def localhost_config(max_participants: int = MAX_PARTICIPANTS) -> str:
    """Cyclone DDS XML keeping all traffic on 127.0.0.1: interface ``lo``, no multicast,
    unicast discovery of participants on this host."""
    return (
        "<CycloneDDS><Domain Id=\"any\"><General><Interfaces><NetworkInterface name=\"lo\"/>"
        "</Interfaces><AllowMulticast>false</AllowMulticast></General><Discovery>"
        "<ParticipantIndex>auto</ParticipantIndex>"
        f"<MaxAutoParticipantIndex>{max_participants}</MaxAutoParticipantIndex>"
        "<Peers><Peer address=\"127.0.0.1\"/></Peers></Discovery></Domain></CycloneDDS>")


_ANY_STATE = SampleState.Any | ViewState.Any | InstanceState.Any

_DOMAINS: dict[int, Domain] = {}
"""Localhost-configured domains of this process: a domain is configured once, and every
participant of the process on that domain shares the configuration."""


def _localhost_domain(domain_id: int) -> Domain:
    if domain_id not in _DOMAINS:
        _DOMAINS[domain_id] = Domain(domain_id, localhost_config())
    return _DOMAINS[domain_id]


def dds_topic_name(ros_topic: str) -> str:
    """ROS topic ``/a/b`` -> DDS topic ``rt/a/b`` (ROS 2's prefix for topics)."""
    if not ros_topic.startswith("/") or "//" in ros_topic or ros_topic.endswith("/"):
        raise ValueError(f"topic {ros_topic!r}: expected an absolute ROS name like /cf1/odom")
    return "rt" + ros_topic


def qos_for(kind: QosKind) -> Qos:
    """The DDS QoS of a :class:`QosKind`, always with the XCDR1 data representation that
    ROS 2 uses (a reader accepting only XCDR1 would not match an XCDR2 writer)."""
    cdr1 = Policy.DataRepresentation(use_cdrv0_representation=True)
    if kind is QosKind.SENSOR:
        return Qos(Policy.Reliability.BestEffort, Policy.History.KeepLast(1),
                   Policy.Durability.Volatile, cdr1)
    if kind is QosKind.COMMAND:
        return Qos(Policy.Reliability.Reliable(duration(milliseconds=100)),
                   Policy.History.KeepLast(1), Policy.Durability.Volatile, cdr1)
    if kind is QosKind.LATCHED:
        return Qos(Policy.Reliability.Reliable(duration(milliseconds=100)),
                   Policy.History.KeepLast(1), Policy.Durability.TransientLocal, cdr1)
    return Qos(Policy.Reliability.Reliable(duration(milliseconds=100)),
               Policy.History.KeepLast(10), Policy.Durability.Volatile, cdr1)


@dataclass(frozen=True)
class LinkFaults:
    """Injected faults on everything a transport receives (tests only)."""

    loss: float = 0.0
    """Share of received samples dropped, in [0, 1)."""
    delay_s: float = 0.0
    """Extra delay before each received sample's callback (s)."""
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.loss < 1.0:
            raise ValueError(f"loss: must be in [0, 1), got {self.loss}")
        if not (np.isfinite(self.delay_s) and self.delay_s >= 0.0):
            raise ValueError(f"delay_s: must be finite and >= 0, got {self.delay_s}")


class _Timer:
    def __init__(self, period_s: float, callback: Callable[[], None], now_s: float) -> None:
        self.period_s = period_s
        self.callback = callback
        self.next_s = now_s + period_s
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class _Publisher:
    """A writer; the graph's message types are encoded by :mod:`ros_nodes.cdr_codec` (the same
    bytes as ``DataWriter.write``, 3-10 times faster), others by the binding."""

    def __init__(self, writer: DataWriter, topic: str) -> None:
        self.writer = writer
        self.topic = topic
        self.codec: Codec | None = codec_for(writer.data_type)

    def publish(self, msg: Any) -> None:
        if self.codec is None or not isinstance(msg, self.codec.msg_type):
            self.writer.write(msg)  # the binding's path (and its type error for a wrong type)
            return
        ret = ddspy_write(self.writer._ref, self.codec.encode(msg))
        if ret < 0:
            raise RuntimeError(f"{self.topic}: DDS write failed with code {ret}")

    def publish_cdr(self, data: bytes) -> None:
        """Write a sample already encoded as this topic's plain CDR (header included), e.g.
        by :func:`ros_nodes.messages.swarm_state_cdr`: no message object on the way."""
        ret = ddspy_write(self.writer._ref, data)
        if ret < 0:
            raise RuntimeError(f"{self.topic}: DDS write failed with code {ret}")

    def subscribers(self) -> int:
        """Matched readers, local and remote (~2 us)."""
        return len(self.writer.get_matched_subscriptions())


class _Subscription:
    def __init__(self, reader: DataReader, condition: ReadCondition, msg_type: type,
                 callback: Callable[[Any], None], topic: str,
                 decode: Callable[[bytes], Any] | None = None) -> None:
        self.reader = reader
        self.condition = condition
        self.msg_type = msg_type
        self.callback = callback
        self.topic = topic
        self.codec: Codec | None = codec_for(msg_type)
        self.decode = decode or (self.codec.decode if self.codec is not None else None)

    def take(self, max_samples: int = 256) -> list[Any]:
        """Every waiting valid sample, oldest first, each with its ``sample_info``. Samples of
        a type the codec knows are decoded by :mod:`ros_nodes.cdr_codec` unless they are not
        plain little-endian CDR (another vendor's XCDR2 or big-endian writer), which the
        binding decodes. A subscription's own ``decode`` (bytes -> sample, raising
        :class:`NotPlainCdr` where it cannot) stands in for the codec's. Raises on
        undecodable data, like ``DataReader.take``."""
        if self.decode is None:
            return [s for s in self.reader.take(N=max_samples)
                    if not isinstance(s, InvalidSample) and isinstance(s, self.msg_type)]
        ret = ddspy_take(self.reader._ref, _ANY_STATE, max_samples)
        if isinstance(ret, int):
            raise RuntimeError(f"{self.topic}: DDS take failed with code {ret}")
        samples = []
        for data, info in ret:
            if not info.valid_data:
                continue  # disposal / unregistration notices carry no message
            try:
                sample = self.decode(data)
            except NotPlainCdr:
                sample = self.msg_type.deserialize(data)
            sample.sample_info = info
            samples.append(sample)
        return samples


class DdsTransport:
    """One node's DDS participant, publishers, readers, timers and executor.

    ``domain_id``: the DDS domain (ROS_DOMAIN_ID; default from that variable, else 0).
    ``use_sim_time``: the clock follows ``/clock`` (rosgraph_msgs/Clock) instead of wall time;
    timers then run on it as well. ``network``: ``localhost`` (default) or ``system``.
    """

    def __init__(self, name: str, domain_id: int | None = None, use_sim_time: bool = False,
                 network: str = "localhost", faults: LinkFaults | None = None) -> None:
        if network not in NETWORK_MODES:
            raise ValueError(f"network: must be one of {NETWORK_MODES}, got {network!r}")
        if domain_id is None:
            domain_id = int(os.environ.get("ROS_DOMAIN_ID", "0"))
        if not 0 <= domain_id <= 232:
            raise ValueError(f"domain_id: must be in [0, 232] (ROS 2's range), got {domain_id}")
        self.name = name
        self.domain_id = domain_id
        self._domain = _localhost_domain(domain_id) if network == "localhost" else None
        self.participant = DomainParticipant(domain_id)
        self.waitset = WaitSet(self.participant)
        self._topics: dict[str, Topic] = {}
        self._subs: list[_Subscription] = []
        self._by_attach: dict[int, _Subscription] = {}
        """Subscriptions by the WaitSet attach value of their condition."""
        self._triggered = (dds_c_t.attach * 64)()
        self._timers: list[_Timer] = []
        self._writers: list[_Publisher] = []
        self.faults = faults or LinkFaults()
        self._rng = np.random.default_rng(self.faults.seed)
        self._delayed: list[tuple[float, int, Callable[[Any], None], Any]] = []
        self._seq = itertools.count()
        self.dropped: Counter[str] = Counter()
        """Received samples not delivered, by reason (``deserialise``, ``injected_loss``)."""
        self.use_sim_time = use_sim_time
        self._sim_now_s = 0.0
        self.wait_start_ns = self.wake_ns = self.spin_start_ns = 0
        """Wall clock (ns) when the executor last began waiting, woke, and began taking
        samples (for :mod:`ros_nodes.tick_trace`)."""
        if use_sim_time:
            self.create_subscription(Clock, "/clock", self._on_clock, QosKind.SENSOR)

    # --- entities ----------------------------------------------------------------------------

    def _topic(self, msg_type: type, topic: str) -> Topic:
        name = dds_topic_name(topic)
        existing = self._topics.get(name)
        if existing is None:
            existing = self._topics[name] = Topic(self.participant, name, msg_type)
        elif existing.data_type is not msg_type:
            raise ValueError(f"topic {topic}: already used with type "
                             f"{existing.data_type.__name__}, not {msg_type.__name__}")
        return existing

    def create_publisher(self, msg_type: type[T], topic: str, qos: QosKind) -> "_Publisher":
        pub = _Publisher(DataWriter(self.participant, self._topic(msg_type, topic),
                                    qos_for(qos)), topic)
        self._writers.append(pub)
        return pub

    def create_subscription(self, msg_type: type[T], topic: str,
                            callback: Callable[[T], None], qos: QosKind,
                            decode: Callable[[bytes], Any] | None = None) -> _Subscription:
        """``decode``: this subscription's own plain-CDR decoder (bytes -> what the callback
        gets, e.g. :func:`ros_nodes.messages.swarm_state_arrays`; :class:`NotPlainCdr` for
        bytes it cannot read, which the binding then decodes into ``msg_type``)."""
        reader = DataReader(self.participant, self._topic(msg_type, topic), qos_for(qos))
        condition = ReadCondition(reader, _ANY_STATE)
        self.waitset.attach(condition)
        sub = _Subscription(reader, condition, msg_type, callback, topic, decode)
        self._subs.append(sub)
        value = next(v for entity, v in self.waitset.attached if entity is condition)
        self._by_attach[ctypes.addressof(value)] = sub
        return sub

    def create_timer(self, period_s: float, callback: Callable[[], None]) -> _Timer:
        if not (np.isfinite(period_s) and period_s > 0):
            raise ValueError(f"period_s: must be finite and > 0, got {period_s}")
        timer = _Timer(period_s, callback, self.now_s())
        self._timers.append(timer)
        return timer

    # --- clock -------------------------------------------------------------------------------

    def now_s(self) -> float:
        return self._sim_now_s if self.use_sim_time else time.time()

    def _on_clock(self, msg: Clock) -> None:
        self._sim_now_s = max(self._sim_now_s, from_time(msg.clock))

    # --- executor ----------------------------------------------------------------------------

    def spin_until(self, done: Callable[[], bool], timeout_s: float | None = None) -> None:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while not done():
            wait_s = self._next_wait_s()
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                wait_s = min(wait_s, left)
            subs = None
            if wait_s > 0:
                self.wait_start_ns = time.time_ns()
                subs = self._wait(duration(seconds=wait_s))
                self.wake_ns = time.time_ns()
            self.spin_once(subs)

    def _wait(self, timeout_ns: int) -> "list[_Subscription] | None":
        """Block on the WaitSet; the subscriptions whose readers hold samples, in creation
        order (None: look at all of them). The bridge has 4 readers per drone and a host 2
        per hosted robot, nearly all idle: taking from each after every wake-up cost ~1 us a
        reader, ~0.15 ms per wake-up of a 32-drone bridge, several times a tick."""
        xs = self._triggered
        n = self.waitset._waitset_wait(self.waitset._ref, xs, len(xs), timeout_ns)
        if n < 0:
            raise RuntimeError(f"{self.name}: DDS waitset wait failed with code {n}")
        if n > len(xs):
            return None
        found = {id(sub) for sub in (self._by_attach.get(xs[i]) for i in range(n)) if sub}
        if len(found) < n:  # an entity this transport did not attach: be safe
            return None
        return [sub for sub in self._subs if id(sub) in found]

    def spin_once(self, subs: "list[_Subscription] | None" = None) -> int:
        """Take every waiting sample (of ``subs`` only, if given: those whose readers the
        WaitSet found holding samples), deliver the due ones, fire the due timers; returns
        the number of callbacks run."""
        ran = 0
        self.spin_start_ns = time.time_ns()
        for sub in self._subs if subs is None else subs:
            try:
                samples = sub.take()
            except Exception:  # malformed CDR from a foreign writer: count, never raise
                self.dropped["deserialise"] += 1
                log.warning("%s: dropped an undecodable sample on %s", self.name, sub.topic)
                continue
            for sample in samples:
                if self.faults.loss and self._rng.random() < self.faults.loss:
                    self.dropped["injected_loss"] += 1
                    continue
                if self.faults.delay_s:
                    heapq.heappush(self._delayed, (time.monotonic() + self.faults.delay_s,
                                                   next(self._seq), sub.callback, sample))
                    continue
                sub.callback(sample)
                ran += 1
        now_mono = time.monotonic()
        while self._delayed and self._delayed[0][0] <= now_mono:
            _, _, callback, sample = heapq.heappop(self._delayed)
            callback(sample)
            ran += 1
        now = self.now_s()
        for timer in list(self._timers):
            if timer.cancelled:
                self._timers.remove(timer)
            elif now >= timer.next_s:
                # no catch-up bursts after a stall: the next tick is one period from now
                timer.next_s = max(timer.next_s + timer.period_s, now)
                timer.callback()
                ran += 1
        return ran

    def _next_wait_s(self) -> float:
        """How long the WaitSet may block before a timer or a delayed sample is due."""
        wait_s = 0.05
        if self._timers and not self.use_sim_time:
            wait_s = min(wait_s, min(t.next_s for t in self._timers) - time.time())
        if self._delayed:
            wait_s = min(wait_s, self._delayed[0][0] - time.monotonic())
        return max(wait_s, 0.0)

    # --- matching (tests and start-up) -------------------------------------------------------

    def matched(self, entity: Any) -> int:
        """Matched remote endpoints of a publisher or a subscription."""
        if isinstance(entity, _Subscription):
            return len(entity.reader.get_matched_publications())
        return len(entity.writer.get_matched_subscriptions())

    def close(self) -> None:
        for sub in self._subs:
            self.waitset.detach(sub.condition)
        self._subs.clear()
        self._by_attach.clear()
        self._timers.clear()
        self._writers.clear()
        self._topics.clear()
        self.participant = None  # entities are deleted with their last reference
        self._domain = None
