"""The controller's confirm-or-roll-back logic against a simulated host, on a fake clock.

The simulated host keeps the real deadline rules (the rollback is due `rollback_timeout`
after the apply ends, or at the hard bound `apply_timeout + rollback_timeout` after the
start) and answers with its clock and deadline as the real wait command does. Every call
costs fake time, an unreachable host the connect timeout; no test sleeps for real.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import pytest

from mgmt_vrf import confirm
from mgmt_vrf.apply import APPLY_DELAY, RunStatus
from mgmt_vrf.hoststate import HostState
from mgmt_vrf.model import HostSpec
from mgmt_vrf.plan import plan

from .builders import broken_state, converged_state, seed_spec

EPOCH = 1_800_000_000  # the host's clock at fake time 0
CONNECT_TIMEOUT = 10.0
LATENCY = 1.5  # one command over a new connection on a busy host
ROLLBACK_TAKES = 20.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += max(0.0, seconds)


@dataclass
class SimHost:
    """The host side of one run, started at fake time 0."""

    clock: FakeClock
    spec: HostSpec
    before: HostState
    apply_takes: float | None  # None: the apply hangs
    converged: bool = True  # the state after the apply is the fleet file's
    reachable_after_end: bool = True  # False: the change cut the management path
    path_back_at: float = float("inf")  # ... until this time (someone mended it by hand)
    timer_fires: bool = True
    confirm_reply_lost: bool = False
    confirm_refused: bool = False  # the host's timer wins the race for the armed marker
    confirm_drops: int = 0  # this many confirmations never reach the host
    connect_takes: float = 0.0  # slow connects after the end (SYN retries), judged after
    stalls_while_rolling_back: bool = False  # a connection the rollback moves never answers
    rolls_back_at: float | None = None  # before its deadline, by itself (a reboot, say)
    fails: str | None = None  # apply.sh stopped at a step that failed, with this message
    after_rollback: HostState | None = None  # what the rollback left, when not `before`
    # what happened
    confirmed_at: float | None = None
    told_at: float | None = None

    @property
    def end(self) -> float | None:
        if self.apply_takes is None:
            return None
        end = APPLY_DELAY + self.apply_takes
        return end if end < self.bound else None

    @property
    def bound(self) -> float:
        return float(self.spec.apply_timeout + self.spec.rollback_timeout)

    @property
    def deadline(self) -> float:
        end = self.end
        if end is None:
            return self.bound
        return min(self.bound, end + self.spec.rollback_timeout)

    @property
    def rollback_start(self) -> float | None:
        starts = [t for t in (self.told_at, self.rolls_back_at) if t is not None]
        if self.timer_fires:
            starts.append(self.deadline)
        if self.confirmed_at is not None:
            starts = [t for t in starts if t < self.confirmed_at]
        return min(starts) if starts else None

    def status(self) -> RunStatus:
        now = self.clock.now
        start = self.rollback_start
        rolling = start is not None and now >= start
        end = self.end
        if end is not None and now >= end and (start is None or end <= start):
            apply = f"failed: {self.fails}" if self.fails else "done"
        else:
            apply = "running"
        return RunStatus(
            apply=apply,
            armed=not rolling and self.confirmed_at is None,
            confirmed=self.confirmed_at is not None,
            rolling_back=rolling,
            rolled_back=rolling and start is not None and now >= start + ROLLBACK_TAKES,
            clock=EPOCH + int(now),
            deadline=EPOCH + int(self.deadline),
        )

    def reachable(self) -> bool:
        now = self.clock.now
        start = self.rollback_start
        if start is not None and now >= start + ROLLBACK_TAKES:
            return True
        end = self.end
        return end is None or now < end or self.reachable_after_end or now >= self.path_back_at

    def _connect(self, within: float) -> bool:
        start = self.rollback_start
        rolling = start is not None and start <= self.clock.now < start + ROLLBACK_TAKES
        if self.stalls_while_rolling_back and rolling:
            self.clock.sleep(within)
            return False
        end = self.end
        if end is not None and self.clock.now >= end:
            self.clock.sleep(self.connect_takes)
        if not self.reachable():
            self.clock.sleep(min(within, CONNECT_TIMEOUT))
            return False
        if within < LATENCY:
            self.clock.sleep(within)
            return False
        self.clock.sleep(LATENCY)
        return True

    # --- the Remote protocol -------------------------------------------------------------

    def wait(self, seconds: int, within: float) -> RunStatus | None:
        if not self._connect(within):
            return None
        end = self.end
        if end is None or self.clock.now < end:
            target = self.clock.now + seconds if end is None else min(end, self.clock.now + seconds)
            self.clock.sleep(target - self.clock.now)
        return self.status()

    def read(self, within: float) -> tuple[RunStatus, HostState] | None:
        if not self._connect(within):
            return None
        status = self.status()
        if status.rolled_back:
            return status, self.after_rollback or self.before
        if not status.applied:
            return status, self.before
        return status, converged_state() if self.converged else broken_state()

    def confirm(self) -> bool:
        if self.confirm_drops:
            self.confirm_drops -= 1
            return False
        if self.confirm_refused:
            self.told_at = self.clock.now  # the timer fired first
            return False
        status = self.status()
        if not status.armed:
            return False
        self.confirmed_at = self.clock.now
        return not self.confirm_reply_lost

    def roll_back_now(self) -> None:
        self.told_at = self.clock.now


def run(**kwargs: object) -> tuple[confirm.Outcome, SimHost]:
    spec = kwargs.pop("spec", seed_spec())
    assert isinstance(spec, HostSpec)
    clock = FakeClock()
    before = broken_state()
    host = SimHost(clock, spec, before, **kwargs)  # type: ignore[arg-type]
    result = plan(spec, before)
    outcome = confirm.confirm_or_roll_back(host, clock, spec, before, result, started=0.0)
    return outcome, host


def test_a_slow_apply_keeps_its_whole_confirmation_window() -> None:
    # 118 s of apply against rollback_timeout = 120: a deadline counted from the start would
    # leave no time to confirm. Counted from the end, the host is confirmed.
    outcome, host = run(apply_takes=118.0)
    assert outcome.confirmed, outcome
    assert host.confirmed_at is not None and host.confirmed_at > host.spec.rollback_timeout
    assert host.rollback_start is None


def test_an_apply_longer_than_the_timeout_itself_is_still_confirmed() -> None:
    outcome, host = run(apply_takes=250.0)  # under apply_timeout (300)
    assert outcome.confirmed and host.confirmed_at is not None
    assert host.confirmed_at > 250.0


def test_a_change_that_cuts_the_path_rolls_back_at_timeout_after_the_end() -> None:
    outcome, host = run(apply_takes=10.0, reachable_after_end=False)
    assert not outcome.confirmed and outcome.rolled_back and outcome.differences == ()
    assert outcome.cause == "unreachable"
    rolled = host.rollback_start
    assert rolled is not None and rolled == pytest.approx(APPLY_DELAY + 10.0 + 120)
    # Reported within seconds of the host's rollback finishing.
    assert host.clock.now - (rolled + ROLLBACK_TAKES) <= 2 * LATENCY + 2 + 10
    message = outcome.message(host.spec)
    assert message.startswith("ROLLED BACK (no path): the change ended, but no new ssh")
    assert "Fix the fleet file" in message


def test_a_hung_apply_rolls_back_at_the_hard_bound() -> None:
    spec = replace(seed_spec(), apply_timeout=30, rollback_timeout=15)
    outcome, host = run(spec=spec, apply_takes=None)
    assert outcome.rolled_back and outcome.cause == "hung"
    assert host.rollback_start == pytest.approx(45.0)
    assert host.clock.now <= 45.0 + ROLLBACK_TAKES + 2 * LATENCY + 2 + 30
    message = outcome.message(spec)
    assert "ROLLED BACK (apply hung)" in message and "apply_timeout (now 30 s)" in message
    assert "Fix the fleet file" not in message


def test_a_look_stalled_by_the_rollback_does_not_use_up_the_margin() -> None:
    # Seen on the lab: the look that began while the rollback moved the port never
    # answered, and, bounded only by the margin, it outlasted the rollback's own end.
    spec = replace(seed_spec(), apply_timeout=30, rollback_timeout=15)
    outcome, host = run(spec=spec, apply_takes=None, stalls_while_rolling_back=True)
    assert outcome.rolled_back and outcome.cause == "hung", outcome
    done = 45.0 + ROLLBACK_TAKES
    assert host.clock.now <= done + confirm.POLL_LIMIT + 2 * LATENCY + 2


def test_a_host_that_rolled_back_long_before_its_deadline_is_reported_at_once() -> None:
    # Seen on the lab: a host rebooted in the middle of its change rolls the change back at
    # boot. The controller, once it got through and read "rolled back", still slept until
    # the deadline of a 900 s window before it said so.
    spec = replace(seed_spec(), rollback_timeout=900)
    outcome, host = run(spec=spec, apply_takes=10.0, reachable_after_end=False, rolls_back_at=60.0)
    assert outcome.rolled_back and outcome.differences == () and outcome.cause == "early"
    message = outcome.message(spec)
    assert message.startswith("ROLLED BACK (rolled back before its deadline): the host has")
    assert "a reboot during the change does that" in message
    assert "once the host is up, run again" in message and "Fix the fleet file" not in message
    assert host.clock.now <= 60.0 + ROLLBACK_TAKES + 2 * LATENCY + 2 + 2 * CONNECT_TIMEOUT


def test_a_reboot_in_the_middle_of_the_apply_is_not_called_a_hung_apply() -> None:
    # The apply never ended (the host went down under it); its status stays "running".
    outcome, host = run(apply_takes=None, rolls_back_at=30.0)
    assert outcome.rolled_back and outcome.cause == "early", outcome
    assert host.clock.now <= 30.0 + ROLLBACK_TAKES + 2 * LATENCY + 2 + 2 * CONNECT_TIMEOUT


def test_a_wrong_state_is_rolled_back_at_once() -> None:
    outcome, host = run(apply_takes=5.0, converged=False)
    assert outcome.rolled_back and outcome.cause == "wrong"
    assert host.told_at is not None and host.told_at < 30
    assert host.confirmed_at is None
    message = outcome.message(host.spec)
    assert "ROLLED BACK (wrong state): after the change the host still differs" in message
    assert "Fix the fleet file" in message


def test_a_confirmation_that_loses_the_race_is_late_not_wrong() -> None:
    outcome, host = run(apply_takes=5.0, confirm_refused=True)
    assert outcome.rolled_back and outcome.cause == "late"
    message = outcome.message(host.spec)
    assert "ROLLED BACK (confirmation too late)" in message
    assert "Nothing was found wrong with the change" in message
    assert "Fix the fleet file" not in message


def test_a_confirmation_whose_answer_was_lost_is_seen_on_the_host() -> None:
    outcome, host = run(apply_takes=5.0, confirm_reply_lost=True)
    assert outcome.confirmed
    assert host.rollback_start is None


def test_a_timer_that_does_not_fire_is_replaced_by_our_word() -> None:
    # Unreachable until past the deadline, then (the path mended by hand, say) reachable
    # and still armed: the controller tells it to roll back, and sees it done.
    outcome, host = run(
        apply_takes=5.0, reachable_after_end=False, timer_fires=False, path_back_at=140.0
    )
    assert host.told_at is not None and host.told_at >= host.deadline
    assert outcome.rolled_back and outcome.cause == "unreachable"


def test_a_host_never_reached_ends_by_the_hard_bound_plus_the_margin() -> None:
    spec = replace(seed_spec(), apply_timeout=60, rollback_timeout=30)
    clock = FakeClock()
    before = broken_state()
    host = SimHost(clock, spec, before, apply_takes=5.0, reachable_after_end=False)
    host.timer_fires = False  # and it never comes back: nothing to see
    outcome = confirm.confirm_or_roll_back(host, clock, spec, before, plan(spec, before), 0.0)
    assert not outcome.confirmed and not outcome.rolled_back
    assert clock.now <= 90 + confirm.ROLLBACK_MARGIN + CONNECT_TIMEOUT
    assert "still does not say it has rolled back" in outcome.message(spec)


def test_a_confirmation_lost_on_the_way_is_sent_again_while_there_is_time() -> None:
    outcome, host = run(apply_takes=5.0, confirm_drops=1)
    assert outcome.confirmed and host.confirmed_at is not None
    assert host.rollback_start is None


def test_a_connection_that_gets_through_only_after_the_rollback_proves_no_path() -> None:
    # A cut host, and connects slow enough (SYN retries) that one started before the
    # deadline lands once the host's rollback has restored the old path: no proof that the
    # change's path worked.
    due = APPLY_DELAY + 5.0 + 120
    outcome, host = run(
        apply_takes=5.0, reachable_after_end=False, path_back_at=due + 3, connect_takes=30.0
    )
    assert outcome.rolled_back and outcome.cause == "unreachable", outcome
    assert "Fix the fleet file" in outcome.message(host.spec)


def test_an_apply_that_failed_is_rolled_back_at_once() -> None:
    failure = "ip link add dev mgmt0 type vrf table 10 exited 2"
    outcome, host = run(apply_takes=5.0, fails=failure)
    assert outcome.rolled_back and outcome.cause == "wrong", outcome
    assert host.told_at is not None and host.told_at < 30 and host.confirmed_at is None
    message = outcome.message(host.spec)
    assert message.startswith(f"ROLLED BACK (wrong state): the change failed: {failure}.")
    assert "Fix the fleet file" in message


def test_a_rollback_that_leaves_the_host_changed_says_how() -> None:
    # The path was cut, the host rolled back, but it is not as it was before the run (a
    # restored file that NetworkManager did not take back, say): the operator must know.
    outcome, host = run(
        apply_takes=10.0, reachable_after_end=False, after_rollback=converged_state()
    )
    assert outcome.rolled_back and outcome.cause == "unreachable" and outcome.differences
    message = outcome.message(host.spec)
    assert message.startswith(
        "ROLLED BACK (no path: the change ended, but no new ssh connection could be opened"
    )
    assert "), but the host is not exactly as before the run: " in message
    assert "; ".join(outcome.differences[:8]) in message
    assert "Fix the fleet file" not in message
