"""The fast CDR codec against Cyclone DDS's own serialiser: the same bytes, the same messages.

Random messages of every fixed-layout type the nodes send are encoded by both and must agree
byte for byte; the binding's bytes must decode back to the message; random bytes must give
either a message or :class:`NotPlainCdr`, nothing else.
"""
import math
import typing
from dataclasses import dataclass, field

import numpy as np
import pytest
from cyclonedds.idl import IdlStruct
from cyclonedds.idl._support import Endianness
from cyclonedds.idl.types import array, float64, sequence
from hypothesis import given, settings
from hypothesis import strategies as st

from ros_nodes import messages as m
from ros_nodes.cdr_codec import HEADER, NotPlainCdr, codec_for

FIXED = [m.Odometry, m.TwistStamped, m.PoseStamped, m.Clock, m.Float64, m.Empty, m.String,
         m.Header, m.Time, m.Vector3, m.MultiDOFJointState, m.Path, m.DiagnosticArray]
RANGES = {"int32": (-2**31, 2**31 - 1), "uint32": (0, 2**32 - 1), "uint8": (0, 255),
          "byte": (0, 255)}


def strategy(cls: type) -> st.SearchStrategy:
    """Any message of ``cls``: every number in its IDL range, strings of any text."""
    fields = {}
    for name, hint in typing.get_type_hints(cls, include_extras=True).items():
        meta = getattr(hint, "__metadata__", ())
        if hint is str:
            fields[name] = st.text(max_size=20)
        elif isinstance(hint, type) and issubclass(hint, IdlStruct):
            fields[name] = strategy(hint)
        elif meta and isinstance(meta[0], sequence):
            inner = meta[0].subtype
            fields[name] = st.lists(st.text(max_size=8) if inner is str else strategy(inner),
                                    max_size=5)
        elif meta and isinstance(meta[0], array):
            fields[name] = st.lists(st.floats(allow_nan=False), min_size=meta[0].length,
                                    max_size=meta[0].length)
        elif meta[0] == "float64":
            fields[name] = st.floats(allow_nan=False)
        else:
            fields[name] = st.integers(*RANGES[meta[0]])
    return st.builds(cls, **fields)


def reference_bytes(msg: object) -> bytes:
    """What ``DataWriter.write`` sends: XCDR1, padded to a multiple of 4."""
    ser = msg.serialize(use_version_2=False)
    return ser.ljust((len(ser) + 3) & ~3, b"\0")


@pytest.mark.parametrize("cls", FIXED, ids=lambda c: c.__name__)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_encode_is_byte_identical_and_decode_inverts(cls, data):
    msg = data.draw(strategy(cls))
    codec = codec_for(cls)
    assert codec is not None
    ref = reference_bytes(msg)
    assert codec.encode(msg) == ref
    assert codec.decode(ref) == msg
    assert cls.deserialize(codec.encode(msg)) == msg


@dataclass
class Unsupported(IdlStruct, typename="test::Unsupported"):
    rows: sequence[sequence[float64]] = field(default_factory=list)


def test_a_type_the_codec_cannot_do_has_no_codec():
    assert codec_for(Unsupported) is None


def test_swarm_state_round_trips_through_the_helpers():
    pos = np.array([[1.0, 2.0, 0.5], [-1.0, 0.0, 1.5]])
    vel = np.array([[0.1, 0.0, 0.0], [0.0, -0.2, 0.3]])
    quat = np.array([[0.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.6, 0.8]])
    omega = np.array([[0.0, 0.0, 0.1], [0.2, 0.0, 0.0]])
    msg = m.swarm_state(3.5, ["cf1", "cf2"], pos, vel, quat, omega)
    back = codec_for(m.MultiDOFJointState).decode(reference_bytes(msg))
    names, p, v, q, w = m.read_swarm_state(back)
    assert names == ["cf1", "cf2"] and m.from_time(back.header.stamp) == 3.5
    for got, want in ((p, pos), (v, vel), (q, quat), (w, omega)):
        np.testing.assert_array_equal(got, want)
    back.twist.pop()
    with pytest.raises(ValueError, match="2 joint_names but 2 transforms and 1 twists"):
        m.read_swarm_state(back)


def test_a_nodes_odometry_round_trips_with_its_numbers():
    msg = m.odometry("cf3", 12.5, [1.0, -2.0, 0.75], [0.1, 0.2, -0.3], [0.0, 0.0, 0.6, 0.8],
                     [0.5, 0.0, -0.5])
    back = codec_for(m.Odometry).decode(reference_bytes(msg))
    assert back.child_frame_id == "cf3" and m.from_time(back.header.stamp) == 12.5
    assert list(m.vec(back.pose.pose.position)) == [1.0, -2.0, 0.75]
    assert len(back.twist.covariance) == 36


@pytest.mark.parametrize("cls", [m.Odometry, m.TwistStamped, m.String, m.MultiDOFJointState,
                                 m.DiagnosticArray], ids=lambda c: c.__name__)
@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_random_bytes_decode_or_raise_not_plain_cdr(cls, data):
    blob = data.draw(st.one_of(st.binary(max_size=800),
                               st.binary(max_size=800).map(lambda b: HEADER + b)))
    try:
        msg = codec_for(cls).decode(blob)
    except NotPlainCdr:
        return
    assert isinstance(msg, cls)


def test_other_encodings_are_refused_for_the_binding_to_decode():
    msg = m.twist_stamped(1.0, [1.0, 2.0, 3.0], 0.5)
    big_endian = msg.serialize(use_version_2=False, endianness=Endianness.Big)
    with pytest.raises(NotPlainCdr, match="encapsulation"):
        codec_for(m.TwistStamped).decode(big_endian)
    assert math.isclose(m.TwistStamped.deserialize(big_endian).twist.angular.z, 0.5)


@settings(max_examples=150, deadline=None)
@given(msg=strategy(m.MultiDOFJointState))
def test_swarm_state_arrays_hold_the_numbers_the_message_objects_hold(msg):
    data = reference_bytes(msg)
    arrays = m.swarm_state_arrays(data)
    obj = codec_for(m.MultiDOFJointState).decode(data)
    assert arrays.header == obj.header and arrays.joint_names == obj.joint_names
    try:
        want = m.read_swarm_state(obj)
    except ValueError as exc:  # random lengths: the same error from both paths
        with pytest.raises(ValueError, match=str(exc)):
            m.read_swarm_state(arrays)
        return
    got = m.read_swarm_state(arrays)
    assert got[0] == want[0]
    for a, b in zip(got[1:], want[1:]):
        assert a.shape == b.shape and a.tobytes() == b.tobytes()  # bit for bit


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_swarm_state_arrays_of_random_bytes_decode_or_raise_not_plain_cdr(data):
    blob = data.draw(st.one_of(st.binary(max_size=800),
                               st.binary(max_size=800).map(lambda b: HEADER + b)))
    try:
        arrays = m.swarm_state_arrays(blob)
    except NotPlainCdr:
        return
    assert isinstance(arrays, m.SwarmStateArrays)


@pytest.mark.parametrize("n", [0, 1, 5, 32])
def test_swarm_state_bytes_from_the_arrays_are_the_messages_bytes(n):
    rng = np.random.default_rng(n)
    names = [f"cf{i + 1}" for i in range(n)]
    pos, vel, omega = (rng.normal(size=(n, 3)) * 10 for _ in range(3))
    quat = rng.normal(size=(n, 4))
    if n:
        pos[0, 1], vel[-1, 2] = np.nan, -0.0
    for t_s in (0.0, 3.5, 1_764_633_600.123456789):
        msg = m.swarm_state(t_s, names, pos, vel, quat, omega)
        want = codec_for(m.MultiDOFJointState).encode(msg)
        assert m.swarm_state_cdr(t_s, names, pos, vel, quat, omega) == want
        if n:
            assert want == reference_bytes(msg) or np.isnan(pos).any()


@pytest.mark.parametrize("vel, yaw", [([0.1, -0.2, 0.3], 0.5), ([0.0, -0.0, 1e300], -0.0),
                                      (np.array([1.5, 2.0, -1.0]), np.float64(0.25))])
def test_twist_stamped_bytes_from_the_numbers_are_the_messages_bytes(vel, yaw):
    for t_s in (0.0, 12.75, 1_764_633_600.987654321):
        msg = m.twist_stamped(t_s, vel, yaw)
        want = codec_for(m.TwistStamped).encode(msg)
        assert m.twist_stamped_cdr(t_s, vel, yaw) == want == reference_bytes(msg)


@settings(max_examples=150, deadline=None)
@given(msg=strategy(m.TwistStamped))
def test_twist_numbers_are_the_message_objects_numbers(msg):
    data = reference_bytes(msg)
    got = m.twist_numbers(data)
    obj = codec_for(m.TwistStamped).decode(data)
    assert got.stamp_s == m.from_time(obj.header.stamp)
    assert got.linear == (obj.twist.linear.x, obj.twist.linear.y, obj.twist.linear.z)
    assert got.angular == (obj.twist.angular.x, obj.twist.angular.y, obj.twist.angular.z)


@settings(max_examples=200, deadline=None)
@given(blob=st.one_of(st.binary(max_size=200), st.binary(max_size=200).map(lambda b: HEADER + b)))
def test_twist_numbers_of_random_bytes_decode_or_raise_not_plain_cdr(blob):
    try:
        got = m.twist_numbers(blob)
    except NotPlainCdr:
        return
    assert isinstance(got, m.TwistNumbers)
