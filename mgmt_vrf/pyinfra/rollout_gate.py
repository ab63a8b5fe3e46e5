"""
The waves of one pyinfra run: each host's change waits for its wave, and every step is
written to the run's record on the controller (mgmt_vrf.rollout decides, this waits).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from weakref import WeakKeyDictionary

from pyinfra import logger
from pyinfra.api import OperationError
from pyinfra.api.state import State

from mgmt_vrf.rollout import (
    Rollout,
    Turn,
    Waves,
    record_name,
    records_dir,
    write_record,
)

from .change_slots import WakeUps

# A record is rewritten at most this often while hosts change (a fleet of thousands would
# otherwise rewrite it thousands of times), and always once every host is done.
RECORD_INTERVAL = 1.0


class RolloutGate:
    """
    The hosts of one run, in inventory order, going in waves.

    **Example:**

    .. code:: python

        gate = rollout_gate(host.state, rollout, fleet_file)
        gate.planned(host.name, len(plan.changes))
        turn = gate.wait_turn(host.name, tell=host.log)
        if turn.go:
            gate.started(host.name)
            ...  # the armed change, confirmed or rolled back
            gate.finished(host.name, confirmed)

    Greenlets switch only in ``wait()``, so a decision and the state it reads are one step;
    a change that may decide a waiting host's turn wakes every waiter, and each asks again.
    """

    def __init__(self, hosts: list[str], rollout: Rollout, fleet: str) -> None:
        self.waves = Waves(hosts, rollout)
        self.fleet = fleet
        self.path = records_dir(os.environ) / record_name(self.waves.begun, os.getpid())
        self._wake_ups = WakeUps()
        self._written = 0.0
        self._told_path = False
        self._told_stop = False
        self._progress = 0

    def planned(self, host: str, changes: int) -> None:
        self.waves.planned(host, changes)
        self._changed()

    def failed(self, host: str, detail: str) -> None:
        self.waves.failed(host, detail)
        self._changed()

    def started(self, host: str) -> None:
        self.waves.started(host)
        self._changed()

    def finished(self, host: str, confirmed: bool, detail: str = "") -> None:
        self.waves.finished(host, confirmed, detail)
        self._changed()

    def never_started(self, host: str) -> None:
        self.waves.never_started(host)
        self._changed()

    def wait_turn(self, host: str, tell: Callable[[str], None]) -> Turn:
        told: int | None = -1  # the wave last told: None for "not known yet"
        rollout = self.waves.rollout.describe()
        while (turn := self.waves.turn(host)).waiting:
            wave = self.waves.entries[host].wave
            if wave != told and (wave is not None or told == -1):
                if wave is None:
                    tell(f"mgmt-vrf: waiting for the hosts before it to plan ({rollout})")
                else:
                    tell(
                        f"mgmt-vrf: in wave {wave} ({rollout}): waiting for the waves before "
                        "it to confirm"
                    )
                told = wave
            self._wake_ups.wait()
        return turn

    def _changed(self) -> None:
        done = self.waves.done
        if done or time.monotonic() - self._written >= RECORD_INTERVAL:
            self._write()
        if done and self.waves.stopped and not self._told_stop:
            self._told_stop = True
            self._tell_stop()
        if self.waves.progress != self._progress:
            self._progress = self.waves.progress
            self._wake_ups.wake_all()

    def _write(self) -> None:
        try:
            write_record(self.path, self.waves.record(self.fleet))
        except OSError as exc:
            if not self._told_path:
                self._told_path = True
                logger.warning(f"mgmt-vrf: cannot write the run record {self.path}: {exc}")
            return
        self._written = time.monotonic()
        if not self._told_path:
            self._told_path = True
            logger.info(f"mgmt-vrf: this run's record: {self.path}")

    def _tell_stop(self) -> None:
        by: dict[str, list[str]] = {}
        for entry in self.waves.entries.values():
            by.setdefault(entry.outcome, []).append(entry.host)
        parts = [f"{outcome}: {', '.join(hosts)}" for outcome, hosts in by.items()]
        logger.error(
            f"mgmt-vrf: the rollout stopped: {self.waves.stopped}. "
            + "; ".join(parts)
            + ". The hosts not started are untouched; fix the cause and run again: hosts "
            f"already confirmed have nothing to change (record: {self.path})"
        )


def _run_order(state: State, rollout: Rollout, parallel: int | None) -> list[str]:
    """The inventory's order, when pyinfra runs every host of the run at once (its default
    up to 20 hosts per CPU). Otherwise the order in which pyinfra starts them: a host waits
    only for hosts started before it, while the later ones wait for a free place, so no
    host can wait for one that is not running yet."""
    active = state.inventory.get_active_hosts()  # pyinfra starts them in this order
    names = {host.name for host in active}
    at_once = min(getattr(state.pool, "size", None) or len(active), parallel or len(active))
    if at_once >= len(active):
        return [host.name for host in state.inventory if host.name in names]
    if rollout.waves:  # all at once, the order does not matter
        logger.warning(
            f"mgmt-vrf: pyinfra runs {at_once} of this run's {len(active)} hosts at once, so "
            "the waves follow the order in which it starts them, not the inventory's; "
            f"run with --parallel {len(active)} for the inventory's order"
        )
    return [host.name for host in active]


# One run is one State: every host of it shares its gate.
_GATES: WeakKeyDictionary[State, RolloutGate] = WeakKeyDictionary()


def rollout_gate(
    state: State, host: str, rollout: Rollout, fleet: str = "", parallel: int | None = None
) -> RolloutGate:
    """The run's gate, made by the first host to ask; every host must bring the same
    rollout (the deploy checks that before any host is changed)."""
    gate = _GATES.get(state)
    if gate is None:
        gate = _GATES[state] = RolloutGate(_run_order(state, rollout, parallel), rollout, fleet)
        for name, detail in _EARLY.pop(state, []):
            gate.failed(name, detail)
    elif gate.waves.rollout != rollout:
        gate.failed(host, "its rollout is not the run's")
        raise OperationError(
            f"this host's rollout ({rollout.describe()}) is not the run's "
            f"({gate.waves.rollout.describe()}); a run has one rollout: give every host "
            "the same one"
        )
    return gate


# Hosts that failed before the run's gate existed (their spec did not pass its checks):
# the gate counts them when it is made, or the hosts after them would wait for their plan.
_EARLY: WeakKeyDictionary[State, list[tuple[str, str]]] = WeakKeyDictionary()


def note_failure(state: State, host: str, detail: str) -> None:
    gate = _GATES.get(state)
    if gate is None:
        _EARLY.setdefault(state, []).append((host, detail))
    else:
        gate.failed(host, detail)
