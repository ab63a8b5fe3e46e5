"""One remote command that reads everything HostState holds, and its parser.

The command prints sections, each introduced by a marker line::

    ##mgmt-vrf## <section> [<argument>]

and always ends with ``##mgmt-vrf## end``. Every marker is preceded by an empty line because
iproute2 leaves its output unterminated in some error cases (an empty table prints ``[`` with no
newline), which would otherwise glue the marker to the end of that output.

No pyinfra import here: mgmt_vrf/pyinfra/facts.py adapts this to pyinfra, tests call it directly.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Interface, IPv6Interface, ip_interface, ip_network
from typing import Any, Literal

from .commands import sh_quote
from .hoststate import (
    LOCAL_TABLE,
    MAIN_TABLE,
    TABLE_NAMES,
    FileState,
    HostState,
    Kernel,
    Link,
    NetworkManager,
    Profile,
    RouteEntry,
    RuleEntry,
    UnitState,
)
from .paths import (
    DROPIN_NAME,
    NETWORK_SCRIPTS,
    SYSTEM_CONNECTIONS,
    SYSTEMD_DIR,
    UNIT_NAME,
    UNIT_WANTS_LINK,
)

MARKER = "##mgmt-vrf##"
FORMAT_VERSION = "1"

L3MDEV_SYSCTLS = (
    "net.ipv4.tcp_l3mdev_accept",
    "net.ipv4.udp_l3mdev_accept",
    "net.ipv4.raw_l3mdev_accept",
)

# Seconds the probe waits for our boot unit to finish before it reads anything: right after a
# reboot sshd answers before the unit has rebuilt the VRFs, and a plan made from that half-built
# state would race the unit (both creating the same device).
BOOT_UNIT_WAIT = 120

# What the kernel logs (cgroup v1 hosts, kernels before 5.15) when a net_cls or net_prio
# cgroup is used: from then on until reboot, sockets no longer match cgroup2 BPF programs,
# and `ip vrf exec` runs programs in the default VRF without an error.
SOCKET_MATCHING_OFF = "disabling cgroup2 socket matching"

# Sections a complete combined probe prints exactly once.
CORE_SECTIONS = ("host", "link", "addr", "route4", "route6", "rule4", "rule6", "sysctl")

# Kernel enums (rtnetlink.h). `ip -N` prints these numbers instead of names, and it has to be
# -N: names come from /etc/iproute2/rt_tables, where admins often name VRF tables ("10 mgmt").
_ROUTE_TYPES = {
    0: "unspec",
    1: "unicast",
    2: "local",
    3: "broadcast",
    4: "anycast",
    5: "multicast",
    6: "blackhole",
    7: "unreachable",
    8: "prohibit",
    9: "throw",
    10: "nat",
    11: "xresolve",
}
_ROUTE_PROTOCOLS = {
    0: "unspec",
    1: "redirect",
    2: "kernel",
    3: "boot",
    4: "static",
    8: "gated",
    9: "ra",
    10: "mrt",
    11: "zebra",
    12: "bird",
    13: "dnrouted",
    14: "xorp",
    15: "ntk",
    16: "dhcp",
    17: "mrouted",
    18: "keepalived",
    42: "babel",
    99: "openr",
    186: "bgp",
    187: "isis",
    188: "ospf",
    189: "rip",
    192: "eigrp",
}
_TABLE_NUMBER_NAMES = {number: name for name, number in TABLE_NAMES.items()}
# Routes the kernel derives from addresses; they say nothing about what we configure.
_DERIVED_ROUTE_TYPES = frozenset({"local", "broadcast", "anycast", "multicast"})

_IFCFG_KEYS = ("DEVICE", "NAME", "VRF", "TYPE", "UUID")
# Only these keyfile keys leave the host: keyfiles hold secrets (psk, passwords, vpn-secrets).
_KEYFILE_KEYS = {
    "connection": (
        "id",
        "uuid",
        "type",
        "interface-name",
        "master",
        "controller",
        "slave-type",
        "port-type",
    ),
    "vrf": ("table",),
}


class ProbeError(ValueError):
    """The probe output cannot be trusted to describe the host."""


# --- command -------------------------------------------------------------------------------


def _marker(section: str, argument: str | None = None) -> str:
    text = f"{MARKER} {section}" if argument is None else f"{MARKER} {section} {argument}"
    return f"printf '\\n%s\\n' {sh_quote(text)}"


def _check_path(path: str) -> str:
    if not path.startswith("/") or "\n" in path or "\r" in path:
        raise ValueError(f"probe paths must be absolute and on one line: {path!r}")
    return path


def _check_port(port: str) -> str:
    # The name becomes part of a /proc/sys path; "/" would walk out of the port's directory.
    if not port or "/" in port or any(c.isspace() for c in port) or port in (".", ".."):
        raise ValueError(f"not a valid interface name: {port!r}")
    return port


def _host_section() -> list[str]:
    # Shell builtins wherever they do the job: on a slow CPU each process the probe starts
    # costs a tenth of a second, and every run reads the probe at least once per host.
    wants = sh_quote(UNIT_WANTS_LINK)
    ifup_eth = sh_quote(f"{NETWORK_SCRIPTS}/ifup-eth")
    scripts_glob = sh_quote(NETWORK_SCRIPTS) + "/*"
    return [
        _marker("host"),
        # `|| [ -n ]`: a last line without its newline counts too.
        '[ -r /etc/os-release ] && while IFS= read -r mv_l || [ -n "$mv_l" ]; do '
        'case "$mv_l" in '
        "ID=*|VERSION_ID=*) printf '%s\\n' \"$mv_l\";; esac; done < /etc/os-release",
        "printf 'iproute2=%s\\n' \"$(ip -V 2>/dev/null)\"",
        "if [ -d /run/systemd/system ]; then echo systemd=1; else echo systemd=0; fi",
        # $1 and $2: our unit's and NetworkManager's states, from _wait_for_boot_unit.
        "printf 'unit_state=%s\\n' \"${1-}\"",
        f"if [ -e {wants} ] || [ -L {wants} ]; then echo unit_enabled=1; "
        "else echo unit_enabled=0; fi",
        # NetworkManager ships its own /usr/sbin/ifup; only the network-scripts package
        # points it (through alternatives) into the network-scripts directory.
        f"if [ -e {ifup_eth} ]; then echo network_scripts=1; "
        f'else case "$(readlink -f /usr/sbin/ifup 2>/dev/null)" in {scripts_glob}) '
        "echo network_scripts=1;; *) echo network_scripts=0;; esac; fi",
        "mv_nm=$(command -v NetworkManager 2>/dev/null)",
        '[ -n "$mv_nm" ] || { [ -x /usr/sbin/NetworkManager ] && mv_nm=/usr/sbin/NetworkManager; }',
        'if [ -n "$mv_nm" ]; then echo nm_installed=1; '
        'printf \'nm_version=%s\\n\' "$("$mv_nm" --version 2>/dev/null)"; '
        # Its settings plugins as it would load them: `plugins=` as configured, or
        # `# plugins=` (the build's default) when no file sets it. AlmaLinux 10's reads
        # only keyfiles.
        '"$mv_nm" --print-config 2>/dev/null | while IFS= read -r mv_l; do case "$mv_l" in '
        "'plugins='*|'# plugins='*) printf 'nm_plugins=%s\\n' \"${mv_l#*plugins=}\"; break;; "
        "esac; done; "
        "else echo nm_installed=0; fi",
        # Also a NetworkManager started outside systemd counts.
        'if [ "${2-}" = active ] || pidof NetworkManager >/dev/null 2>&1; '
        "then echo nm_running=1; else echo nm_running=0; fi",
        "mv_cg=$(stat -fc %T /sys/fs/cgroup 2>/dev/null)",
        "printf 'cgroup_fs=%s\\n' \"$mv_cg\"",
        "if [ -d /sys/fs/cgroup/unified ]; then echo cgroup_unified=1; "
        "else echo cgroup_unified=0; fi",
        *kernel_lines(),
    ]


def kernel_lines() -> list[str]:
    """What decides whether VRFs work on this kernel at all, read only where it can fail.

    The vrf module: loaded (or built in) or not; when not, what modprobe
    would do, as a dry run, for the alias the kernel asks for when a VRF device is created
    (a `blacklist vrf` line hides the alias, not the name) and for the name.
    On cgroup v1, the kernel's log line saying it turned cgroup2 socket matching off (then
    `ip vrf exec` binds nothing) and how many net_cls/net_prio cgroups exist.
    """
    dry_run = (
        "mv_l=$(modprobe -n -v {0} 2>&1); mv_rc=$?; "
        "printf 'modprobe_{1}=%s %s\\n' \"$mv_rc\" \"$(printf '%s' \"$mv_l\" | tr '\\n' ' ')\"; "
    )
    return [
        # /proc/modules too: a container's or the lab's partial /sys has no module directory.
        "mv_vrf=0; if [ -d /sys/module/vrf ]; then mv_vrf=1; else "
        'while read -r mv_n mv_l; do [ "$mv_n" = vrf ] && mv_vrf=1 && break; '
        "done 2>/dev/null </proc/modules; fi",
        'if [ "$mv_vrf" = 1 ]; then echo vrf_module=1; else echo vrf_module=0; '
        "{ read -r mv_l </proc/sys/kernel/modules_disabled; } 2>/dev/null "
        "&& printf 'modules_disabled=%s\\n' \"$mv_l\"; "
        + dry_run.format("rtnl-link-vrf", "alias")
        + dry_run.format("vrf", "name")
        + "fi",
        'if [ "$mv_cg" != cgroup2fs ]; then '
        'while read -r mv_n mv_h mv_c mv_e; do case "$mv_n" in net_cls|net_prio) '
        'printf \'cgroups_%s=%s %s %s\\n\' "$mv_n" "$mv_h" "$mv_c" "$mv_e";; esac; '
        "done 2>/dev/null </proc/cgroups; "
        "printf 'socket_matching_off=%s\\n' "
        f'"$(dmesg 2>/dev/null | grep -m1 -F {sh_quote(SOCKET_MATCHING_OFF)})"; fi',
    ]


def _ip_section(section: str, ip_args: str, argument: str | None = None) -> list[str]:
    return [_marker(section, argument), f"ip {ip_args} 2>/dev/null"]


def _link_sections() -> list[str]:
    return [*_ip_section("link", "-j -d link show"), *_ip_section("addr", "-j addr show")]


def _route_sections(families: Sequence[int] = (4, 6), table: str = "all") -> list[str]:
    out: list[str] = []
    for family in families:
        argument = None if table == "all" else table
        out += _ip_section(
            f"route{family}",
            f"-N -j -{family} route show table {sh_quote(table)}",
            argument,
        )
    return out


SYSCTL_ROOT = "/proc/sys/"


def _sysctl_section(ports: Sequence[str]) -> list[str]:
    paths = [SYSCTL_ROOT + name.replace(".", "/") for name in L3MDEV_SYSCTLS]
    paths += [f"{SYSCTL_ROOT}net/ipv6/conf/{port}/keep_addr_on_down" for port in ports]
    # One grep for all of them prints PATH:VALUE lines (a missing one, such as an absent
    # port's, prints nothing). Not the read builtin: dash reads /proc/sys a byte at a time
    # and gets only the first one ("-" for -1).
    quoted = " ".join(sh_quote(p) for p in paths)
    return [_marker("sysctl"), f"grep -H '' {quoted} 2>/dev/null"]


def _sysctl_line(line: str) -> tuple[str, str] | None:
    """(dotted name, value) from `PATH:VALUE` (grep -H) or `name=value` (older probes)."""
    if line.startswith(SYSCTL_ROOT):
        path, sep, value = line.partition(":")
        if not sep:
            return None
        # Slashes part the levels; a dot in a device name (eth2.100) stays a dot.
        return path[len(SYSCTL_ROOT) :].replace("/", "."), value.strip()
    key, sep, value = line.rpartition("=")
    return (key.strip(), value.strip()) if sep and key else None


def _file_sections(paths: Sequence[str]) -> list[str]:
    out: list[str] = []
    for path in paths:
        q = sh_quote(path)
        out.append(
            f"if [ -f {q} ]; then {_marker('file', path)}; "
            f"base64 < {q} 2>/dev/null || {_marker('file-error', path)}; "
            f"elif [ -e {q} ] || [ -L {q} ]; then {_marker('notfile', path)}; "
            f"else {_marker('nofile', path)}; fi"
        )
    return out


NM_DEVICE_STATE_DIR = "/run/NetworkManager/devices"


def _regex(text: str) -> str:
    """``text`` matched literally in an extended regular expression."""
    return re.sub(r"([][.\\()*+?{}|^$])", r"\\\1", text)


def _port_profile_sections(ports: Sequence[str], skip: Sequence[str] = ()) -> list[str]:
    """Per port, the uuid of the profile NetworkManager has active on it (its own run state,
    /run/NetworkManager/devices/IFINDEX), as `PORT UUID` lines; then the whole of every
    keyfile that names a port (interface-name) or is active on one: the deploy edits a
    port's own keyfile in place. Such a file may hold secrets (802.1x); every diff masks them.
    """
    if not ports:
        return []
    names = "|".join(_regex(p) for p in ports)
    pattern = f"^[[:space:]]*interface-name[[:space:]]*=[[:space:]]*({names})[[:space:]]*$"
    skip_case = "|".join(sh_quote(p) for p in skip) or "''"
    file_marker = f"'\\n{MARKER} file %s\\n'"
    state = f'{sh_quote(NM_DEVICE_STATE_DIR)}/"$mv_i"'
    out = [_marker("nm-active"), f"mv_p={sh_quote(pattern)}"]
    for port in ports:
        q = sh_quote(port)
        ifindex = f"/sys/class/net/{q}/ifindex"
        out.append(
            f"mv_i=; [ -r {ifindex} ] && read -r mv_i < {ifindex}; "
            f'[ -n "$mv_i" ] && [ -r {state} ] && '
            'while IFS= read -r mv_l || [ -n "$mv_l" ]; do case "$mv_l" in '
            # Only a uuid's own characters reach the pattern.
            "connection-uuid=*[!0-9a-fA-F-]*) ;; "
            "connection-uuid=?*) mv_l=${mv_l#connection-uuid=}; "
            f"printf '%s %s\\n' {q} \"$mv_l\"; "
            'mv_p="$mv_p|^[[:space:]]*uuid[[:space:]]*=[[:space:]]*${mv_l}[[:space:]]*\\$";; '
            f"esac; done < {state}"
        )
    return [
        *out,
        "set --",
        f"for mv_f in {sh_quote(SYSTEM_CONNECTIONS)}/*.nmconnection; do "
        '[ -f "$mv_f" ] || continue; '
        f'case "$mv_f" in {skip_case}) continue;; esac; set -- "$@" "$mv_f"; done',
        # One path per line: installers name keyfiles "Wired connection 1.nmconnection".
        '[ "$#" -eq 0 ] || grep -l -E -e "$mv_p" -- "$@" 2>/dev/null | '
        "while IFS= read -r mv_f; do "
        f'printf {file_marker} "$mv_f"; base64 < "$mv_f" 2>/dev/null; done',
    ]


def _profile_sections(skip: Sequence[str] = ()) -> list[str]:
    """Every ifcfg/route/rule file whole, and a summary of every keyfile.

    ``skip`` are files the file sections already print: nothing is read twice.
    """
    conditions = []
    for section, keys in _KEYFILE_KEYS.items():
        conditions.append(
            f'(s == "{section}" && $0 ~ /^[[:space:]]*({"|".join(keys)})[[:space:]]*=/)'
        )
    # One awk for all keyfiles; it prints each file's marker itself.
    awk = (
        'FNR == 1 { printf "\\n%s profile %s\\n", m, FILENAME; s = "" } '
        '/^[[:space:]]*\\[/ { s = $0; gsub(/[[:space:]]|\\[|\\]/, "", s); next } '
        + " || ".join(conditions)
        + ' { l = $0; sub(/^[[:space:]]*/, "", l); print s "." l }'
    )
    file_marker = f"'\\n{MARKER} file %s\\n'"
    scripts = sh_quote(NETWORK_SCRIPTS)
    skip_case = "|".join(sh_quote(p) for p in skip) or "''"
    return [
        # The whole of every ifcfg/route/rule file (they hold no secrets; keys-* files are
        # not read): a profile we remove is backed up and shown as a diff, its route and
        # rule files are known to exist, and the parser reads the ifcfg profiles from them,
        # all without a second round trip.
        f"for mv_f in {scripts}/ifcfg-* {scripts}/route-* {scripts}/route6-* "
        f"{scripts}/rule-* {scripts}/rule6-*; do "
        '[ -f "$mv_f" ] || continue; '
        f'case "$mv_f" in {skip_case}) continue;; esac; '
        f'printf {file_marker} "$mv_f"; base64 < "$mv_f" 2>/dev/null; done',
        "set --",
        f"for mv_f in {sh_quote(SYSTEM_CONNECTIONS)}/*.nmconnection; do "
        '[ -f "$mv_f" ] && set -- "$@" "$mv_f"; done',
        f'[ "$#" -eq 0 ] || awk -v m={sh_quote(MARKER)} {sh_quote(awk)} "$@" 2>/dev/null',
    ]


# What decides whether `ip vrf exec` can run inside a unit, and what it starts.
UNIT_PROPERTIES = (
    "Id",
    "LoadState",
    "ActiveState",
    "MainPID",
    "FragmentPath",
    "DropInPaths",
    "User",
    "DynamicUser",
    "PrivateNetwork",
    "NetworkNamespacePath",
    "ProtectControlGroups",
    "ProtectSystem",
    "RestrictAddressFamilies",
    "CapabilityBoundingSet",
    "SystemCallFilter",
    "RestrictNamespaces",
)


def _check_unit(unit: str) -> str:
    if not unit or any(c.isspace() or c in "/'\"$`\\" for c in unit) or unit.startswith("-"):
        raise ValueError(f"not a valid unit name: {unit!r}")
    return unit


def _unit_sections(units: Sequence[str]) -> list[str]:
    """The listed services plus every unit our drop-in still wraps: `systemctl show` for
    each, then their unit files and their main processes' cgroups, in one awk."""
    dropins = f"{sh_quote(SYSTEMD_DIR)}/*.d/{DROPIN_NAME}"
    listed = " ".join(sh_quote(_check_unit(u)) for u in units)
    file_marker = f"'\\n{MARKER} file %s\\n'"
    awk = 'FNR == 1 { printf "\\n%s unitfile %s\\n", m, FILENAME } { print }'
    show = f'systemctl show -p {",".join(UNIT_PROPERTIES)} -- "$@" 2>/dev/null'
    files = (
        "s/^FragmentPath=\\(..*\\)/\\1/p; s/^DropInPaths=//p; "
        "s#^MainPID=\\([1-9][0-9]*\\)$#/proc/\\1/cgroup#p"
    )
    return [
        f"set -- {listed}",
        f"for mv_f in {dropins}; do "
        '[ -f "$mv_f" ] || continue; mv_u=${mv_f%.d/*}; mv_u=${mv_u##*/}; '
        'case " $* " in *" $mv_u "*) continue;; esac; '
        f'printf {file_marker} "$mv_f"; base64 < "$mv_f" 2>/dev/null; set -- "$@" "$mv_u"; done',
        'if [ "$#" -gt 0 ] && [ -d /run/systemd/system ]; then '
        + _marker("units")
        + "; printf 'unit=%s\\n' \"$@\"; "
        + f"mv_s=$({show}); printf '%s\\n' \"$mv_s\"; "
        + f"set -- $(printf '%s\\n' \"$mv_s\" | sed -n {sh_quote(files)}); "
        + f'[ "$#" -eq 0 ] || awk -v m={sh_quote(MARKER)} {sh_quote(awk)} "$@" 2>/dev/null; '
        + "fi",
    ]


def _wait_for_boot_unit() -> list[str]:
    # One systemctl call per round answers for both units; the host section reads the last
    # answer from $1 (our unit) and $2 (NetworkManager). Without systemd both are empty.
    query = f"systemctl is-active {UNIT_NAME} NetworkManager.service 2>/dev/null"
    return [
        "mv_i=0",
        f'while set -- $({query}); [ "${{1-}}" = activating ] '
        f'&& [ "$mv_i" -lt {BOOT_UNIT_WAIT} ]; do sleep 1; mv_i=$((mv_i + 1)); done',
    ]


def _wrap(parts: Sequence[str], before: Sequence[str] = ()) -> str:
    # `true` last: pyinfra fails the host on a non-zero exit, and the end marker is what tells
    # the parser the output is whole.
    body = [
        "LC_ALL=C",
        "export LC_ALL",
        *before,
        _marker("begin", FORMAT_VERSION),
        *parts,
        _marker("end"),
        "true",
    ]
    return "; ".join(body)


def probe_command(
    paths: Sequence[str] = (), ports: Sequence[str] = (), units: Sequence[str] = ()
) -> str:
    """The combined probe: one POSIX sh command printing every section HostState needs.

    ``paths`` are files whose full content is wanted (missing ones are reported as such),
    ``ports`` the interfaces whose ``keep_addr_on_down`` sysctl is read, ``units`` the
    services to run inside VRFs.
    """
    paths = [_check_path(p) for p in dict.fromkeys(paths)]
    ports = [_check_port(p) for p in dict.fromkeys(ports)]
    return _wrap(
        [
            *_host_section(),
            *_link_sections(),
            *_route_sections(),
            *_ip_section("rule4", "-N -j -4 rule show"),
            *_ip_section("rule6", "-N -j -6 rule show"),
            *_sysctl_section(ports),
            *_file_sections(paths),
            *_profile_sections(skip=paths),
            *_port_profile_sections(ports, skip=paths),
            *_unit_sections(list(dict.fromkeys(units))),
        ],
        before=_wait_for_boot_unit(),
    )


def links_command() -> str:
    """Links and addresses only (for the small VRF devices fact)."""
    return _wrap(_link_sections())


def route_table_command(table: int | str = "main", family: int | None = None) -> str:
    """One routing table, v4 and/or v6 (for the small route table fact)."""
    # Only numbers and the names iproute2 always knows: output for one table carries no
    # "table" key, so the parser must be able to turn the argument itself into a number.
    table_arg = str(table).strip()
    number = _table_number(table_arg)
    if number is None or not 0 < number < 2**32 or isinstance(table, bool):
        raise ValueError(f"not a routing table (a number, main, local or default): {table!r}")
    if family not in (None, 4, 6):
        raise ValueError(f"family must be 4, 6 or None, not {family!r}")
    families = (4, 6) if family is None else (family,)
    return _wrap(_route_sections(families, table_arg))


# --- parser --------------------------------------------------------------------------------


@dataclass
class _Section:
    name: str
    argument: str | None
    lines: list[str] = field(default_factory=list)


def _split_sections(lines: Iterable[str]) -> tuple[list[_Section], bool]:
    sections: list[_Section] = []
    current: _Section | None = None
    ended = False
    prefix = MARKER + " "
    for raw in lines:
        line = raw.rstrip("\r\n")
        if line.startswith(prefix):
            name, _, argument = line[len(prefix) :].partition(" ")
            if name == "end":
                ended = True
                current = None
                continue
            current = _Section(name, argument if argument else None)
            sections.append(current)
        elif current is not None:
            current.lines.append(line)
    return sections, ended


class _Parser:
    def __init__(self) -> None:
        self.warnings: list[str] = []

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    def json_list(self, section: _Section) -> list[dict[str, Any]]:
        where = _where(section)
        text = "".join(line.strip() for line in section.lines)
        if not text:
            self.warn(f"{where}: no output")
            return []
        # iproute2 prints a bare "[" (and exits 2) when asked for a table that does not exist.
        if text == "[":
            return []
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ProbeError(f"{where}: output is not valid JSON ({e}): {text[:120]!r}") from e
        if not isinstance(data, list):
            raise ProbeError(f"{where}: expected a JSON list, got {type(data).__name__}")
        items = []
        for item in data:
            # `ip -j ... show type vrf` prints one {} per non-matching link.
            if isinstance(item, dict) and item:
                items.append(item)
            elif not isinstance(item, dict):
                self.warn(f"{where}: ignored a non-object entry {item!r}")
        return items


def _where(section: _Section) -> str:
    return f"section {section.name!r}" + (f" ({section.argument})" if section.argument else "")


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _to_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return None
    return None


def _table_number(value: Any) -> int | None:
    number = _to_int(value)
    if number is not None:
        return number
    if isinstance(value, str):
        return TABLE_NAMES.get(value)
    return None


def _enum_name(value: Any, names: dict[int, str]) -> str | None:
    if value is None:
        return None
    number = _to_int(value)
    if number is not None:
        return names.get(number, str(number))
    return str(value)


def _canon_dst(dst: Any, family: int) -> str | None:
    if not isinstance(dst, str) or not dst:
        return None
    if dst == "default":
        return "default"
    try:
        network = ip_network(dst, strict=False)
    except ValueError:
        return None
    if network.version != family:
        return None
    if network.prefixlen == 0:
        return "default"
    return str(network)


def _parse_route(
    parser: _Parser,
    obj: dict[str, Any],
    family: Literal[4, 6],
    default_table: int,
    where: str,
    drop_local_table: bool,
) -> RouteEntry | None:
    route_type = _enum_name(obj.get("type"), _ROUTE_TYPES) or "unicast"
    if route_type in _DERIVED_ROUTE_TYPES:
        return None
    table = _table_number(obj.get("table")) if "table" in obj else default_table
    if table is None:
        parser.warn(f"{where}: ignored a route in unknown table {obj.get('table')!r}")
        return None
    if table == LOCAL_TABLE and drop_local_table:
        return None
    dst = _canon_dst(obj.get("dst"), family)
    if dst is None:
        parser.warn(f"{where}: ignored a route with destination {obj.get('dst')!r}")
        return None
    gateway = obj.get("gateway")
    via = obj.get("via")
    if gateway is None and isinstance(via, dict):
        gateway = via.get("host")
    hops = obj.get("nexthops")
    nexthop_gateways = tuple(
        h["gateway"]
        for h in (hops if isinstance(hops, list) else [])
        if isinstance(h, dict) and isinstance(h.get("gateway"), str)
    )
    return RouteEntry(
        family=family,
        table=table,
        dst=dst,
        type=route_type,
        gateway=gateway if isinstance(gateway, str) else None,
        dev=obj.get("dev") if isinstance(obj.get("dev"), str) else None,
        metric=_to_int(obj.get("metric")),
        protocol=_enum_name(obj.get("protocol"), _ROUTE_PROTOCOLS),
        nexthop_gateways=nexthop_gateways,
    )


def _parse_routes(parser: _Parser, section: _Section) -> list[RouteEntry]:
    family: Literal[4, 6] = 4 if section.name == "route4" else 6
    # `table all` leaves out the "table" key for the main table only; one table, always.
    table_of_section = MAIN_TABLE if section.argument is None else _table_number(section.argument)
    if table_of_section is None:
        raise ProbeError(f"{_where(section)}: unknown table {section.argument!r}")
    default_table: int = table_of_section
    where = _where(section)
    routes = []
    for obj in parser.json_list(section):
        route = _parse_route(parser, obj, family, default_table, where, section.argument is None)
        if route is not None:
            routes.append(route)
    return routes


def _parse_rules(parser: _Parser, section: _Section) -> list[RuleEntry]:
    family: Literal[4, 6] = 4 if section.name == "rule4" else 6
    rules = []
    for obj in parser.json_list(section):
        table = obj.get("table")
        number = _to_int(table)
        if number is not None:
            table = _TABLE_NUMBER_NAMES.get(number, str(number))
        rules.append(
            RuleEntry(
                family=family,
                priority=_to_int(obj.get("priority")) or 0,
                table=None if table is None else str(table),
                # iproute2 prints the l3mdev rule as `"l3mdev": null` (a flag with no value).
                l3mdev="l3mdev" in obj and obj.get("l3mdev") is not False,
                selectors=_rule_selectors(obj),
            )
        )
    return rules


# `ip -j rule` keys of what a rule matches on, in `ip rule`'s order, with its words.
_RULE_MATCHES = (
    ("tos", "tos"),
    ("fwmark", "fwmark"),
    ("iif", "iif"),
    ("oif", "oif"),
    ("ipproto", "ipproto"),
    ("sport", "sport"),
    ("dport", "dport"),
)


def _rule_selectors(obj: dict[str, Any]) -> tuple[str, ...]:
    words = ["not"] if obj.get("not") else []
    for key, word in (("src", "from"), ("dst", "to")):
        value = obj.get(key)
        if value not in (None, "all"):
            length = obj.get(f"{key}len")
            words.append(f"{word} {value}" + (f"/{length}" if length is not None else ""))
    for key, word in _RULE_MATCHES:
        if obj.get(key) not in (None, ""):
            mask = obj.get("fwmask") if key == "fwmark" else None
            words.append(f"{word} {obj[key]}" + (f"/{mask}" if mask else ""))
    if "uid_start" in obj or "uidrange" in obj:
        words.append(f"uidrange {obj.get('uidrange') or obj.get('uid_start')}")
    return tuple(words)


def _parse_links(
    parser: _Parser, link_section: _Section | None, addr_section: _Section | None
) -> dict[str, Link]:
    addresses: dict[str, list[IPv4Interface | IPv6Interface]] = {}
    if addr_section is not None:
        for obj in parser.json_list(addr_section):
            name = obj.get("ifname")
            if not isinstance(name, str):
                continue
            for info in obj.get("addr_info") or ():
                if not isinstance(info, dict) or info.get("scope") != "global":
                    continue
                try:
                    addr = ip_interface(f"{info['local']}/{info['prefixlen']}")
                except (KeyError, ValueError):
                    parser.warn(f"{_where(addr_section)}: ignored address {info!r} on {name}")
                    continue
                addresses.setdefault(name, []).append(addr)

    links: dict[str, Link] = {}
    if link_section is None:
        return links
    for obj in parser.json_list(link_section):
        name = obj.get("ifname")
        if not isinstance(name, str):
            parser.warn(f"{_where(link_section)}: ignored a link without a name")
            continue
        info = _dict(obj.get("linkinfo"))
        kind = info.get("info_kind") if isinstance(info.get("info_kind"), str) else None
        data = _dict(info.get("info_data"))
        flags = obj.get("flags")
        flags = flags if isinstance(flags, list) else []
        master = obj.get("master")
        links[name] = Link(
            name=name,
            ifindex=_to_int(obj.get("ifindex")) or 0,
            kind=kind,
            vrf_table=_to_int(data.get("table")) if kind == "vrf" else None,
            master=master if isinstance(master, str) else None,
            up="UP" in flags,
            addresses=tuple(addresses.get(name, ())),
        )
    return links


def _unquote(value: str) -> str:
    value = value.strip()
    try:
        words = shlex.split(value, comments=True)
    except ValueError:
        return value.strip("\"'")
    return " ".join(words)


_IFCFG_KEY_LINE = re.compile(r"^[ \t]*(" + "|".join(_IFCFG_KEYS) + r")=")


def _is_ifcfg(path: str) -> bool:
    return path.rpartition("/")[2].startswith("ifcfg-")


def _ifcfg_summary(path: str, content: bytes) -> _Section:
    """The lines of an ifcfg file that say which device and VRF its profile is for."""
    lines = content.decode("utf-8", "replace").splitlines()
    return _Section("profile", path, [line for line in lines if _IFCFG_KEY_LINE.match(line)])


def _parse_profile(section: _Section) -> Profile:
    path = section.argument or ""
    values: dict[str, str] = {}
    for line in section.lines:
        key, sep, value = line.partition("=")
        if not sep:
            continue
        values.setdefault(key.strip(), value.strip())
    if path.endswith(".nmconnection"):
        slave_type = values.get("connection.port-type") or values.get("connection.slave-type")
        master = values.get("connection.controller") or values.get("connection.master")
        return Profile(
            path=path,
            device=values.get("connection.interface-name") or None,
            name=values.get("connection.id") or None,
            uuid=values.get("connection.uuid") or None,
            vrf=master if slave_type == "vrf" and master else None,
            type=values.get("connection.type") or None,
            table=_to_int(values.get("vrf.table")),
        )
    return Profile(
        path=path,
        device=_unquote(values["DEVICE"]) or None if "DEVICE" in values else None,
        name=_unquote(values["NAME"]) or None if "NAME" in values else None,
        uuid=_unquote(values["UUID"]) or None if "UUID" in values else None,
        vrf=_unquote(values["VRF"]) or None if "VRF" in values else None,
        type=_unquote(values["TYPE"]) or None if "TYPE" in values else None,
    )


def _parse_file(section: _Section) -> FileState:
    path = section.argument or ""
    if section.name == "nofile":
        return FileState(path, None)
    if section.name == "notfile":
        raise ProbeError(f"section 'notfile' ({path}): exists on the host but is not a file")
    if section.name == "file-error":
        raise ProbeError(f"section 'file' ({path}): the host could not read it")
    text = "".join(line.strip() for line in section.lines)
    try:
        content = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as e:
        raise ProbeError(f"section 'file' ({path}): content is not base64 ({e})") from e
    return FileState(path, content)


def _cgroup(fs_type: str | None, unified: str | None) -> str | None:
    if not fs_type:
        return None
    if fs_type == "cgroup2fs":
        return "v2"
    if fs_type == "tmpfs" and unified == "1":
        return "hybrid"
    return "v1"


def _dry_run(text: str | None) -> tuple[int, str] | None:
    status, _, said = (text or "").partition(" ")
    return (int(status), said.strip()) if status.isdigit() else None


def _kernel(host: dict[str, str]) -> Kernel:
    counts = {}
    for controller in ("net_cls", "net_prio"):
        # hierarchy id, number of cgroups, enabled (the columns of /proc/cgroups)
        columns = host.get(f"cgroups_{controller}", "").split()
        if len(columns) == 3 and columns[1].isdigit():
            counts[controller] = int(columns[1])
    loaded, off = host.get("vrf_module"), host.get("socket_matching_off")
    return Kernel(
        vrf_module=None if loaded not in ("0", "1") else loaded == "1",
        modules_disabled=host.get("modules_disabled") == "1",
        modprobe_alias=_dry_run(host.get("modprobe_alias")),
        modprobe_name=_dry_run(host.get("modprobe_name")),
        # dmesg's "[  334.956769] " stamp says nothing the message needs.
        socket_matching_off=re.sub(r"^\[[\s\d.]*\]\s*", "", off) if off else None,
        net_cgroups=counts,
    )


def _parse_units(
    parser: _Parser, section: _Section | None, unit_files: dict[str, str]
) -> dict[str, UnitState]:
    """`unit=NAME` lines (the order asked), then one `systemctl show` block per unit."""
    if section is None:
        return {}
    names: list[str] = []
    blocks: list[dict[str, str]] = []
    current: dict[str, str] | None = None
    for line in section.lines:
        if line.startswith("unit=") and not blocks and current is None:
            names.append(line[len("unit=") :].strip())
            continue
        if not line.strip():
            current = None
            continue
        key, sep, value = line.partition("=")
        if not sep:
            continue
        if current is None:
            current = {}
            blocks.append(current)
        current[key] = value
    if len(blocks) != len(names):
        parser.warn(
            f"section 'units': {len(names)} units asked, {len(blocks)} described by systemctl"
        )
    cgroups: dict[int, str] = {}
    for path, text in unit_files.items():
        match = re.fullmatch(r"/proc/(\d+)/cgroup", path)
        if match:
            for line in text.splitlines():
                if line.startswith("0::"):
                    cgroups[int(match.group(1))] = line[3:].strip()
    units: dict[str, UnitState] = {}
    for name, props in zip(names, blocks, strict=False):
        pid = _to_int(props.get("MainPID")) or 0
        units[name] = UnitState(
            name=name,
            id=props.get("Id", ""),
            load_state=props.get("LoadState", ""),
            active_state=props.get("ActiveState", ""),
            main_pid=pid,
            cgroup=cgroups.get(pid) if pid else None,
            fragment_path=props.get("FragmentPath", ""),
            dropin_paths=tuple(props.get("DropInPaths", "").split()),
            properties={k: v for k, v in props.items() if k in UNIT_PROPERTIES},
        )
    return units


def _plugins(text: str | None) -> tuple[str, ...] | None:
    """`ifcfg-rh,keyfile` -> ("ifcfg-rh", "keyfile"); None when the probe did not say."""
    if text is None:
        return None
    return tuple(name.strip() for name in text.replace(";", ",").split(",") if name.strip())


def _iproute2_version(text: str | None) -> str | None:
    if not text:
        return None
    match = re.search(r"iproute2-(?:ss)?([0-9][\w.]*)", text)
    return match.group(1) if match else text


def _first(by_name: dict[str, list[_Section]], name: str) -> _Section | None:
    found = by_name.get(name)
    return found[0] if found else None


def parse_probe_output(lines: Iterable[str]) -> HostState:
    """Build a HostState from the output of probe_command (or any subset of its sections).

    Tolerates missing sections, iproute2's empty-table ``[`` and ``[{}]`` outputs; raises
    ProbeError when the output is cut short or a section cannot be read at all.
    """
    sections, ended = _split_sections(lines)
    if not sections and not ended:
        raise ProbeError(f"no {MARKER} marker lines: this is not output of the probe command")
    if not ended:
        last = sections[-1].name if sections else "?"
        raise ProbeError(f"output ends inside section {last!r} without the end marker (cut short)")

    parser = _Parser()
    by_name: dict[str, list[_Section]] = {}
    for section in sections:
        by_name.setdefault(section.name, []).append(section)

    begin = by_name.get("begin")
    full_probe = bool(begin) and "host" in by_name
    if full_probe:
        for name in CORE_SECTIONS:
            if name not in by_name:
                parser.warn(f"section {name!r} missing")

    links = _parse_links(parser, _first(by_name, "link"), _first(by_name, "addr"))

    routes: list[RouteEntry] = []
    for name in ("route4", "route6"):
        for section in by_name.get(name, ()):
            routes += _parse_routes(parser, section)

    rules: list[RuleEntry] = []
    for name in ("rule4", "rule6"):
        for section in by_name.get(name, ()):
            rules += _parse_rules(parser, section)

    sysctls: dict[str, str] = {}
    for section in by_name.get("sysctl", ()):
        for line in section.lines:
            pair = _sysctl_line(line)
            if pair is not None:
                sysctls[pair[0]] = pair[1]

    files: dict[str, FileState] = {}
    for section in sections:
        if section.name in ("file", "nofile", "notfile", "file-error"):
            state = _parse_file(section)
            files[state.path] = state

    summaries = {s.argument: s for s in by_name.get("profile", ())}
    # Older probes printed an ifcfg summary beside the whole file; now the file alone.
    for path in sorted(files):
        if _is_ifcfg(path) and path not in summaries and files[path].content is not None:
            summaries[path] = _ifcfg_summary(path, files[path].content or b"")
    profiles = tuple(_parse_profile(s) for s in summaries.values())

    unit_files = {
        s.argument: "".join(line + "\n" for line in s.lines)
        for s in by_name.get("unitfile", ())
        if s.argument
    }
    # Each marker line follows an empty line of its own; the file's text ends before it.
    unit_files = {
        path: text[:-1] if text.endswith("\n\n") else text for path, text in unit_files.items()
    }
    units = _parse_units(parser, _first(by_name, "units"), unit_files)

    nm_active: dict[str, str] = {}
    for section in by_name.get("nm-active", ()):
        for line in section.lines:
            port, _, uuid = line.strip().partition(" ")
            if port and uuid:
                nm_active.setdefault(port, uuid)

    host: dict[str, str] = {}
    for section in by_name.get("host", ()):
        for line in section.lines:
            key, sep, value = line.partition("=")
            if sep:
                host.setdefault(key.strip(), value.strip())

    nm_version = host.get("nm_version") or None
    return HostState(
        links=links,
        routes=tuple(routes),
        rules=tuple(rules),
        sysctls=sysctls,
        files=files,
        profiles=profiles,
        network_manager=NetworkManager(
            installed=host.get("nm_installed") == "1",
            version=nm_version,
            plugins=_plugins(host.get("nm_plugins")),
            running=host.get("nm_running") == "1",
            active=nm_active,
        ),
        systemd_running=host.get("systemd") == "1",
        unit_enabled=host.get("unit_enabled") == "1",
        unit_busy=host.get("unit_state") == "activating",
        network_scripts_installed=host.get("network_scripts") == "1",
        cgroup=_cgroup(host.get("cgroup_fs"), host.get("cgroup_unified")),
        kernel=_kernel(host),
        units=units,
        unit_files={p: t for p, t in unit_files.items() if not p.startswith("/proc/")},
        os_id=_unquote(host["ID"]) or None if "ID" in host else None,
        os_version=_unquote(host["VERSION_ID"]) or None if "VERSION_ID" in host else None,
        iproute2_version=_iproute2_version(host.get("iproute2")),
        probe_warnings=tuple(parser.warnings),
    )
