"""Waves: the order in which one run changes its hosts, and the record of what came of it.

A rollout changes the hosts that need a change in waves, in inventory order. The first
wave (the canary) goes alone; each next wave starts only when every host of the waves
before it has confirmed. The first rollback stops the rollout, and so do more failures
than `failures_allowed` (a host refused by its preflight, a probe that failed: hosts left
untouched): hosts of later waves are then never touched, and each says why. A second run
resumes: the hosts already confirmed have nothing left to change, so the waves count only
the ones still to do, canary first again.

Without waves every host that needs a change is in the first one, as pyinfra runs hosts.
`changes_at_once` still bounds how many hosts of one wave change at the same moment.

No pyinfra or gevent import: `mgmt_vrf/pyinfra/rollout_gate.py` makes the hosts wait, this
decides what they wait for, and writes the run's record.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

# A wave's size: a number of hosts, or a share of the run's hosts ("10%", rounded up).
WaveSize = int | str

RECORD_FORMAT = 1


@dataclass(frozen=True)
class Rollout:
    """How a run's changes roll out: the waves' sizes, the last one repeating."""

    waves: tuple[WaveSize, ...] = ()  # none: every host that needs a change at once
    failures_allowed: int = 0

    def sizes(self, hosts: int) -> Iterator[int]:
        """Each wave's number of hosts, for a run of `hosts` hosts; endless."""
        if not self.waves:
            while True:
                yield max(1, hosts)
        for size in self.waves:
            yield _hosts(size, hosts)
        last = _hosts(self.waves[-1], hosts)
        while True:
            yield last

    def describe(self) -> str:
        if not self.waves:
            return "every host at once"
        shown = ", ".join(json.dumps(size) for size in self.waves)
        return f"waves = [{shown}], failures_allowed = {self.failures_allowed}"


ALL_AT_ONCE = Rollout()


def percent(size: str) -> float | None:
    """The share a size like "10%" names, or None if it is not one."""
    if not size.endswith("%"):
        return None
    try:
        share = float(size[:-1])
    except ValueError:
        return None
    return share if math.isfinite(share) else None


def _hosts(size: WaveSize, hosts: int) -> int:
    if isinstance(size, int):
        return size
    share = percent(size)
    assert share is not None  # the fleet file's checks allow nothing else
    return max(1, math.ceil(hosts * share / 100))


Outcome = Literal[
    "pending",  # not planned yet
    "unchanged",  # already converged: nothing to do
    "waiting",  # planned, waiting for its wave
    "changing",  # its change started
    "confirmed",
    "rolled back",
    "failed",  # before its change: nothing was touched
    "not started",  # the rollout stopped before its wave: nothing was touched
]
_DONE = frozenset({"unchanged", "confirmed", "rolled back", "failed", "not started"})


@dataclass
class HostEntry:
    host: str
    outcome: Outcome = "pending"
    wave: int | None = None
    changes: int | None = None  # how many changes its plan had
    detail: str = ""
    started: float | None = None
    ended: float | None = None


@dataclass(frozen=True)
class Turn:
    """What a host that needs a change is told: wait, go, or never (the rollout stopped)."""

    go: bool = False
    stopped: str = ""  # why the rollout stopped, when it did

    @property
    def waiting(self) -> bool:
        return not self.go and not self.stopped


WAIT = Turn()
GO = Turn(go=True)


@dataclass
class Waves:
    """One run's rollout over its hosts (in the run's order): who goes when, and the record.

    Every question costs O(1) and every event O(1) amortized, so a run of thousands of hosts
    pays nothing for it: waves are given out as the prefix of planned hosts grows, and each
    wave counts its hosts not done yet. `progress` changes only when a waiting host's turn
    may have changed (the lowest wave not done moved, a waiting host got its wave, the
    rollout stopped): the adapter wakes its waiters then, not at every event.
    """

    hosts: list[str]
    rollout: Rollout = ALL_AT_ONCE
    wall: Any = time.time  # seconds since the epoch, for the record
    entries: dict[str, HostEntry] = field(init=False)
    stopped: str = field(init=False, default="")
    begun: float = field(init=False)
    progress: int = field(init=False, default=0)
    unfinished: int = field(init=False)  # hosts not done (planning, waiting or changing)

    def __post_init__(self) -> None:
        self.hosts = list(self.hosts)
        self.entries = {name: HostEntry(name) for name in self.hosts}
        self.begun = self.wall()
        self.unfinished = len(self.entries)
        self._sizes = self.rollout.sizes(len(self.hosts))
        self._wave, self._room = 1, next(self._sizes)
        self._next = 0  # the first host of the run not given its place yet
        self._open: dict[int, int] = {}  # wave -> its hosts not done yet
        self._low: int | None = None  # the lowest wave with hosts not done
        self._failures = 0

    @property
    def done(self) -> bool:
        return self.unfinished == 0

    def _entry(self, host: str) -> HostEntry:
        entry = self.entries.get(host)
        if entry is None:  # a host pyinfra added after the run began: last in line
            entry = self.entries[host] = HostEntry(host)
            self.hosts.append(host)
            self.unfinished += 1
        return entry

    def planned(self, host: str, changes: int) -> None:
        """The host's plan is known: `changes` changes (0: converged already)."""
        entry = self._entry(host)
        if entry.outcome != "pending":
            return  # planned once per run: the record keeps the first plan
        entry.changes = changes
        if changes:
            entry.outcome = "waiting"
        else:
            self._end(entry, "unchanged")
        if not self.rollout.waves:
            if changes:  # every host in the first wave, whoever planned before it
                self._join(entry, 1)
            return
        self._assign(host)

    def failed(self, host: str, detail: str) -> None:
        """The host failed before its change started: untouched."""
        entry = self._entry(host)
        if entry.outcome in _DONE:
            return
        self._end(entry, "failed", detail)
        self._failures += 1
        allowed = self.rollout.failures_allowed
        if self.rollout.waves and self._failures > allowed:
            self._stop(
                f"{self._failures} {'host' if self._failures == 1 else 'hosts'} failed before "
                f"changing (last: {host}), more than failures_allowed = {allowed}"
            )
        if self.rollout.waves:
            self._assign(host)

    def started(self, host: str) -> None:
        entry = self._entry(host)
        entry.outcome, entry.started = "changing", self.wall()

    def finished(self, host: str, confirmed: bool, detail: str = "") -> None:
        entry = self._entry(host)
        self._end(entry, "confirmed" if confirmed else "rolled back", detail)
        if not confirmed and self.rollout.waves:
            self._stop(f"{host} rolled back in wave {entry.wave}")

    def never_started(self, host: str) -> None:
        self._end(self._entry(host), "not started", self.stopped)

    def turn(self, host: str) -> Turn:
        """May the host start its change now?"""
        if self.stopped:
            return Turn(stopped=self.stopped)
        wave = self._entry(host).wave
        if wave is None:
            return WAIT  # an earlier host has not planned yet
        return GO if self._low is None or self._low >= wave else WAIT

    def _stop(self, why: str) -> None:
        if not self.stopped:
            self.stopped = why
            self.progress += 1

    def _end(self, entry: HostEntry, outcome: Outcome, detail: str = "") -> None:
        was_open = entry.outcome not in _DONE
        entry.outcome, entry.detail, entry.ended = outcome, detail, self.wall()
        if not was_open:
            return
        self.unfinished -= 1
        if entry.wave is None:
            return
        self._open[entry.wave] -= 1
        if entry.wave == self._low and not self._open[entry.wave]:
            self._low = next(
                (w for w in range(entry.wave + 1, self._wave + 1) if self._open.get(w)), None
            )
            self.progress += 1

    def _join(self, entry: HostEntry, wave: int) -> None:
        entry.wave = wave
        if entry.outcome in _DONE:
            return  # failed after planning: counted nowhere
        self._open[wave] = self._open.get(wave, 0) + 1
        if self._low is None or wave < self._low:
            self._low = wave

    def _assign(self, planner: str) -> None:
        """Waves for the hosts that need a change, in the run's order, as far as every host
        before them has planned: a host's wave never depends on a later one."""
        while self._next < len(self.hosts):
            name = self.hosts[self._next]
            entry = self.entries[name]
            if entry.outcome == "pending":
                return
            self._next += 1
            if not entry.changes:
                continue
            if self._room == 0:
                self._wave, self._room = self._wave + 1, next(self._sizes)
            self._room -= 1
            self._join(entry, self._wave)
            if name != planner:
                self.progress += 1  # a host already waiting may know its wave now

    def record(self, fleet: str = "") -> dict[str, Any]:
        """The run as JSON data: per host its wave, plan size, outcome and times."""
        return {
            "format": RECORD_FORMAT,
            "fleet_file": fleet,
            "began": _stamp(self.begun),
            "rollout": {
                "waves": list(self.rollout.waves),
                "failures_allowed": self.rollout.failures_allowed,
            },
            "stopped": self.stopped or None,
            "hosts": [
                {
                    "host": e.host,
                    "wave": e.wave,
                    "changes": e.changes,
                    "outcome": e.outcome,
                    "detail": e.detail,
                    "started": _stamp(e.started),
                    "ended": _stamp(e.ended),
                }
                for e in (self.entries[name] for name in self.hosts)
            ],
        }


def _stamp(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def summary(record: dict[str, Any]) -> str:
    """One line for a record: when, and how many hosts came out how."""
    counts: dict[str, int] = {}
    for entry in record.get("hosts", []):
        counts[entry["outcome"]] = counts.get(entry["outcome"], 0) + 1
    parts = ", ".join(f"{n} {outcome}" for outcome, n in counts.items())
    stopped = f"; stopped: {record['stopped']}" if record.get("stopped") else ""
    return f"last run {record.get('began')}: {parts or 'no hosts'}{stopped}"


def outcome_lines(record: dict[str, Any], hosts: Sequence[str] | None = None) -> list[str]:
    """One line per host of the record that did not end converged (for the report)."""
    lines = []
    for entry in record.get("hosts", []):
        if hosts is not None and entry["host"] not in hosts:
            continue
        if entry["outcome"] in ("unchanged", "confirmed"):
            continue
        wave = f" (wave {entry['wave']})" if entry.get("wave") else ""
        detail = f": {entry['detail']}" if entry.get("detail") else ""
        lines.append(f"  {entry['host']}: {entry['outcome']}{wave}{detail}")
    return lines


RECORDS_ENV = "MGMT_VRF_RUN_RECORDS"


def records_dir(environ: Mapping[str, str]) -> Path:
    """Where the controller keeps one JSON record per run: $MGMT_VRF_RUN_RECORDS, else
    $XDG_STATE_HOME/mgmt-vrf/runs (~/.local/state/mgmt-vrf/runs)."""
    given = environ.get(RECORDS_ENV, "").strip()
    if given:
        return Path(given)
    state = environ.get("XDG_STATE_HOME", "").strip()
    base = Path(state) if state else Path(environ.get("HOME", "~")).expanduser() / ".local/state"
    return base / "mgmt-vrf" / "runs"


def record_name(began: float, pid: int) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(began)) + f"-{pid}.json"


def write_record(path: Path, record: Mapping[str, Any]) -> None:
    """Whole or not at all: a reader never sees half a record."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = path.with_name(path.name + ".tmp")
    staged.write_text(json.dumps(record, indent=1) + "\n")
    os.replace(staged, path)


def latest_record(directory: Path, fleet: str = "") -> tuple[Path, dict[str, Any]] | None:
    """The newest readable record (of that fleet file, when given), or None."""
    for path in sorted(directory.glob("*.json"), reverse=True):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(record, dict) and (not fleet or record.get("fleet_file") == fleet):
            return path, record
    return None
