"""
Converge management VRFs: NetworkManager profiles, boot unit and the kernel's live state.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Generator

from pyinfra import host, logger
from pyinfra.api import FunctionCommand, OperationError, QuoteString, StringCommand, operation
from pyinfra.api.host import Host
from pyinfra.api.state import State
from pyinfra.connectors.util import clear_askpass_cache

from facts.vrf import VrfHostState
from mgmt_vrf import paths
from mgmt_vrf.apply import (
    APPLY_DELAY,
    RunStatus,
    confirm_command,
    parse_run_status,
    rollback_now_command,
    start_command,
    verify_command,
    wait_command,
)
from mgmt_vrf.commands import Argv, to_shell
from mgmt_vrf.hoststate import HostState
from mgmt_vrf.model import HostSpec
from mgmt_vrf.plan import Plan, plan
from mgmt_vrf.preflight import host_problems
from mgmt_vrf.probe import ProbeError, parse_probe_output, probe_command
from mgmt_vrf.rollback import differences, restarted_units, rollback_script, touched_paths

# After the host's own rollback was due: time for it to run and for sshd to answer again.
ROLLBACK_MARGIN = 30
# A new connection must be made this long before the host's timer fires, or we stop trying
# and let the host roll back: confirming in the last seconds would race the timer.
CONFIRM_GUARD = 5
RETRY_INTERVAL = 2
# Longest wait for the apply on one connection.
WAIT_SLICE = 20


def _command(argv: Argv) -> StringCommand:
    # Every word is quoted, values and constants alike: nothing reaches the shell unquoted.
    return StringCommand(*(QuoteString(arg) for arg in argv))


def _probe(spec: HostSpec) -> str:
    """The combined fact's command, for the checks made outside pyinfra's fact machinery."""
    return probe_command(**paths.probe_arguments(spec))


def read_state(spec: HostSpec) -> HostState:
    """The one remote command per run phase: everything the plan needs."""
    return host.get_fact(VrfHostState, **paths.probe_arguments(spec))


def plan_for_host(spec: HostSpec) -> tuple[HostState, Plan]:
    state = read_state(spec)
    problems = host_problems(spec, state)
    if problems:
        raise OperationError(
            "host state does not fit the fleet file, nothing was changed:\n  "
            + "\n  ".join(problems)
        )
    return state, plan(spec, state)


def _run(host: Host, command: str, timeout: float) -> tuple[bool, list[str]]:
    try:
        ok, output = host.run_shell_command(StringCommand(command), _timeout=timeout)
    except Exception:  # a dead connection raises anything from socket to SSH errors
        return False, []
    return ok, output.stdout_lines


def _reconnect(host: Host) -> bool:
    clear_askpass_cache(host)
    try:
        host.disconnect()
    except Exception:  # the old connection may be dead; we want a new one anyway
        host.connected = False
    # paramiko prints a traceback for every failed attempt; a host that is not back yet is
    # expected here, and the outcome is reported in words below.
    quiet = logging.getLogger("paramiko")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
        host.connect(show_errors=False)
    finally:
        quiet.setLevel(level)
    return bool(host.connected)


def _wait_for_apply(host: Host, wait: int) -> RunStatus | None:
    """From a new connection: the run's status once the apply ended or `wait` ran out.

    Short waits, each on a new connection: one opened while the apply runs may be cut by
    it (a VRF torn down takes the sessions bound to it along).
    """
    if not _reconnect(host):
        return None
    ok, lines = _run(host, wait_command(wait), wait + 15)
    return parse_run_status(lines) if ok else None


def _read_run(host: Host, spec: HostSpec) -> tuple[RunStatus, HostState] | None:
    """From a new connection: the run's status and the host's state; None if unreachable."""
    if not _reconnect(host):
        return None
    ok, lines = _run(host, verify_command(_probe(spec)), 60)
    if not ok:
        return None
    try:
        return parse_run_status(lines), parse_probe_output(lines)
    except ProbeError:
        return None


def _fail(host: Host, message: str) -> bool:
    host.log_styled(f"mgmt-vrf: {message}", fg="red", log_func=logger.error)
    return False


def _verdict(status: RunStatus, spec: HostSpec, after: HostState, timeout: int) -> str | None:
    """Why the change must be undone, or None when the host is converged."""
    if status.applied:
        left = plan(spec, after)
        if left.converged:
            return None
        return "after the change the host still differs: " + "; ".join(
            c.why for c in left.changes[:5]
        )
    if status.apply.startswith("failed"):
        return f"the change {status.apply}"
    if status.apply == "running":
        return f"the change was still running {timeout} s after it started"
    return f"the change left no status ({paths.RUN_DIR}/log on the host)"


def confirm_or_roll_back(
    state: State, host: Host, spec: HostSpec, before: HostState, result: Plan, started: float
) -> bool:
    """Confirm the change from a new connection, or make sure the host is back as before.

    A connection opened while the apply still runs can outlive the change that breaks the
    path (its socket is not bound to the VRF), so reachability is judged only from a
    connection opened after the apply has ended.
    """
    timeout = spec.rollback_timeout
    due = started + timeout
    time.sleep(APPLY_DELAY)
    reason = f"no new ssh connection within {timeout} s after the change (rollback_timeout)"
    rolled_now = False
    ended = False
    seen_running = False
    while time.monotonic() < due - CONFIRM_GUARD:
        if not ended:
            wait = max(1, min(WAIT_SLICE, int(due - CONFIRM_GUARD - time.monotonic())))
            status = _wait_for_apply(host, wait)
            if status is None:
                time.sleep(RETRY_INTERVAL)
                continue
            ended = status.apply != "running"
            seen_running = seen_running or not ended
            if not ended:
                continue
        read = _read_run(host, spec)
        if read is None:
            time.sleep(RETRY_INTERVAL)
            continue
        problem = _verdict(read[0], spec, read[1], timeout)
        if problem is None:
            if time.monotonic() < due - 1:
                done, _ = _run(host, to_shell(confirm_command()), 30)
                if done:
                    host.log("mgmt-vrf: confirmed over a new ssh connection, rollback disarmed")
                    return True
            reason = "the confirmation came too late: the host's rollback had started"
        else:
            reason = problem
            _run(host, to_shell(rollback_now_command()), 30)
            rolled_now = True
        break
    else:
        if seen_running and not ended:
            reason = f"the change was still running {timeout} s after it started"
        elif not ended:
            reason = f"no new ssh connection within {timeout} s after the change"
        else:
            reason = (
                f"the change ended, but no new ssh connection could be opened within {timeout} s"
            )

    # The host rolls back by itself at `due` (or has just been told to): wait, then look.
    if not rolled_now:
        time.sleep(max(0.0, due + 1 - time.monotonic()))
    deadline = time.monotonic() + ROLLBACK_MARGIN + 60
    while time.monotonic() < deadline:
        read = _read_run(host, spec)
        if read is not None and read[0].rolled_back:
            diff = differences(
                spec, before, read[1], touched_paths(result), restarted_units(result)
            )
            if diff:
                return _fail(
                    host,
                    f"ROLLED BACK ({reason}), but the host is not exactly as before the run: "
                    + "; ".join(diff[:8])
                    + f". See {paths.RUN_DIR}/log on the host.",
                )
            return _fail(
                host,
                f"ROLLED BACK: {reason}. The host is back in its state from before the run "
                f"(log: {paths.RUN_DIR}/log). Fix the fleet file and run again.",
            )
        time.sleep(RETRY_INTERVAL)
    return _fail(
        host,
        f"{reason}; the host's own rollback was due {timeout} s after the change, but it is "
        f"still unreachable {ROLLBACK_MARGIN + 60} s later. Use its console: "
        f"`sh {paths.ROLLBACK_SCRIPT}` rolls back by hand, `cat {paths.RUN_DIR}/log` says "
        "what ran.",
    )


@operation(is_idempotent=True)
def converge(spec: HostSpec) -> Generator:
    """
    Bring a host's management VRFs to the state its fleet-file entry describes.

    + spec: the host's validated ``HostSpec`` (``inventory.py`` puts it in host data)

    **Example:**

    .. code:: python

        from operations.vrf import converge
        converge(name="Management VRF", spec=host.data.mgmt_vrf_spec)

    The plan comes from one combined fact. Before the first command the operation logs every
    command and every file diff, so ``pyinfra inventory.py deploy.py --dry`` shows exactly
    what would reach each host. A converged host yields nothing and reports no change.

    The change itself runs on the host as one detached script under an armed rollback: the
    host undoes it by itself unless a NEW ssh connection confirms, within
    ``rollback_timeout`` seconds, that the host is reachable and converged.
    """

    before, result = plan_for_host(spec)
    if result.converged:
        host.noop(f"management VRFs of {spec.name} already converged")
        return

    # Log in the first phase that runs this body: the prepare phase normally (so --dry shows
    # it), the execute phase under -y, which skips change detection.
    if host.state.is_executing != host.state.should_check_for_changes():
        host.log(
            f"mgmt-vrf plan ({result.backend}), {len(result.changes)} changes, "
            f"rollback armed for {spec.rollback_timeout} s:"
        )
        for line in result.describe():
            host.log("  " + line)

    rollback = rollback_script(spec, before, result)
    started = time.monotonic()
    yield _command(start_command(result, rollback, spec.rollback_timeout))
    yield FunctionCommand(confirm_or_roll_back, (spec, before, result, started), {})
