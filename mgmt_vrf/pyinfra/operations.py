"""
Converge management VRFs: NetworkManager profiles, boot unit and the kernel's live state.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import sys
import time
from collections.abc import Generator
from typing import Any

import click
import gevent
from pyinfra import host, logger
from pyinfra.api import FunctionCommand, OperationError, QuoteString, StringCommand, operation
from pyinfra.api.host import Host
from pyinfra.api.state import State
from pyinfra.api.util import print_host_combined_output
from pyinfra.connectors.util import clear_askpass_cache

from mgmt_vrf import paths
from mgmt_vrf.apply import (
    RunStatus,
    Start,
    confirm_command,
    parse_run_status,
    rollback_now_command,
    start_command,
    verify_command,
    wait_command,
)
from mgmt_vrf.commands import Argv, to_shell
from mgmt_vrf.confirm import confirm_or_roll_back as confirm
from mgmt_vrf.fleet_file import FleetError, rollout_from_data, spec_from_data
from mgmt_vrf.hoststate import HostState
from mgmt_vrf.model import HostSpec
from mgmt_vrf.plan import Plan, RunCommand, plan
from mgmt_vrf.preflight import host_problems
from mgmt_vrf.probe import ProbeError, parse_probe_output, probe_command
from mgmt_vrf.rollback import rollback_script
from mgmt_vrf.rollout import ALL_AT_ONCE, Rollout

from .change_slots import SLOTS
from .facts import VrfHostState
from .inventory_data import FLEET_FILE_DATA_KEY
from .rollout_gate import RolloutGate, note_failure, rollout_gate


def _command(argv: Argv) -> StringCommand:
    # Every word is quoted, values and constants alike: nothing reaches the shell unquoted.
    return StringCommand(*(QuoteString(arg) for arg in argv))


def _probe(spec: HostSpec) -> str:
    """The combined fact's command, for the checks made outside pyinfra's fact machinery."""
    return probe_command(**paths.probe_arguments(spec))


def shows_diffs(state: State) -> bool:
    """Whole file diffs under each file change: with --diff, as pyinfra's own file operations
    show them, and in every dry run, which exists to be read. Otherwise one line per change."""
    return bool(state.config.DIFF) or _dry_run()


@functools.cache
def _dry_run() -> bool:
    # pyinfra keeps --dry to its CLI: no config or state says it, and the CLI's click
    # context is local to the main greenlet, not the hosts' ones. So its own command reads
    # its own command line once more, without callbacks or prompts.
    cli = getattr(sys.modules.get("pyinfra_cli.cli"), "cli", None)
    if not isinstance(cli, click.Command):
        return False  # pyinfra's API, not its CLI: no dry run
    try:
        context = cli.make_context("pyinfra", sys.argv[1:], resilient_parsing=True)
    except Exception:  # whatever the CLI makes of it, it is not ours to judge here
        return False
    return bool(context.params.get("dry"))


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
    # pyinfra's disconnect keeps the old client: close it, or its transport lingers.
    client = getattr(host.connector, "client", None)
    with contextlib.suppress(Exception):  # the old connection may be dead already
        if client is not None:
            client.close()
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


class _HostRemote:
    """The host as mgmt_vrf.confirm sees it, each look over a new ssh connection. Every
    call ends within its bounds, the connection's and the command's (gevent timeouts, as
    pyinfra runs hosts in greenlets): a stalled connection can hang paramiko for far longer
    than the host's deadline."""

    def __init__(self, host: Host, spec: HostSpec) -> None:
        self.host = host
        self.probe = _probe(spec)
        # One connection attempt as the fleet file allows it (ssh_connect_timeout, else
        # pyinfra's), not pyinfra's retries: the confirm loop is the retry. A bound shorter
        # than a slow fleet's handshake would abandon every attempt half-way.
        timeout = spec.ssh.connect_timeout or host.state.config.CONNECT_TIMEOUT
        self.connect_within = float(timeout) + 5

    def _fresh(self, command: str, within: float) -> tuple[bool, list[str]]:
        connected = False
        with gevent.Timeout(self.connect_within, False):
            connected = _reconnect(self.host)
        if not connected:
            self.host.connected = False
            return False, []
        with gevent.Timeout(within, False):
            return _run(self.host, command, within)
        self.host.connected = False
        return False, []

    def wait(self, seconds: int, within: float) -> RunStatus | None:
        ok, lines = self._fresh(wait_command(seconds), within)
        return parse_run_status(lines) if ok else None

    def read(self, within: float) -> tuple[RunStatus, HostState] | None:
        ok, lines = self._fresh(verify_command(self.probe), within)
        if not ok:
            return None
        try:
            return parse_run_status(lines), parse_probe_output(lines)
        except ProbeError:
            return None

    def confirm(self) -> bool:
        with gevent.Timeout(30, False):
            return _run(self.host, to_shell(confirm_command()), 30)[0]
        return False

    def roll_back_now(self) -> None:
        with gevent.Timeout(30, False):
            _run(self.host, to_shell(rollback_now_command()), 30)


def confirm_or_roll_back(
    host: Host, spec: HostSpec, before: HostState, result: Plan, started: float
) -> tuple[bool, str]:
    """mgmt_vrf.confirm does the work; this says what came of it (and returns it)."""
    outcome = confirm(_HostRemote(host, spec), time, spec, before, result, started)
    message = outcome.message(spec)
    if outcome.confirmed:
        host.log(f"mgmt-vrf: {message}")
        return True, message
    host.log_styled(f"mgmt-vrf: {message}", fg="red", log_func=logger.error)
    return False, message


def _untouched(host: Host, gate: RolloutGate) -> bool:
    gate.never_started(host.name)
    host.log_styled(
        f"mgmt-vrf: not started, the host is untouched: the rollout stopped "
        f"({gate.waves.stopped}); fix that and run again",
        fg="red",
        log_func=logger.error,
    )
    return False


def change_in_a_slot(
    state: State,
    host: Host,
    spec: HostSpec,
    before: HostState,
    result: Plan,
    start: Start,
    gate: RolloutGate,
) -> bool:
    """The FunctionCommand of a change: wait for the host's wave, then for a slot
    (``changes_at_once``), start the armed change, then confirm it or see it rolled back,
    and only then free the slot. The start runs here, not as a command of its own, so that
    a start that fails frees it too."""

    def waiting(changing: int) -> None:
        host.log(
            f"mgmt-vrf: waiting to start: {changing} hosts are changing "
            f"(changes_at_once = {spec.changes_at_once})"
        )

    if gate.wait_turn(host.name, tell=host.log).stopped:
        return _untouched(host, gate)
    with SLOTS.slot(host.name, spec.changes_at_once, waiting):
        if gate.waves.stopped:  # while this host waited for its slot
            return _untouched(host, gate)
        gate.started(host.name)
        ok, detail = False, "the controller failed during the change (see its error)"
        try:
            ok, detail = _change(state, host, spec, before, result, start)
        finally:
            gate.finished(host.name, ok, detail)
        return ok


def _change(
    state: State, host: Host, spec: HostSpec, before: HostState, result: Plan, start: Start
) -> tuple[bool, str]:
    started = time.monotonic()
    try:
        ok, output = host.run_shell_command(
            _command(start.argv),
            print_output=state.print_output,
            print_input=state.print_input,
            _stdin=start.stdin,
        )
    except Exception as e:  # a dead connection raises anything from socket to SSH errors
        detail = (
            f"the change could not be started ({e.__class__.__name__}: {e}); "
            "if it reached the host, its armed rollback undoes it"
        )
        host.log_styled(f"mgmt-vrf: {detail}", fg="red", log_func=logger.error)
        return False, detail
    if not ok:
        if not state.print_output:
            print_host_combined_output(host, output)
        return False, "the start command failed: " + " ".join(output.stderr_lines[-3:])
    return confirm_or_roll_back(host, spec, before, result, started)


def _say_refused(state: State, host: Host, message: str) -> bool:
    host.log_styled(f"mgmt-vrf: {message}", fg="red", log_func=logger.error)
    return False


def _refused(message: str) -> FunctionCommand:
    """A host refused in the execute phase (``-y``): pyinfra prints an error raised there
    with a traceback, as a crash; this fails the host with the message alone."""
    return FunctionCommand(_say_refused, (message,), {})


def _log_plan(spec: HostSpec, result: Plan) -> None:
    # Log in the first phase that runs the operation: the prepare phase normally (so --dry
    # shows it), the execute phase under -y, which skips change detection.
    if host.state.is_executing == host.state.should_check_for_changes():
        return
    host.log(
        f"mgmt-vrf plan ({result.backend}), {len(result.changes)} changes, "
        f"rollback due {spec.rollback_timeout} s after the apply ends "
        f"(at the latest {spec.apply_timeout + spec.rollback_timeout} s from its start):"
    )
    diffs = shows_diffs(host.state)
    for line in result.describe(diffs=diffs):
        host.log("  " + line)
    if not diffs and any(not isinstance(c, RunCommand) for c in result.changes):
        host.log("  (each file's diff: run with --diff, or --dry)")


@operation(is_idempotent=True)
def converge(spec: HostSpec, rollout: Rollout | None = None) -> Generator:
    """
    Bring a host's management VRFs to the state its fleet-file entry describes.

    + spec: the host's ``HostSpec`` (``mgmt_vrf.pyinfra.hostspec.host_spec`` reads it from host
      data); one built in code is checked by the fleet file's rules first
    + rollout: the run's waves (``mgmt_vrf.rollout.Rollout``, the fleet file's
      ``[rollout]``); the same for every host of the run; none: every host at once

    **Example:**

    .. code:: python

        from mgmt_vrf.pyinfra.operations import converge
        converge(name="Management VRF", spec=host_spec(host))

    (``mgmt_vrf.pyinfra.deploy.management_vrf`` does exactly this.)

    The plan comes from one combined fact. Before the first command the operation logs it,
    one line per change: each command as it will run, each file it writes or removes with
    the size of the change. With ``--diff``, and in every ``--dry`` run, each file's whole
    diff follows its line, so ``pyinfra inventory.py deploy.py --dry`` shows exactly what
    would reach each host. A converged host yields nothing and reports no change.

    The change itself runs on the host as one detached script under an armed rollback: the
    host undoes it by itself unless a NEW ssh connection confirms, within
    ``rollback_timeout`` seconds after the apply ended, that the host is reachable and
    converged (and at the latest ``apply_timeout + rollback_timeout`` after the start).
    At most ``changes_at_once`` hosts are between the start and the confirmation at once;
    the others wait, unchanged, for one of them to finish. With waves, a host's change
    also waits until every host of the waves before its own has confirmed; the first
    rollback stops the rollout, and the hosts of later waves fail untouched. Each real run
    writes its record (host, wave, outcome, times) as JSON on the controller.
    """

    executing = host.state.is_executing
    try:
        spec = spec_from_data(spec, source="converge(spec=...)")
        rollout = rollout_from_data(rollout or ALL_AT_ONCE, source="converge(rollout=...)")
    except FleetError as exc:
        message = "the spec does not pass the fleet file's checks, nothing was changed:\n  "
        message += "\n  ".join(exc.messages)
        if not executing:
            raise OperationError(message) from None
        note_failure(host.state, host.name, exc.messages[0])
        yield _refused(message)
        return
    # The waves and the record are the execute phase's: a dry run changes nothing.
    gate = None
    if executing:
        fleet = str(host.data.get(FLEET_FILE_DATA_KEY) or "")
        arguments: dict[str, Any] = dict(host.current_op_global_arguments or {})
        gate = rollout_gate(host.state, host.name, rollout, fleet, arguments.get("_parallel"))
    try:
        try:
            before, result = plan_for_host(spec)
        except OperationError as exc:
            if gate is None:
                raise
            gate.failed(host.name, str(exc).splitlines()[0])
            yield _refused(str(exc))
            return
        if gate is not None:
            gate.planned(host.name, len(result.changes))
        if result.converged:
            host.noop(f"management VRFs of {spec.name} already converged")
            return
        _log_plan(spec, result)
        rollback = rollback_script(spec, before, result)
        start = start_command(result, rollback, spec.rollback_timeout, spec.apply_timeout)
    except BaseException as exc:  # gevent's Timeout too
        # The hosts after this one in the rollout wait for its plan: it must say it has none.
        if gate is not None:
            gate.failed(host.name, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        raise
    if gate is None:  # not executing: pyinfra only looks at what would run
        gate = RolloutGate([host.name], rollout, "")
    yield FunctionCommand(change_in_a_slot, (spec, before, result, start, gate), {})
