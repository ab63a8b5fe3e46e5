"""The controller's half of the armed transaction: confirm the change from a new connection,
or see the host back in its state from before the run, and say which of the two happened.

The host owns the deadline. Its rollback is due `rollback_timeout` seconds after its apply
ends, or at the hard bound (`apply_timeout + rollback_timeout` after the start) if the apply
never ends; every answer from the host carries its clock and that deadline, and the
controller follows them rather than its own guess. So a slow host (a busy CPU, a long
`nmcli --wait`, a service slow to restart) keeps its whole confirmation window, and once
the host has rolled back the controller says so within seconds.

No pyinfra import: `mgmt_vrf/pyinfra/operations.py` gives it a `Remote` over the host's ssh
connection, the unit tests a simulated host and a fake clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from . import paths
from .apply import APPLY_DELAY, RunStatus
from .hoststate import HostState
from .leaks import leaks
from .model import HostSpec
from .plan import Plan, plan
from .rollback import differences, restarted_units, touched_paths

# A new connection must be made this long before the host's rollback is due, or we stop
# trying and let the host roll back: confirming in the last seconds would race its timer.
CONFIRM_GUARD = 5
RETRY_INTERVAL = 2
# Longest wait for the apply on one connection: one opened while the apply runs may be cut
# by it (a VRF torn down takes the sessions bound to it along).
WAIT_SLICE = 20
# After the host's rollback was due: time for it to run and for sshd to answer again. The
# controller gives up this long after the deadline, whatever it is waiting for.
ROLLBACK_MARGIN = 60
# Shortest time one look at the host gets (run the probe, read its output): a look may use
# what is left of the window, for on a busy host the probe is slow, and a look abandoned
# half-way leaves its probe running there, busier still.
READ_LIMIT = 60
# Longest one status look may take while the controller waits for the rollback. The look
# is a tiny command, but a connection opened while the rollback moves the port (out of the
# VRF, or back into it) can stall with no answer: given up on after this, a stalled look
# leaves time for the next one instead of eating the rest of the margin.
POLL_LIMIT = 30

# Why a change was rolled back:
# - "wrong": the apply failed, or the host was reached but is not as the fleet file says;
# - "unreachable": after the apply ended, no new connection got through: the change most
#   likely cut the management path;
# - "late": the host was reached after the change, but no confirmation landed before its
#   deadline: nothing was found wrong with the change;
# - "hung": the apply did not end before the hard bound;
# - "early": the host rolled back by itself before its deadline, untold: a reboot during the
#   change (its boot unit undoes an unconfirmed change), or rollback.sh run by hand.
Cause = Literal["wrong", "unreachable", "late", "hung", "early"]

_LABELS: dict[Cause, str] = {
    "wrong": "wrong state",
    "unreachable": "no path",
    "late": "confirmation too late",
    "hung": "apply hung",
    "early": "rolled back before its deadline",
}


class Remote(Protocol):
    """The host, each call over a NEW ssh connection unless it says otherwise."""

    def wait(self, seconds: int, within: float) -> RunStatus | None:
        """The run's status once the apply ended or `seconds` passed; None if unreachable.
        The command gets `within` seconds, once connected (connecting has its own bound)."""

    def read(self, within: float) -> tuple[RunStatus, HostState] | None:
        """The run's status and the host's state, or None if unreachable."""

    def confirm(self) -> bool:
        """Disarm, on the connection of the last `read`: True if the host took it."""

    def roll_back_now(self) -> None:
        """Tell the host to roll back at once (detached, on the last `read`'s connection)."""


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


@dataclass(frozen=True)
class Outcome:
    confirmed: bool
    cause: Cause | None = None
    reason: str = ""
    # The host said its rollback finished, and how it then differs from before the run.
    rolled_back: bool = False
    differences: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return _LABELS[self.cause] if self.cause else ""

    def message(self, spec: HostSpec) -> str:
        if self.confirmed:
            return "confirmed over a new ssh connection, rollback disarmed"
        log = f"{paths.RUN_DIR}/log"
        if not self.rolled_back:
            return (
                f"{self.reason}; the host's own rollback was due by now, but it still does not "
                f"say it has rolled back {ROLLBACK_MARGIN} s later. Use its console: "
                f"`cat {log}` says what ran, `sh {paths.ROLLBACK_SCRIPT}` rolls back by hand."
            )
        if self.differences:
            return (
                f"ROLLED BACK ({self.label}: {self.reason}), but the host is not exactly as "
                "before the run: " + "; ".join(self.differences[:8]) + f". See {log} on the host."
            )
        return (
            f"ROLLED BACK ({self.label}): {self.reason}. The host is back in its state from "
            f"before the run (log: {log}). {_advice(self.cause, spec)}"
        )


def _advice(cause: Cause | None, spec: HostSpec) -> str:
    if cause == "late":
        return (
            "Nothing was found wrong with the change: run again; if it happens again, raise "
            f"rollback_timeout (now {spec.rollback_timeout} s) or let fewer hosts change at "
            f"once (changes_at_once, now {spec.changes_at_once})."
        )
    if cause == "early":
        return "The change itself was not judged: once the host is up, run again."
    if cause == "hung":
        return (
            f"The log's last lines name the step that did not finish; if the host is only "
            f"slow, raise apply_timeout (now {spec.apply_timeout} s)."
        )
    return "Fix the fleet file and run again."


def verdict(status: RunStatus, spec: HostSpec, after: HostState) -> str | None:
    """Why the change must be undone, or None when the host is converged."""
    if status.applied:
        left = plan(spec, after)
        if not left.converged:
            return "after the change the host still differs: " + "; ".join(
                c.why for c in left.changes[:5]
            )
        # Refused before the change when it was there already: this one came with it.
        found = leaks(spec, after)
        return "after the change, " + "; ".join(found) if found else None
    if status.apply.startswith("failed"):
        return f"the change {status.apply}"
    if status.apply == "running":
        return "the change was still running"
    return f"the change left no status ({paths.RUN_DIR}/log on the host)"


class _Deadline:
    """When the host's rollback is due, on the controller's clock."""

    def __init__(self, clock: Clock, due: float) -> None:
        self.clock = clock
        self.due = due
        self.heard = False  # from the host itself, not our estimate

    def follow(self, status: RunStatus, sent: float) -> None:
        # From the moment the question was sent: the host answered later, so this errs
        # early, on the side of not confirming in the timer's last seconds.
        left = status.seconds_left
        if left is not None:
            self.due = sent + left
            self.heard = True

    @property
    def left(self) -> float:
        return self.due - self.clock.monotonic()


@dataclass
class _Seen:
    """What the controller learnt of the run, for the verdict at the end."""

    ended: bool = False  # the host said its apply ended
    checked: bool = False  # a connection opened after the end found it armed and converged
    told: bool = False  # we told the host to roll back, for `cause`
    cause: Cause | None = None
    reason: str = ""
    last: RunStatus | None = None


def confirm_or_roll_back(
    remote: Remote, clock: Clock, spec: HostSpec, before: HostState, result: Plan, started: float
) -> Outcome:
    """Confirm the change from a new connection, or make sure the host is back as before.

    A connection opened while the apply still runs can outlive the change that breaks the
    path (its socket is not bound to the VRF), so reachability is judged only from a
    connection opened after the apply has ended. `started` is the controller's clock just
    before the start command was sent.
    """
    # The hard bound, until the host says when its rollback is due.
    deadline = _Deadline(clock, started + spec.apply_timeout + spec.rollback_timeout)
    seen = _Seen()
    clock.sleep(APPLY_DELAY)
    if _confirm(remote, clock, spec, deadline, seen):
        return Outcome(confirmed=True)
    return _await_rollback(remote, clock, spec, before, result, deadline, seen)


def _confirm(
    remote: Remote, clock: Clock, spec: HostSpec, deadline: _Deadline, seen: _Seen
) -> bool:
    """Until the host's deadline: wait for the apply to end, check the host from a new
    connection and confirm; or tell it to roll back now when it is not as it should be."""
    while deadline.left > CONFIRM_GUARD:
        sent = clock.monotonic()
        if not seen.ended:
            wait = max(1, min(WAIT_SLICE, int(deadline.left - CONFIRM_GUARD)))
            status = remote.wait(wait, within=wait + 15)
            if status is None:
                clock.sleep(RETRY_INTERVAL)
                continue
            seen.last = status
            deadline.follow(status, sent)
            if status.rolling_back or status.rolled_back:
                return False
            seen.ended = status.ended
            if not seen.ended:
                continue
            sent = clock.monotonic()
        read = remote.read(within=max(READ_LIMIT, deadline.left))
        if read is None:
            clock.sleep(RETRY_INTERVAL)
            continue
        status, after = read
        seen.last = status
        deadline.follow(status, sent)
        if status.rolling_back or status.rolled_back:
            # No proof the change's path works: a connect that took long (SYN retries) may
            # have got through only once the rollback had restored the old path.
            return False
        if status.confirmed:
            return True  # our last confirmation landed, though its answer was lost
        problem = verdict(status, spec, after)
        if problem is not None:
            seen.cause, seen.reason = "wrong", problem
            remote.roll_back_now()
            seen.told = True
            return False
        seen.checked = True
        if deadline.left > 1 and remote.confirm():
            return True
        # Refused (the rollback won the race) or its answer lost: the next look says which.
        clock.sleep(RETRY_INTERVAL)
    return False


def _await_rollback(
    remote: Remote,
    clock: Clock,
    spec: HostSpec,
    before: HostState,
    result: Plan,
    deadline: _Deadline,
    seen: _Seen,
) -> Outcome:
    """The host rolls back by itself at its deadline (or has just been told to): wait for it,
    then compare the host with its state from before the run."""
    # Until the deadline the host's timer does the work; unless the host already said it
    # is rolling back (its boot unit does that for a change a reboot left unconfirmed).
    early = seen.last is not None and (seen.last.rolling_back or seen.last.rolled_back)
    if deadline.heard and not seen.told and not early:
        clock.sleep(max(0.0, deadline.left + 1))
    began = clock.monotonic()
    while (left := max(began, deadline.due) + ROLLBACK_MARGIN - clock.monotonic()) > 0:
        sent = clock.monotonic()
        # The run's status alone while waiting: the full probe only once there is
        # something to compare, so a busy host is not made busier.
        status = remote.wait(0, within=POLL_LIMIT)
        if status is not None:
            seen.last = status
            deadline.follow(status, sent)
            if status.confirmed and not status.rolling_back:
                # Our confirmation landed though its answer was lost, or someone confirmed
                # by hand: the change stays.
                return Outcome(confirmed=True)
            if status.rolled_back:
                read = remote.read(within=max(READ_LIMIT, left))
                if read is not None:
                    cause, reason = _cause(seen, spec)
                    diff = differences(
                        spec, before, read[1], touched_paths(result), restarted_units(result)
                    )
                    return Outcome(False, cause, reason, rolled_back=True, differences=tuple(diff))
            elif (
                status.armed and not seen.told and deadline.heard and deadline.left < -CONFIRM_GUARD
            ):
                # Past its deadline and still armed: its timer did not fire.
                remote.roll_back_now()
                seen.told = True
        clock.sleep(RETRY_INTERVAL)
    cause, reason = _cause(seen, spec)
    return Outcome(False, cause, reason)


def _cause(seen: _Seen, spec: HostSpec) -> tuple[Cause, str]:
    """Why the host rolled back, from what we saw and what the host says now."""
    if seen.cause is not None:
        return seen.cause, seen.reason
    timeout = spec.rollback_timeout
    last = seen.last
    if seen.checked:
        return "late", (
            "the host was reached after the change and found as the fleet file says, but "
            f"its rollback came due before the confirmation landed ({timeout} s after the "
            "apply ended, rollback_timeout)"
        )
    if (
        last is not None
        and last.rolled_back
        and not seen.told
        and last.seconds_left is not None
        and last.seconds_left > 0
    ):
        return "early", (
            f"the host has rolled back by itself, its deadline still {last.seconds_left} s "
            "away: a reboot during the change does that (the boot unit undoes a change never "
            "confirmed), as does rollback.sh run by hand"
        )
    # A rollback that stopped a running apply leaves its status at "running".
    if last is not None and last.apply == "running":
        return "hung", (
            f"the change was still running at the hard bound ({spec.apply_timeout} s for the "
            f"apply, apply_timeout, then {timeout} s, rollback_timeout)"
        )
    if seen.ended or (last is not None and last.ended):
        return "unreachable", (
            f"the change ended, but no new ssh connection could be opened within {timeout} s "
            "after it ended (rollback_timeout): the change most likely cut the management path"
        )
    return "unreachable", (
        "no new ssh connection reached the host after the change started; it rolled back by itself"
    )
