"""How ``fhir-twin serve``'s workers share new connections (``http_server.AcceptBalance``);
``tests/cli/test_serve.py`` watches a served one."""

from __future__ import annotations

import time
from types import SimpleNamespace

from fhir_twin.http_server import BALANCE_DEFER, AcceptBalance

FIXED = 3  # the listening socket, the trigger and the signal pipe: sockets that are no connections


def test_a_worker_holding_the_fewest_accepts_at_once() -> None:
    balance = AcceptBalance(2)
    fewest = balance.share(0, FIXED)
    other = balance.share(1, FIXED)
    other.report(FIXED + 2)
    accepted: list[int] = []
    accept = fewest.accept(lambda: accepted.append(1))
    for held in (1, 2):  # fewer, then as many
        assert fewest.report(FIXED + held) is None
        accept()
        assert fewest.gate(lambda: True)()
    assert accepted == [1, 1]


def test_a_worker_holding_more_leaves_a_connection_to_another_then_takes_it_if_still_waiting() -> None:
    balance = AcceptBalance(2)
    more = balance.share(0, FIXED)
    balance.share(1, FIXED).report(FIXED + 1)
    more.report(FIXED + 2)
    accepted: list[int] = []
    accept = more.accept(lambda: accepted.append(1))
    readable = more.gate(lambda: True)
    accept()  # a connection waits, and another worker holds fewer
    assert accepted == [] and not readable()  # the listening socket is out of this worker's poll
    wait = more.report(FIXED + 2)
    assert wait is not None and 0 < wait <= BALANCE_DEFER
    time.sleep(BALANCE_DEFER * 2)
    assert more.report(FIXED + 2) == 0.0 and readable()  # the deferral is over: look once, at once
    accept()  # still waiting: the other worker is busy, so this one takes it
    assert accepted == [1]
    assert more.report(FIXED + 3) is None


def test_a_connection_the_other_worker_took_ends_the_deferral_after_one_look() -> None:
    balance = AcceptBalance(2)
    more = balance.share(0, FIXED)
    balance.share(1, FIXED).report(FIXED)
    more.report(FIXED + 1)
    accepted: list[int] = []
    accept = more.accept(lambda: accepted.append(1))
    accept()
    time.sleep(BALANCE_DEFER * 2)
    assert more.report(FIXED + 1) == 0.0  # one look at the listening socket: nothing was waiting
    assert more.report(FIXED + 1) is None  # so the deferral is over
    accept()  # the next connection is deferred afresh: the other still holds fewer
    assert accepted == []


def test_a_slot_of_no_running_worker_holds_every_connection() -> None:
    """A worker not started yet, or gone, never makes the others leave connections to it."""
    balance = AcceptBalance(2)
    server = SimpleNamespace(WORKERS={})
    first, second = SimpleNamespace(), SimpleNamespace()
    balance.pre_fork(server, first)
    server.WORKERS[101] = first
    balance.pre_fork(server, second)
    assert (first.balance_slot, second.balance_slot) == (0, 1)
    running = balance.share(first.balance_slot, FIXED)
    running.report(FIXED + 500)  # the second has not reported yet: its slot counts as full
    accepted: list[int] = []
    running.accept(lambda: accepted.append(1))()
    assert accepted == [1]
    balance.share(second.balance_slot, FIXED).report(FIXED)
    balance.child_exit(server, second)  # gone, with no connection left: it holds every one again
    running.accept(lambda: accepted.append(2))()
    assert accepted == [1, 2]
    server.WORKERS[102] = second
    del server.WORKERS[101]
    replacement = SimpleNamespace()
    balance.pre_fork(server, replacement)
    assert replacement.balance_slot == 0  # the slot no living worker holds


def test_a_worker_beyond_the_slots_accepts_at_once() -> None:
    """gunicorn's TTIN adds a worker past ``--workers``: it gets no slot and never defers."""
    balance = AcceptBalance(1)
    server = SimpleNamespace(WORKERS={101: SimpleNamespace(balance_slot=0)})
    extra = SimpleNamespace()
    balance.pre_fork(server, extra)
    assert extra.balance_slot is None
    balance.share(0, FIXED).report(FIXED)  # the slotted worker holds no connection
    share = balance.share(extra.balance_slot, FIXED)
    assert share.report(FIXED + 9) is None
    accepted: list[int] = []
    share.accept(lambda: accepted.append(1))()
    assert accepted == [1] and list(balance.counts) == [0]
    balance.child_exit(server, extra)  # leaving frees nothing another worker holds
    assert list(balance.counts) == [0]
