"""Services started inside a VRF: their drop-ins, the checks before, the restarts after.

A service listed under ``vrfs.NAME.services`` gets a drop-in that clears ``ExecStart=`` and
starts the unit's own command through ``mgmt-vrf-exec NAME`` (``ip vrf exec``), so every
socket it opens is bound to the VRF. The command is read from the unit's files on the host,
so the drop-in follows a package update of the unit on the next run.

Pure: planning from a HostState, no pyinfra.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import paths
from .hoststate import HostState, UnitState
from .model import HostSpec
from .render import service_dropin

# sshd is never left stopped for want of its VRF: it starts outside it instead (and says
# so in the journal), so a host whose VRF failed to come up can still be reached.
SSH_UNITS = frozenset({"sshd.service", "ssh.service"})
_PREFIX_CHARS = "-@:+!"
_NEEDED_CAPS = ("cap_sys_admin", "cap_net_admin")
_NEEDED_SYSCALLS = ("bpf",)


@dataclass(frozen=True)
class Wanted:
    unit: str
    vrf: str


def wanted(spec: HostSpec) -> list[Wanted]:
    return [Wanted(unit, vrf) for unit, vrf in spec.service_vrfs.items()]


def ours(state: HostState) -> list[str]:
    """Units our drop-in wraps on the host now."""
    found = (paths.dropin_unit(path) for path, f in state.files.items() if f.exists)
    return sorted(unit for unit in found if unit)


def _logical_lines(text: str) -> list[str]:
    """Unit-file lines with comments dropped and backslash continuations joined."""
    out: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line[0] in "#;"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        out.append(pending + line)
        pending = ""
    if pending:
        out.append(pending.rstrip())
    return out


def exec_start(unit: UnitState, files: dict[str, str]) -> list[str] | None:
    """The unit's effective ExecStart= values without our drop-in; None when a file is
    missing from the probe's output."""
    sources = [unit.fragment_path] if unit.fragment_path else []
    sources += [p for p in unit.dropin_paths if not p.endswith("/" + paths.DROPIN_NAME)]
    values: list[str] = []
    for path in sources:
        text = files.get(path)
        if text is None:
            return None
        section = ""
        for line in _logical_lines(text):
            if line.startswith("[") and line.endswith("]"):
                section = line[1:-1].strip()
                continue
            key, sep, value = line.partition("=")
            if section != "Service" or not sep or key.strip() != "ExecStart":
                continue
            value = value.strip()
            if value:
                values.append(value)
            else:
                values = []
    return values


def _split_prefix(command: str) -> tuple[str, str]:
    i = 0
    while i < len(command) and command[i] in _PREFIX_CHARS:
        i += 1
    return command[:i], command[i:].lstrip()


def is_sshd(unit: UnitState) -> bool:
    """sshd, by the name it was listed with or systemd's own (ssh.service is an alias)."""
    return bool({unit.name, unit.id} & SSH_UNITS)


def wrap(command: str, vrf: str, unit: UnitState) -> str:
    prefix, rest = _split_prefix(command)
    flag = "--outside-if-missing " if is_sshd(unit) else ""
    return f"{prefix}{paths.EXEC_WRAPPER} {flag}{vrf} {rest}"


def _listed(words: str) -> tuple[bool, set[str]]:
    """A systemd list property: (is a deny list, its items)."""
    words = words.strip()
    deny = words.startswith("~")
    return deny, set(words.lstrip("~").split())


def _allows(setting: str, item: str) -> bool:
    deny, items = _listed(setting)
    if deny or not items:
        return item not in items
    return item in items


def unit_problems(spec: HostSpec, state: HostState) -> list[str]:
    """Why a listed service cannot run inside its VRF, before anything changes."""
    wants = wanted(spec)
    if not wants:
        return []
    where = f"host {spec.name}"
    if not state.systemd_running:
        return [
            f"{where}: vrfs.{w.vrf}.services: {w.unit} is listed, but systemd does not run on "
            "the host, so nothing can start it inside the VRF; remove the services list"
            for w in wants
        ]
    problems = []
    resolved = {v.name for v in spec.resolved_vrfs}
    for w in wants:
        key = f"{where}: vrfs.{w.vrf}.services: {w.unit}"
        unit = state.units.get(w.unit)
        if unit is None:
            problems.append(f"{key}: the host did not describe this unit; run the deploy again")
            continue
        if unit.load_state in ("not-found", ""):
            problems.append(
                f"{key} does not exist on the host (systemctl cat {w.unit} finds nothing); "
                "install it first, or remove it from the list"
            )
            continue
        if unit.load_state != "loaded":
            problems.append(
                f"{key} is {unit.load_state} on the host; unmask or fix it, or remove it "
                "from the list"
            )
            continue
        commands = exec_start(unit, state.unit_files)
        if commands is None:
            problems.append(f"{key}: its unit files could not be read; run the deploy again")
            continue
        if not commands:
            problems.append(
                f"{key} has no ExecStart= (nothing of its own to start inside the VRF); "
                "remove it from the list"
            )
        if any("@" in _split_prefix(c)[0] for c in commands):
            problems.append(
                f"{key}: its ExecStart= uses the '@' prefix (a chosen argv[0]), which cannot "
                "pass through ip vrf exec; start it without '@' in a drop-in of your own"
            )
        problems += _sandbox_problems(key, unit, state.cgroup)
        if w.vrf in resolved:
            problems += _resolver_problems(key, unit, w.vrf)
    return problems


def _sandbox_problems(key: str, unit: UnitState, cgroup: str | None) -> list[str]:
    props = unit.properties
    out = []
    user = props.get("User", "")
    if props.get("DynamicUser") == "yes" or user not in ("", "root", "0"):
        who = "DynamicUser=yes" if props.get("DynamicUser") == "yes" else f"User={user}"
        out.append(
            f"{key} runs as {who}, and ip vrf exec needs root (it loads a BPF program into "
            "the service's cgroup); start the program as root and let it drop privileges, "
            "or bind its sockets to the VRF device in the program's own settings"
        )
    if props.get("PrivateNetwork") == "yes" or props.get("NetworkNamespacePath"):
        out.append(
            f"{key} runs in a network namespace of its own (PrivateNetwork=/"
            "NetworkNamespacePath=), where the VRF device does not exist"
        )
    if not _allows(props.get("RestrictAddressFamilies", ""), "AF_NETLINK"):
        out.append(
            f"{key}: RestrictAddressFamilies= leaves out AF_NETLINK, which ip vrf exec needs; "
            "add AF_NETLINK in a drop-in of your own"
        )
    caps = props.get("CapabilityBoundingSet")
    if caps is not None:
        missing = [c for c in _NEEDED_CAPS if c not in caps.split()]
        if missing:
            out.append(
                f"{key}: CapabilityBoundingSet= drops {' and '.join(c.upper() for c in missing)}"
                ", which ip vrf exec needs to attach the VRF to the service's cgroup"
            )
    syscalls = props.get("SystemCallFilter", "")
    blocked = [s for s in _NEEDED_SYSCALLS if not _allows(syscalls, s)]
    if cgroup == "v1" and not _allows(syscalls, "mount"):
        blocked.append("mount")
    if blocked:
        out.append(f"{key}: SystemCallFilter= blocks {', '.join(blocked)}, which ip vrf exec calls")
    if props.get("ProtectControlGroups") == "yes" and cgroup in ("v2", "hybrid"):
        out.append(
            f"{key}: ProtectControlGroups=yes makes /sys/fs/cgroup read-only, and ip vrf exec "
            "must create the VRF's cgroup there; set ProtectControlGroups=no in a drop-in "
            "of your own, or bind the program's sockets to the VRF device instead"
        )
    if props.get("ProtectSystem") == "strict" and cgroup == "v1":
        out.append(
            f"{key}: ProtectSystem=strict makes /run read-only, and on this cgroup v1 host "
            "ip vrf exec mounts cgroup2 at /run/cgroup2; relax it or add "
            "ReadWritePaths=/run/cgroup2 in a drop-in of your own"
        )
    if out and unit.id == "chronyd.service":
        out.append(
            f"{key}: for chronyd, chrony.conf's `binddevice` and `bindacqdevice` (chrony 4.0 "
            "and later) bind its sockets to the VRF device without ip vrf exec"
        )
    return out


def _resolver_problems(key: str, unit: UnitState, vrf: str) -> list[str]:
    """mgmt-vrf-exec gives the service its VRF's resolv.conf in a mount namespace of its
    own: unshare and mount must be allowed (sshd keeps the host's resolver)."""
    if is_sshd(unit):
        return []
    props = unit.properties
    why = (
        f"VRF {vrf} has nameservers, so mgmt-vrf-exec mounts its resolv.conf in a mount "
        "namespace of the service's own"
    )
    out = []
    namespaces = props.get("RestrictNamespaces", "no").strip()
    if namespaces == "yes" or (namespaces not in ("", "no") and not _allows(namespaces, "mnt")):
        out.append(
            f"{key}: RestrictNamespaces= forbids mount namespaces; {why}; allow mnt in a "
            "drop-in of your own (RestrictNamespaces=mnt ...), or remove the VRF's nameservers"
        )
    syscalls = props.get("SystemCallFilter", "")
    blocked = [s for s in ("unshare", "mount") if not _allows(syscalls, s)]
    if blocked:
        out.append(f"{key}: SystemCallFilter= blocks {', '.join(blocked)}; {why}")
    return out


def in_vrf(unit: UnitState | None, vrf: str | None) -> bool:
    """Whether a unit is where it should be: a stopped one counts (nothing to move), a
    failed one does not (it must start again, in the right place)."""
    if unit is None or unit.active_state in ("inactive", ""):
        return True
    if unit.active_state == "failed":
        return False
    if not unit.running or not unit.main_pid:
        return True  # starting or stopping: judged on the next run
    return unit.vrf == vrf


def dropin_files(spec: HostSpec, state: HostState) -> dict[str, tuple[str, str] | None]:
    """Drop-in path -> (content, why) to write, or None to remove (a unit no longer listed)."""
    files: dict[str, tuple[str, str] | None] = {}
    for w in wanted(spec):
        unit = state.units.get(w.unit)
        commands = exec_start(unit, state.unit_files) if unit is not None else None
        if unit is None or not commands:
            continue  # refused by unit_problems before any change
        content = service_dropin(w.unit, w.vrf, [wrap(c, w.vrf, unit) for c in commands])
        files[paths.dropin(w.unit)] = (content, f"starts {w.unit} inside VRF {w.vrf}")
    listed = spec.service_vrfs
    for name in ours(state):
        if name not in listed:
            files[paths.dropin(name)] = None
    return files


def restarts(
    spec: HostSpec,
    state: HostState,
    changed_units: set[str],
    recreated_vrfs: set[str],
    changed_resolvers: frozenset[str] = frozenset(),
) -> list[tuple[str, str]]:
    """(unit, why) for every service to restart once the VRFs are in place.

    Only services that run (or failed) are restarted: a stopped one starts in its VRF
    whenever it starts next.
    """
    out: list[tuple[str, str]] = []
    listed = spec.service_vrfs
    for unit_name in dict.fromkeys([*listed, *ours(state)]):
        unit = state.units.get(unit_name)
        if unit is None or not (unit.running or unit.active_state == "failed"):
            continue
        vrf = listed.get(unit_name)
        where = f"inside VRF {vrf}" if vrf else "outside every VRF"
        if unit_name in changed_units:
            out.append((unit_name, f"{unit_name} restarts {where} (its drop-in changed)"))
        elif vrf is not None and vrf in recreated_vrfs:
            out.append((unit_name, f"{unit_name} restarts inside VRF {vrf} (VRF recreated)"))
        elif vrf in changed_resolvers and not is_sshd(unit):
            # mgmt-vrf-exec mounts the VRF's resolv.conf when it starts the service; sshd
            # keeps the host's (see the wrapper).
            out.append(
                (unit_name, f"{unit_name} restarts inside VRF {vrf} (its resolv.conf changed)")
            )
        elif not in_vrf(unit, vrf):
            now = (
                unit.active_state if unit.active_state == "failed" else f"in {unit.vrf or 'no VRF'}"
            )
            out.append((unit_name, f"{unit_name} restarts {where} (it is {now})"))
    return out
