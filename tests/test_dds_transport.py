"""DdsTransport's executor: after a wake-up it takes only from the readers the WaitSet found
holding samples, and still delivers every sample, in the subscriptions' creation order."""
import os
import time

from ros_nodes import messages as m
from ros_nodes.dds_transport import DdsTransport
from ros_nodes.transport import QosKind


def test_only_readers_with_samples_are_taken_and_every_sample_arrives():
    dom = 100 + (os.getpid() * 7 + 31) % 120
    rx, tx = DdsTransport("rx", domain_id=dom), DdsTransport("tx", domain_id=dom)
    got: list[tuple[int, float]] = []
    subs = [rx.create_subscription(m.Float64, f"/t{i}", lambda msg, i=i: got.append(
        (i, msg.data)), QosKind.EVENTS) for i in range(40)]
    pubs = {i: tx.create_publisher(m.Float64, f"/t{i}", QosKind.EVENTS) for i in (3, 17, 39)}
    deadline = time.monotonic() + 10
    while any(tx.matched(p) == 0 for p in pubs.values()) and time.monotonic() < deadline:
        rx.spin_until(lambda: False, 0.05)
    taken: list[int] = []
    for sub in subs:  # count the takes: only the three readers with data are asked
        original = sub.take
        sub.take = lambda original=original: (taken.append(1), original())[1]
    try:
        for rounds in range(3):
            for i, pub in pubs.items():
                pub.publish(m.Float64(float(10 * rounds + i)))
            want = 3 * (rounds + 1)
            end = time.monotonic() + 5
            while len(got) < want and time.monotonic() < end:
                rx.spin_until(lambda: len(got) >= want, 0.5)
        assert sorted(v for _, v in got) == sorted(float(10 * r + i) for r in range(3)
                                                   for i in pubs)
        assert len(taken) < 3 * 40, "idle readers are not taken after each wake-up"
        assert rx.spin_once() == 0  # a spin without a wait still looks at every reader
    finally:
        rx.close()
        tx.close()
