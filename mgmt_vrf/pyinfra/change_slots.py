"""
How many hosts of one pyinfra run are between the start of their change and its
confirmation: a host past its bound (``changes_at_once``) waits, unarmed and unchanged.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from gevent.event import Event


class WakeUps:
    """Greenlets waiting for a change of shared state: each waits, any one wakes them all,
    and every one woken asks again (so no wake-up is ever lost)."""

    def __init__(self) -> None:
        self._waiters: list[Event] = []

    def wait(self) -> None:
        wake = Event()
        self._waiters.append(wake)
        try:
            wake.wait()
        finally:
            self._waiters.remove(wake)

    def wake_all(self) -> None:
        for wake in self._waiters:
            wake.set()


class ChangeSlots:
    """
    The hosts changing at once in this process (pyinfra runs each host in a greenlet).

    **Example:**

    .. code:: python

        with SLOTS.slot(host.name, spec.changes_at_once, waiting=tell):
            ...  # start the change, then confirm it or see it rolled back

    Each host asks with its own bound, so a fleet that sets ``changes_at_once`` per group
    means "start only while fewer than N hosts are changing". Every release wakes every
    waiter, and each checks its own bound again: no wake-up is lost, and greenlets switch
    only in ``wait()``, so the check and the taking of the slot are one step.
    """

    def __init__(self) -> None:
        self.changing: set[str] = set()
        self.most = 0  # the most hosts seen changing at once (the unit tests read it)
        self._wake_ups = WakeUps()

    @contextlib.contextmanager
    def slot(
        self, name: str, limit: int, waiting: Callable[[int], None] | None = None
    ) -> Iterator[None]:
        told = False
        while len(self.changing) >= limit:
            if waiting is not None and not told:
                waiting(len(self.changing))
                told = True
            self._wake_ups.wait()
        self.changing.add(name)
        self.most = max(self.most, len(self.changing))
        try:
            yield
        finally:
            self.changing.discard(name)
            self._wake_ups.wake_all()


# One run is one process: every host of it shares these slots.
SLOTS = ChangeSlots()
