"""
Converge management VRFs: NetworkManager profiles, boot unit and the kernel's live state.
"""

from __future__ import annotations

import posixpath
from collections.abc import Generator
from io import StringIO

from pyinfra import host
from pyinfra.api import FileUploadCommand, OperationError, QuoteString, StringCommand, operation

from facts.vrf import VrfHostState
from mgmt_vrf import paths
from mgmt_vrf.commands import Argv, backup, backup_and_remove, install_staged, run_detached
from mgmt_vrf.hoststate import HostState
from mgmt_vrf.model import HostSpec
from mgmt_vrf.plan import Plan, RemoveFile, RunCommand, WriteFile, plan
from mgmt_vrf.preflight import host_problems

STAGING_DIR = "/var/lib/mgmt-vrf/staging"
DETACHED_LOG = "/var/lib/mgmt-vrf/teardown.log"


def _command(argv: Argv) -> StringCommand:
    # Every word is quoted, values and constants alike: nothing reaches the shell unquoted.
    return StringCommand(*(QuoteString(arg) for arg in argv))


def read_state(spec: HostSpec) -> HostState:
    """The one remote command per run phase: everything the plan needs."""
    ports = sorted({port for vrf in spec.vrfs for port in vrf.ports})
    return host.get_fact(VrfHostState, paths=paths.managed_paths(spec), ports=ports)


def plan_for_host(spec: HostSpec) -> Plan:
    state = read_state(spec)
    problems = host_problems(spec, state)
    if problems:
        raise OperationError(
            "host state does not fit the fleet file, nothing was changed:\n  "
            + "\n  ".join(problems)
        )
    return plan(spec, state)


@operation()
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
    """

    result = plan_for_host(spec)
    if result.converged:
        host.noop(f"management VRFs of {spec.name} already converged")
        return

    # Log in the first phase that runs this body: the prepare phase normally (so --dry shows
    # it), the execute phase under -y, which skips change detection.
    if host.state.is_executing != host.state.should_check_for_changes():
        host.log(f"mgmt-vrf plan ({result.backend}), {len(result.changes)} changes:")
        for line in result.describe():
            host.log("  " + line)

    staging_ready = False
    detached = [c.argv for c in result.changes if isinstance(c, RunCommand) and c.detached]
    for change in result.changes:
        if isinstance(change, RunCommand) and change.detached:
            continue
        if isinstance(change, RunCommand):
            yield _command(change.argv)
        elif isinstance(change, RemoveFile):
            yield _command(backup_and_remove(change.path, paths.BACKUP_DIR))
        elif isinstance(change, WriteFile):
            if not staging_ready:
                yield _command(("install", "-d", "-m", "0700", STAGING_DIR))
                staging_ready = True
            if change.old is not None:
                yield _command(backup(change.path, paths.BACKUP_DIR))
            staged = posixpath.join(STAGING_DIR, posixpath.basename(change.path))
            yield FileUploadCommand(StringIO(change.content), staged)
            yield _command(install_staged(staged, change.path, change.mode))
    if detached:
        # Last, and in one go: these end the session that came in through the VRF.
        yield _command(run_detached(detached, DETACHED_LOG))
