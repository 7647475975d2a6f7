"""Intentions: planned paths, and the receiver's checks (malformed, stale, out of range)."""
import math

import numpy as np

from sim.mrta.intention import Intention, IntentionInbox, intention_path, path_steps


def test_path_is_spaced_one_step_apart_and_ends_on_the_target():
    path = intention_path(np.array([0.0, 0.0, 1.0]), np.array([3.5, 0.0, 1.0]), 1.0, 30)
    assert path.shape == (5, 3)
    np.testing.assert_allclose(path[:, 0], [0.0, 1.0, 2.0, 3.0, 3.5])
    np.testing.assert_allclose(path[-1], [3.5, 0.0, 1.0])
    assert path_steps(3.5, 1.0, 30) == 4 and path_steps(3.0, 1.0, 30) == 3


def test_path_is_cut_at_the_horizon_and_no_target_is_one_point():
    long = intention_path(np.zeros(3), np.array([100.0, 0.0, 0.0]), 1.0, 10)
    assert long.shape == (11, 3) and math.isclose(long[-1, 0], 10.0)
    hold = intention_path(np.array([1.0, 2.0, 1.0]), None, 1.0, 10)
    np.testing.assert_allclose(hold, [[1.0, 2.0, 1.0]])


def msg(sender="cf2", stamp=10.0, target=3, start=(1.0, 0.0, 1.0)):
    path = intention_path(np.array(start), np.array([4.0, 0.0, 1.0]), 1.0, 30)
    return Intention(sender, stamp, target, path)


def test_inbox_accepts_fresh_in_range_and_counts_each_rejection_once():
    inbox = IntentionInbox(comm_range_m=8.0, stale_after_s=2.0)
    assert inbox.receive(msg())
    assert not inbox.receive(Intention("cf3", 10.0, 1, np.full((2, 3), np.nan)))
    assert not inbox.receive(Intention("cf4", 10.0, 1, np.zeros((2, 2))))
    assert not inbox.receive(Intention("cf5", 10.0, -7, np.zeros((1, 3))))
    assert not inbox.receive("not a message")
    assert inbox.receive(msg("cf6", start=(20.0, 0.0, 1.0)))  # far away
    assert inbox.receive(msg("cf7", stamp=5.0))  # will be stale at t = 10.5
    assert not inbox.receive(msg("cf2", stamp=9.0))  # older than what cf2 sent
    own = np.zeros(3)
    for _ in range(3):  # repeated ticks do not count again
        heard = inbox.current(own, now_s=10.5, own_name="cf1")
    assert [m.sender for m in heard] == ["cf2"]
    c = inbox.counts
    assert (c["malformed"], c["out_of_order"], c["stale"], c["out_of_range"], c["accepted"]) \
        == (4, 1, 1, 1, 1)
    assert c["received"] == 8
    assert heard[0].eta_steps == 3


def test_own_intention_is_ignored():
    inbox = IntentionInbox(8.0, 2.0)
    inbox.receive(msg("cf1"))
    assert inbox.current(np.zeros(3), 10.0, own_name="cf1") == []
