"""mgmt_vrf.pyinfra.change_slots: at most `changes_at_once` hosts between start and confirmation."""

from __future__ import annotations

import gevent
import pytest

from mgmt_vrf.pyinfra.change_slots import ChangeSlots


def _run(slots: ChangeSlots, limits: dict[str, int], hold: float = 0.01) -> list[tuple[str, int]]:
    """Every host at once, as pyinfra runs them; each holds its slot for `hold` seconds.
    Returns (host, hosts changing when it started) in the order they started."""
    started: list[tuple[str, int]] = []

    def change(name: str) -> None:
        with slots.slot(name, limits[name]):
            started.append((name, len(slots.changing)))
            gevent.sleep(hold)

    gevent.joinall([gevent.spawn(change, name) for name in limits], timeout=10, raise_error=True)
    return started


@pytest.mark.parametrize("limit", [1, 3, 10])
def test_no_more_hosts_change_at_once_than_the_bound(limit: int) -> None:
    slots = ChangeSlots()
    started = _run(slots, {f"h{i:02d}": limit for i in range(25)})
    assert len(started) == 25, "every host got its turn"
    assert slots.most == min(limit, 25)
    assert all(changing <= limit for _, changing in started)
    assert slots.changing == set()


def test_each_host_counts_against_its_own_bound() -> None:
    # Two hosts allow only themselves; the rest allow 4. A strict host never starts beside
    # another change, and a lax one never beside three others.
    limits = {"strict1": 1, "strict2": 1, **{f"lax{i}": 4 for i in range(8)}}
    slots = ChangeSlots()
    started = _run(slots, limits)
    assert sorted(name for name, _ in started) == sorted(limits)
    for name, changing in started:
        assert changing <= limits[name], (name, changing)


def test_a_change_that_fails_frees_its_slot() -> None:
    slots = ChangeSlots()
    order: list[str] = []

    def failing() -> None:
        with slots.slot("bad", 1):
            order.append("bad")
            gevent.sleep(0.01)
            raise RuntimeError("start failed")

    def next_one() -> None:
        with slots.slot("good", 1):
            order.append("good")

    bad = gevent.spawn(failing)
    good = gevent.spawn(next_one)
    gevent.joinall([bad, good], timeout=5)
    assert order == ["bad", "good"]
    assert isinstance(bad.exception, RuntimeError)
    assert good.successful() and slots.changing == set()


def test_a_waiting_host_is_told_once_how_many_are_changing() -> None:
    slots = ChangeSlots()
    told: list[int] = []

    def first() -> None:
        with slots.slot("a", 2):
            gevent.sleep(0.02)

    def waits() -> None:
        with slots.slot("c", 2, waiting=told.append):
            pass

    gevent.joinall(
        [gevent.spawn(first), gevent.spawn(lambda: _hold(slots, "b")), gevent.spawn(waits)],
        timeout=5,
    )
    assert told == [2]


def _hold(slots: ChangeSlots, name: str) -> None:
    with slots.slot(name, 2):
        gevent.sleep(0.03)
