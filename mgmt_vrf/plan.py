"""From a host's desired spec and its combined fact to the ordered changes that converge it.

`plan()` is pure: it never talks to a host. An empty plan means the host is converged.
Order: runtime sysctls that keep ssh answering, then files (so a host that dies half-way
boots into the desired state), then the kernel's network state step by step.
"""

from __future__ import annotations

import difflib
import posixpath
from dataclasses import dataclass, field

from . import paths, render, services
from .commands import Argv, to_shell
from .host_commands import ActivateProfile, CreateVrf, HostCommand, Reload, RestartUnit, Run
from .hoststate import HostState
from .model import HostSpec, Vrf
from .port_profile import new_port_uuid, port_profile, second_profiles
from .profile_text import Keyfile, hide_secrets
from .steps import (
    Step,
    after_teardown,
    commands_for,
    present_steps,
    replaced_vrfs,
    teardown_steps,
)

MODE_KEYFILE = "0600"  # NetworkManager ignores keyfiles readable by others
MODE_CONFIG = "0644"
MODE_SCRIPT = "0755"


@dataclass(frozen=True)
class WriteFile:
    path: str
    content: str
    mode: str
    old: str | None  # current content, None when the file is new
    why: str

    def diff(self) -> list[str]:
        return unified_diff(self.path, self.old, self.content)


@dataclass(frozen=True)
class RemoveFile:
    path: str
    why: str
    old: str | None = None  # known content, for the diff; None when only its existence is known

    def diff(self) -> list[str]:
        return unified_diff(self.path, self.old, None) if self.old is not None else []


@dataclass(frozen=True)
class RunCommand:
    command: HostCommand
    why: str
    # A shell condition checked on the host just before the command: when it holds, the
    # command is skipped. Set where NetworkManager may already have done the same thing.
    unless: str | None = None
    # Where no such condition exists (a delete the plan picked from the fact): a failure
    # does not stop the run; the check from a new connection afterwards judges the result.
    best_effort: bool = False

    @property
    def argv(self) -> Argv:
        return self.command.argv

    @property
    def shell(self) -> str:
        return to_shell(self.argv)


Change = WriteFile | RemoveFile | RunCommand


@dataclass(frozen=True)
class Plan:
    host: str
    backend: str
    changes: tuple[Change, ...] = field(default=())

    @property
    def converged(self) -> bool:
        return not self.changes

    def describe(self, diffs: bool = True) -> list[str]:
        """What a human reviews: one line per change, in order, and with `diffs` each file
        change's diff under its line (pyinfra's --diff, and every dry run)."""
        lines: list[str] = []
        for change in self.changes:
            if isinstance(change, RunCommand):
                guard = " (unless NetworkManager did it)" if change.unless else ""
                lines.append(f"$ {change.shell}    # {change.why}{guard}")
                continue
            diff = change.diff()
            if isinstance(change, WriteFile):
                verb = "create" if change.old is None else "update"
                head = f"{verb} {change.path} (mode {change.mode}"
            else:
                head = f"remove {change.path} (backup in {paths.BACKUP_DIR}"
            if diffs:
                lines.append(f"{head}) # {change.why}")
                lines += ["    " + line for line in diff]
            else:
                lines.append(f"{head}{_line_counts(diff)}) # {change.why}")
        return lines


def _line_counts(diff: list[str]) -> str:
    """ ", +12 -3 lines" for a diff shown only by its size; "" when there is none to count."""
    if not diff:
        return ""
    body = [line for line in diff if not line.startswith(("---", "+++", "@@"))]
    added = sum(line.startswith("+") for line in body)
    removed = sum(line.startswith("-") for line in body)
    return f", +{added} -{removed} lines"


def unified_diff(path: str, old: str | None, new: str | None) -> list[str]:
    """The diff a reviewer reads; a keyfile's secrets (802.1x, PSKs) never show in it."""
    return [
        line.rstrip("\n")
        for line in difflib.unified_diff(
            hide_secrets(path, old or "").splitlines(keepends=True),
            hide_secrets(path, new or "").splitlines(keepends=True),
            fromfile=path if old is not None else "/dev/null",
            tofile=path if new is not None else "/dev/null",
        )
    ]


def resolve_backend(spec: HostSpec, state: HostState) -> str:
    """`auto` follows the host: NetworkManager when installed (every AlmaLinux 9, default 8),
    the legacy network-scripts only when they are there without NetworkManager."""
    if spec.backend != "auto":
        return spec.backend
    if not state.network_manager.installed and state.network_scripts_installed:
        return "network-scripts"
    return "networkmanager"


def _port_files(
    spec: HostSpec,
    backend: str,
    state: HostState | None,
    port: str,
    vrf: Vrf | None,
    why: str,
) -> dict[str, tuple[str, str, str] | None]:
    """The port's own profile, edited (see port_profile), and its ifcfg route files."""
    iface = spec.interface(port)
    if iface is None:
        return {}
    own = port_profile(state, port, backend)
    current = own.parsed()
    files: dict[str, tuple[str, str, str] | None] = {}
    if isinstance(current, Keyfile) or (current is None and own.format == "keyfile"):
        version = state.network_manager.version if state is not None else None
        content = render.port_keyfile(
            spec, iface, vrf, current, own.path, new_port_uuid(port), version
        )
        files[own.path] = (content, MODE_KEYFILE, why)
        # Route files belong to an ifcfg profile; a keyfile carries its own routes.
        files[paths.route4(port)] = files[paths.route6(port)] = None
        return files
    files[own.path] = (render.port_ifcfg(spec, iface, vrf, backend, current), MODE_CONFIG, why)
    for family, path in ((4, paths.route4(port)), (6, paths.route6(port))):
        lines = render.port_route_lines(spec, iface, vrf, family, backend) if vrf else []
        files[path] = (
            (render.route_file(lines), MODE_CONFIG, f"IPv{family} routes of {port}")
            if lines
            else None
        )
    return files


def desired_files(
    spec: HostSpec, backend: str, state: HostState | None = None
) -> dict[str, tuple[str, str, str] | None]:
    """Path -> (content, mode, why) to write, or None to remove. Paths not listed are left alone.

    With the host's ``state``, a port's profile is the host's own, edited in its own format:
    what the operator set there (MTU, firewalld zone, DNS, ethtool options, comments) stays."""
    files: dict[str, tuple[str, str, str] | None] = {}
    present = spec.present_vrfs
    ports_in_use = {p for vrf in present for p in vrf.ports}
    for vrf in spec.absent_vrfs:
        files[paths.keyfile(vrf.name)] = None
        files[paths.resolv_conf(vrf.name)] = None
        for port in vrf.ports:
            if port not in ports_in_use:
                why = f"{port} leaves VRF {vrf.name}: plain profile"
                files.update(_port_files(spec, backend, state, port, None, why))
    for vrf in present:
        if backend == "networkmanager":
            files[paths.keyfile(vrf.name)] = (
                render.vrf_keyfile(vrf),
                MODE_KEYFILE,
                f"VRF device {vrf.name} (table {vrf.table}) for NetworkManager",
            )
        else:
            files[paths.keyfile(vrf.name)] = None
        files[paths.resolv_conf(vrf.name)] = (
            (render.resolv_conf(vrf), MODE_CONFIG, f"the resolver of programs inside {vrf.name}")
            if vrf.nameservers
            else None
        )
        for port in vrf.ports:
            why = f"the one profile of {port}, port of VRF {vrf.name}"
            files.update(_port_files(spec, backend, state, port, vrf, why))
    if present:
        files[paths.SYSCTL_DROPIN] = (
            render.sysctl_dropin(spec),
            MODE_CONFIG,
            "l3mdev and keep_addr_on_down sysctls at boot",
        )
        files[paths.CONVERGE_SCRIPT] = (
            render.converge_script(spec),
            MODE_SCRIPT,
            "boot-time converge (replaces rc.local)",
        )
        files[paths.UNIT] = (render.unit(spec), MODE_CONFIG, "runs the converge script at boot")
        files[paths.EXEC_WRAPPER] = (
            render.exec_wrapper(spec),
            MODE_SCRIPT,
            "runs services and commands inside a VRF",
        )
    resolv_units = render.resolv_units(spec)
    for path in RESOLV_UNITS:
        text = resolv_units.get(path)
        files[path] = (text, MODE_CONFIG, "keeps the VRFs' resolv.conf mounted") if text else None
    if not present:
        for path in (paths.SYSCTL_DROPIN, paths.CONVERGE_SCRIPT, paths.UNIT, paths.EXEC_WRAPPER):
            files[path] = None
    return files


RESOLV_UNITS = (paths.RESOLV_PATH_UNIT, paths.RESOLV_SERVICE_UNIT)


def _conflicting_profiles(spec: HostSpec, state: HostState, backend: str) -> list[tuple[str, str]]:
    """Other profiles for a device we own: NetworkManager activates one profile per device and
    picks unpredictably (the blog's ifcfg-vrf.eth2 beside ifcfg-eth2). Returns (path, device)."""
    found = []
    for vrf in spec.present_vrfs:
        own = paths.keyfile(vrf.name)
        found += [
            (p.path, vrf.name) for p in state.profiles if p.device == vrf.name and p.path != own
        ]
        for port in vrf.ports:
            own = port_profile(state, port, backend).path
            found += [(p.path, port) for p in second_profiles(state, port, backend, own)]
    return sorted(set(found))


def _companions(profile_path: str) -> list[str]:
    """Route and rule files that belong to an ifcfg profile (route-NAME for ifcfg-NAME)."""
    directory, base = posixpath.split(profile_path)
    if not base.startswith("ifcfg-"):
        return []
    name = base[len("ifcfg-") :]
    return [
        posixpath.join(directory, f"{kind}-{name}") for kind in ("route", "route6", "rule", "rule6")
    ]


def _file_changes(
    spec: HostSpec, state: HostState, backend: str
) -> tuple[list[Change], bool, bool]:
    """File changes, and whether NetworkManager profiles / systemd units changed."""
    changes: list[Change] = []
    profiles_changed = False
    units_changed = False
    wanted = desired_files(spec, backend, state)
    for path, dropin in services.dropin_files(spec, state).items():
        wanted[path] = None if dropin is None else (dropin[0], MODE_CONFIG, dropin[1])
    for path, desired in wanted.items():
        current = state.file(path)
        if desired is None:
            if current.exists:
                changes.append(RemoveFile(path, "not wanted by the fleet file", current.text))
            else:
                continue
        else:
            content, mode, why = desired
            if current.exists and current.text == content:
                continue
            changes.append(
                WriteFile(path, content, mode, current.text if current.exists else None, why)
            )
        if path.startswith((paths.NETWORK_SCRIPTS, paths.SYSTEM_CONNECTIONS)):
            profiles_changed = True
        if path in (paths.UNIT, paths.CONVERGE_SCRIPT, *RESOLV_UNITS) or paths.dropin_unit(path):
            units_changed = True
    for path, device in _conflicting_profiles(spec, state, backend):
        known = state.file(path)
        changes.append(
            RemoveFile(
                path,
                f"second profile for {device}: NetworkManager would activate only one",
                known.text if known.exists else None,
            )
        )
        for companion in _companions(path):
            found = state.file(companion)
            if found.exists:
                changes.append(
                    RemoveFile(
                        companion,
                        f"belongs to the removed profile {posixpath.basename(path)}",
                        found.text,
                    )
                )
        profiles_changed = True
    return changes, profiles_changed, units_changed


def _written(changes: list[Change]) -> set[str]:
    return {c.path for c in changes if isinstance(c, (WriteFile, RemoveFile))}


def _service_changes(
    spec: HostSpec,
    state: HostState,
    profiles_changed: bool,
    units_changed: bool,
    written: set[str],
) -> list[Change]:
    changes: list[Change] = []
    if profiles_changed and state.network_manager.running:
        changes.append(RunCommand(Reload("NetworkManager"), "NetworkManager rereads the profiles"))
    if units_changed and state.systemd_running:
        changes.append(RunCommand(Reload("systemd"), "systemd rereads our unit"))
    wants_dir = posixpath.dirname(paths.UNIT_WANTS_LINK)
    unit = posixpath.basename(paths.UNIT)
    if spec.present_vrfs and not state.unit_enabled:
        changes.append(
            RunCommand(Run(("mkdir", "-p", wants_dir)), f"{unit} is not enabled at boot")
        )
        changes.append(
            RunCommand(
                Run(("ln", "-sfn", paths.UNIT, paths.UNIT_WANTS_LINK)),
                f"{unit} is not enabled at boot",
            )
        )
    elif not spec.present_vrfs and state.unit_enabled:
        changes.append(
            RunCommand(Run(("rm", "-f", paths.UNIT_WANTS_LINK)), f"{unit} still enabled at boot")
        )
    if state.systemd_running:
        changes += _resolv_watch_changes(spec, state, written)
    return changes


def _resolv_watch_changes(spec: HostSpec, state: HostState, written: set[str]) -> list[Change]:
    """Start the watch when its unit is new, changed or not running; stop it when it goes."""
    if not paths.resolv_watch(spec):
        if state.file(paths.RESOLV_PATH_UNIT).exists:
            stop = Run(("systemctl", "stop", paths.RESOLV_WATCH))
            return [RunCommand(stop, "no VRF has nameservers")]
        return []
    watch = state.units.get(paths.RESOLV_WATCH)
    if paths.RESOLV_PATH_UNIT in written:
        why = "it watches /etc/resolv.conf for the VRFs' programs"
    elif watch is None or watch.active_state != "active":
        now = watch.active_state if watch is not None else "not described"
        why = f"it is {now}, so nothing mounts the VRFs' resolv.conf again"
    else:
        return []
    restart = Run(("systemctl", "restart", paths.RESOLV_WATCH))
    return [RunCommand(restart, f"{paths.RESOLV_WATCH}: {why}")]


def _step_changes(steps: list[Step], state: HostState, guarded: bool = False) -> list[Change]:
    changes: list[Change] = []
    for step in steps:
        if step.holds(state):
            continue
        checkable = step.shell_check != "true"
        unless = step.shell_check if guarded and checkable else None
        for command in commands_for(step, state):
            changes.append(RunCommand(command, step.what, unless, guarded and not checkable))
    return changes


def activated_ports(plan: Plan) -> list[str]:
    """The ports whose profiles the plan has NetworkManager activate."""
    return [
        c.command.port
        for c in plan.changes
        if isinstance(c, RunCommand) and isinstance(c.command, ActivateProfile)
    ]


def activations(spec: HostSpec, state: HostState, backend: str) -> list[Change]:
    """A running NetworkManager applies the new profiles itself: bringing a port's profile up
    brings its VRF's profile up first, and a port leaving an absent VRF comes up on its plain
    profile while NetworkManager deletes the VRF whose profile went. Otherwise it would keep
    the old profile active on the port until the next boot, and its own reaction to the
    reload (autoconnecting a new VRF, deleting a removed one) would race with our commands.
    Each port's profile is named by its uuid where it has one: an id may be shared."""
    changes: list[Change] = []
    seen: set[str] = set()
    for vrf in (*spec.present_vrfs, *spec.absent_vrfs):
        for port in vrf.ports:
            if port in seen:
                continue  # a renamed VRF's port: its profile is the new VRF's
            seen.add(port)
            role = f"a port of {vrf.name}" if vrf.state == "present" else "a plain profile"
            up = ActivateProfile(port, port_profile(state, port, backend).handle)
            changes.append(RunCommand(up, f"NetworkManager activates {port} as {role}"))
    return changes


def plan(spec: HostSpec, state: HostState) -> Plan:
    backend = resolve_backend(spec, state)
    runtime = present_steps(spec)
    # Sysctls lead: with tcp_l3mdev_accept=1 our own ssh session survives the port's move.
    sysctl_steps = [s for s in runtime if s.early]
    network_steps = [s for s in runtime if not s.early]

    files, profiles_changed, units_changed = _file_changes(spec, state, backend)
    changes: list[Change] = []
    changes += _step_changes(sysctl_steps, state)
    changes += files
    changes += _service_changes(spec, state, profiles_changed, units_changed, _written(files))
    # A renamed VRF goes first, so its successor can take its port and table; what follows
    # is planned from the state that teardown leaves.
    replaced = replaced_vrfs(spec)
    # Last: tearing a VRF down ends every session that came in through it.
    others = [vrf for vrf in spec.absent_vrfs if vrf not in replaced]
    final_teardown = teardown_steps(spec, others)
    runtime_steps = [
        (teardown_steps(spec, replaced), state),
        (network_steps, after_teardown(spec, replaced, state)),
        (final_teardown, state),
    ]
    # With NetworkManager running, new profiles and a host to change, NetworkManager makes
    # the change and our own steps only repair what it left undone, each checked again on
    # the host first. An edited profile alone is only reloaded: the host already holds.
    nm_applies = (
        backend == "networkmanager"
        and state.network_manager.running
        and profiles_changed
        and any(not step.holds(at) for steps, at in runtime_steps for step in steps)
    )
    if nm_applies:
        changes += activations(spec, state, backend)
    for steps, at in runtime_steps[:2]:
        changes += _step_changes(steps, at, nm_applies)
    # Services move once their VRFs are in place (sshd too: this whole run is under the
    # armed rollback, which restarts it as it was if the new one cannot be reached).
    changes += _restart_changes(spec, state, changes)
    changes += _step_changes(final_teardown, state, nm_applies)
    return Plan(spec.name, backend, tuple(changes))


def _restart_changes(spec: HostSpec, state: HostState, changes: list[Change]) -> list[Change]:
    dropins = (paths.dropin_unit(c.path) for c in changes if isinstance(c, (WriteFile, RemoveFile)))
    changed_units = {unit for unit in dropins if unit}
    recreated = {
        c.command.name
        for c in changes
        if isinstance(c, RunCommand) and isinstance(c.command, CreateVrf)
    }
    written = _written(changes)
    # present_vrfs, not resolved_vrfs: a VRF whose nameservers went restarts its services too.
    resolvers = frozenset(v.name for v in spec.present_vrfs if paths.resolv_conf(v.name) in written)
    return [
        RunCommand(RestartUnit(unit), why)
        for unit, why in services.restarts(spec, state, changed_units, recreated, resolvers)
    ]
