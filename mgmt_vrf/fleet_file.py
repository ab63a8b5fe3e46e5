"""Read the fleet file (TOML) into validated HostSpecs.

Every problem in the file is collected in one pass and raised together as a FleetError,
each message naming the file, the host (or group, or [defaults]) and the key path, so a
user fixes the whole file at once instead of one error per run. Nothing here imports
pyinfra: inventory.py only wires the result into pyinfra groups.

Layout of the file (see fleet.example.toml):

    [defaults]                       any host key, merged under every host
    [groups.NAME]                    any host key, merged over defaults for member hosts
    [hosts.NAME]                     host keys, plus groups = ["NAME", ...]
    [hosts.NAME.interfaces.DEV]      ipv4, ipv6, gateway4, gateway6, main_default
    [hosts.NAME.vrfs.VRF]            table, ports, gateway4, gateway6, routes, state

Merge order: defaults < groups (in the order the host lists them) < host. The interfaces
and vrfs tables merge key by key, so a group can define a VRF and a host change only its
table; lists (ports, routes, groups) are replaced, never appended.
"""

from __future__ import annotations

import difflib
import gc
import json
import os
import re
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
    ip_address,
    ip_network,
)
from pathlib import Path
from typing import Any, cast

# tomli, not the standard library's tomllib (the same parser): its wheels are compiled, and
# read a 10,000-host fleet file in half the time.
import tomli

from .model import (
    DEFAULT_APPLY_TIMEOUT,
    DEFAULT_CHANGES_AT_ONCE,
    DEFAULT_ROLLBACK_TIMEOUT,
    MAX_APPLY_TIMEOUT,
    MAX_CHANGES_AT_ONCE,
    MAX_ROLLBACK_TIMEOUT,
    MIN_APPLY_TIMEOUT,
    MIN_ROLLBACK_TIMEOUT,
    Backend,
    HostSpec,
    Interface,
    Route,
    Ssh,
    State,
    Vrf,
    needs_dev,
    nexthop_port,
)
from .rollout import ALL_AT_ONCE, Rollout, WaveSize, percent

__all__ = [
    "Fleet",
    "FleetError",
    "load_fleet",
    "parse_fleet",
    "rollout_from_data",
    "spec_from_data",
    "spec_to_data",
]

IFNAMSIZ = 16  # the kernel's buffer, NUL included: 15 usable bytes
IFNAME_MAX = IFNAMSIZ - 1
# What real interface names use. Linux accepts far more ($, `, ;, quotes...), but these names
# land in root shell code (our scripts, ifcfg files that network-scripts source), in sysctl
# keys and in `ip` arguments: refused here, and quoted there all the same.
IFNAME_CHARS = "letters, digits, '_', '.' and '-'"
_IFNAME_RE = re.compile(r"[A-Za-z0-9_.-]+")
# Words that mean something else where our device names go: `ip vrf exec default` and
# `mgmt-vrf-exec default` run outside every VRF, and net.ipv4/ipv6.conf.{all,default} are
# the sysctls of every interface, not of a device with that name.
RESERVED_DEVICE_NAMES = {
    "default": "means 'outside every VRF' to ip vrf exec and mgmt-vrf-exec, and "
    "net.ipv6.conf.default is the sysctl template of new interfaces",
    "all": "net.ipv4.conf.all and net.ipv6.conf.all are the sysctls of every interface",
}
TABLE_MAX = 2**32 - 1
RESERVED_TABLES = {253: "default", 254: "main", 255: "local"}
TABLE_HINT = f"use 1-252 or 256-{TABLE_MAX}"
# Fleet groups become inventory groups. pyinfra builds "all" and "inventory" itself, and
# the inventory's group of every host of the fleet is ALL_HOSTS_GROUP: a fleet group of one
# of these names would silently merge with them.
ALL_HOSTS_GROUP = "mgmt_vrf_hosts"
RESERVED_GROUPS = ("all", "inventory", ALL_HOSTS_GROUP)
STRICT_CHOICES = ("yes", "accept-new", "no")
BACKEND_CHOICES = ("auto", "networkmanager", "network-scripts")
STATE_CHOICES = ("present", "absent")

MAX_CONNECT_TIMEOUT = 600
# The Ssh fields the fleet file spells ssh_NAME, as pyinfra's ssh connector does its data.
SSH_CONNECTOR_KEYS = ("user", "port", "key", "known_hosts_file", "strict_host_key_checking")
_HOST_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_GROUP_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
_BARE_KEY_RE = re.compile(r"^[A-Za-z0-9_-]+$")
_AT_END = " (at end of document)"
_TOML_POS_RE = re.compile(r"^(?P<msg>.*?)\s*\(at line (?P<line>\d+), column (?P<col>\d+)\)$")


class FleetError(Exception):
    """The fleet file cannot be used; `messages` lists every problem found, one per entry."""

    def __init__(self, messages: Sequence[str]) -> None:
        self.messages: tuple[str, ...] = tuple(messages)
        super().__init__("\n".join(self.messages))

    def __str__(self) -> str:
        return "\n".join(self.messages)


@dataclass(frozen=True)
class Fleet:
    """Every host of a fleet file, plus its groups (name -> host names, in file order)."""

    hosts: tuple[HostSpec, ...]
    groups: Mapping[str, tuple[str, ...]] = field(default_factory=dict, hash=False)
    source: Path = Path("fleet.toml")
    rollout: Rollout = ALL_AT_ONCE

    def host(self, name: str) -> HostSpec | None:
        for spec in self.hosts:
            if spec.name == name:
                return spec
        return None

    def group(self, name: str) -> tuple[HostSpec, ...]:
        names = self.groups.get(name, ())
        return tuple(spec for spec in self.hosts if spec.name in names)


# ---------------------------------------------------------------------------------------
# Loading


def load_fleet(path: str | Path) -> Fleet:
    """Read and validate a fleet file. Raises FleetError listing every problem found."""
    path = Path(path)
    label = str(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise FleetError(
            [f"{label}: no such file; write a fleet file there (see fleet.example.toml)"]
        ) from None
    except IsADirectoryError:
        raise FleetError([f"{label}: is a directory, not a fleet file"]) from None
    except OSError as exc:
        raise FleetError([f"{label}: cannot read the fleet file: {exc.strerror or exc}"]) from None
    try:
        # utf-8-sig: a BOM (some Windows editors write one) is dropped, as TOML tools do.
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise FleetError([_not_utf8(label, raw, exc.start)]) from None
    return parse_fleet(text, source=path)


def _not_utf8(label: str, raw: bytes, start: int) -> str:
    line_start = raw.rfind(b"\n", 0, start) + 1
    line = raw.count(b"\n", 0, start) + 1
    # Columns count characters, as editors and TOML errors do; the bad byte is not one.
    column = len(raw[line_start:start].decode("utf-8", errors="replace")) + 1
    return (
        f"{label}:{line}:{column}: byte 0x{raw[start]:02x} at line {line}, column {column} "
        "is not UTF-8; TOML files must be UTF-8 text (save the file as UTF-8)"
    )


def parse_fleet(text: str, source: str | Path = "fleet.toml") -> Fleet:
    """Validate fleet-file text; `source` only names the file in messages and the result."""
    # A big fleet allocates millions of small objects and no reference cycles: the cyclic
    # collector would only walk them again and again (a quarter of a 10,000-host load).
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _parse_fleet(text, source)
    finally:
        if enabled:
            gc.enable()


def _parse_fleet(text: str, source: str | Path) -> Fleet:
    source = Path(source)
    label = str(source)
    try:
        document = tomli.loads(text)
    except tomli.TOMLDecodeError as exc:
        raise FleetError([_toml_error(label, exc, text)]) from None
    errors = _Errors(label)
    fleet = _parse_document(document, source, errors)
    if errors.messages or fleet is None:
        raise FleetError(errors.messages)
    return fleet


def _toml_error(label: str, exc: Exception, document: str) -> str:
    text = str(exc)
    match = _TOML_POS_RE.match(text)
    if match:
        line, col, msg = match["line"], match["col"], match["msg"]
    elif text.endswith(_AT_END):
        # The file stops inside a statement (cut short, an unclosed [table]): point there.
        line = str(document.count("\n") + 1)
        col = str(len(document.rpartition("\n")[2]) + 1)
        msg = text.removesuffix(_AT_END) + "; the file ends here"
    else:
        return f"{label}: TOML syntax error: {text}"
    return f"{label}:{line}:{col}: TOML syntax error at line {line}, column {col}: {msg}"


class _Errors:
    def __init__(self, label: str) -> None:
        self.label = label
        self.messages: list[str] = []

    def add(self, where: str, path: str, problem: str) -> None:
        parts = [self.label, where] + ([path] if path else [])
        self.messages.append(": ".join(parts) + ": " + problem)


class _Invalid:
    """Stands in for a value already reported as wrong, so later checks skip it quietly."""

    def __repr__(self) -> str:
        return "<invalid>"


INVALID: Any = _Invalid()


class _Bad(Exception):
    """A checker's verdict on one value; the message is the `problem` part."""


def _show(value: object) -> str:
    """A value quoted as TOML would write it, readable: é stays é, a newline shows as \\n."""
    return json.dumps(value, ensure_ascii=False)


def _key(name: str) -> str:
    # Quote names the way TOML would, so a path with a dotted device name stays readable.
    return name if _BARE_KEY_RE.match(name) else _show(name)


def _join(*parts: str) -> str:
    return ".".join(p for p in parts if p)


# ---------------------------------------------------------------------------------------
# Value checkers: each returns the typed value or raises _Bad with the problem.


def _describe(value: object) -> str:
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int):
        return f"the integer {value}"
    if isinstance(value, float):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the string {_show(value)}"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return f"a TOML {type(value).__name__}"


def _string(value: object) -> str:
    if not isinstance(value, str):
        raise _Bad(f"expected a string, got {_describe(value)}; put it in double quotes")
    if not value.strip():
        raise _Bad("is empty")
    return value


def _integer(value: object, what: str = "an integer") -> int:
    if isinstance(value, bool):
        raise _Bad(f"expected {what}, got {_describe(value)} (TOML true/false is not a number)")
    if isinstance(value, str) and value.strip().isdigit():
        raise _Bad(f"expected {what}, got {_describe(value)}; write {value.strip()} without quotes")
    if not isinstance(value, int):
        raise _Bad(f"expected {what}, got {_describe(value)}")
    return value


def _seconds(low: int, high: int, why: str) -> Checker:
    def check(value: object) -> int:
        seconds = _integer(value, "a number of seconds")
        if not low <= seconds <= high:
            raise _Bad(f"{seconds} is outside {low}..{high} seconds; {why}")
        return seconds

    return check


_rollback_timeout = _seconds(
    MIN_ROLLBACK_TIMEOUT,
    MAX_ROLLBACK_TIMEOUT,
    "the host must have time to be reached again before it rolls back by itself",
)
_apply_timeout = _seconds(
    MIN_APPLY_TIMEOUT,
    MAX_APPLY_TIMEOUT,
    "the host must have time to apply the change before it rolls back by itself",
)


def _host_count(low: int, why: str) -> Checker:
    def check(value: object) -> int:
        hosts = _integer(value, "a number of hosts")
        if not low <= hosts <= MAX_CHANGES_AT_ONCE:
            raise _Bad(f"{hosts} is outside {low}..{MAX_CHANGES_AT_ONCE} hosts; {why}")
        return hosts

    return check


_changes_at_once = _host_count(
    1, "it is how many hosts may be between the start of their change and its confirmation at once"
)


MAX_WAVES = 100


def _wave_size(value: object) -> WaveSize:
    if isinstance(value, str):
        share = percent(value.strip())
        if share is None or not 0 < share <= 100:
            raise _Bad(
                f"{_show(value)} is not a wave size; give a number of hosts (3) or a share of "
                'the run\'s hosts between 0 and 100 percent ("10%")'
            )
        return value.strip()
    hosts = _integer(value, 'a number of hosts or a share such as "10%"')
    if not 1 <= hosts <= MAX_CHANGES_AT_ONCE:
        raise _Bad(f"{hosts} is outside 1..{MAX_CHANGES_AT_ONCE} hosts")
    return hosts


def _wave_sizes(value: object) -> tuple[WaveSize, ...]:
    if not isinstance(value, list):
        raise _Bad(f"expected an array of wave sizes such as [1, 3, 6], got {_describe(value)}")
    if not value:
        raise _Bad("is empty; leave waves out to change every host at once, or give [1, 3, 6]")
    if len(value) > MAX_WAVES:
        raise _Bad(f"has {len(value)} entries, more than {MAX_WAVES}; the last size repeats")
    sizes = []
    for i, item in enumerate(value):
        try:
            sizes.append(_wave_size(item))
        except _Bad as bad:
            raise _Bad(f"entry {i + 1}: {bad}") from None
    return tuple(sizes)


_failures_allowed = _host_count(
    0,
    "it is how many hosts may fail before their change (and be left untouched) before the "
    "rollout stops",
)


_ROLLOUT_KEYS: dict[str, Checker] = {
    "waves": _wave_sizes,
    "failures_allowed": _failures_allowed,
}


def _check_rollout(raw: object, where: str, errors: _Errors) -> Rollout:
    if not isinstance(raw, dict):
        errors.add(where, "", f"expected a table [rollout], got {_describe(raw)}")
        return ALL_AT_ONCE
    keys: dict[str, Any] = {}
    for key, value in raw.items():
        if key in _ROLLOUT_KEYS:
            keys[key] = _checked(value, where, key, _ROLLOUT_KEYS[key], errors)
        else:
            errors.add(where, _key(key), _unknown_key(key, tuple(_ROLLOUT_KEYS), {}))
    if any(value is INVALID for value in keys.values()):
        return ALL_AT_ONCE
    return Rollout(waves=keys.get("waves", ()), failures_allowed=keys.get("failures_allowed", 0))


def rollout_from_data(data: Rollout | Mapping[str, Any], source: str = "host data") -> Rollout:
    """A Rollout from host data (the keys of a fleet file's [rollout] table), checked by the
    same rules; FleetError lists every problem."""
    if isinstance(data, Rollout):
        data = {"waves": list(data.waves), "failures_allowed": data.failures_allowed}
        if not data["waves"]:
            del data["waves"]
    errors = _Errors(source)
    rollout = _check_rollout(dict(data) if isinstance(data, Mapping) else data, "rollout", errors)
    if errors.messages:
        raise FleetError(errors.messages)
    return rollout


def _boolean(value: object) -> bool:
    if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no"):
        raise _Bad(
            f"expected true or false, got {_describe(value)}; "
            f"write {'true' if value.lower() in ('true', 'yes') else 'false'} without quotes"
        )
    if not isinstance(value, bool):
        raise _Bad(f"expected true or false, got {_describe(value)}")
    return value


def _choice(*choices: str) -> Callable[[object], str]:
    def check(value: object) -> str:
        if not isinstance(value, str) or value not in choices:
            wanted = ", ".join(_show(c) for c in choices)
            hint = _nearest(value, choices) if isinstance(value, str) else None
            extra = f"; did you mean {_show(hint)}?" if hint else ""
            raise _Bad(f"{_describe(value)} is not one of {wanted}{extra}")
        return value

    return check


def _ssh_address(value: object) -> str:
    text = _string(value)
    if any(c.isspace() for c in text):
        raise _Bad(f"{_show(text)} contains whitespace; give one host name or IP address")
    if "@" in text:
        raise _Bad(f"{_show(text)}: put the user in ssh_user, the address alone here")
    if text.count(":") == 1:
        raise _Bad(f"{_show(text)}: put the port in ssh_port, the address alone here")
    if text.startswith("["):
        raise _Bad(f"{_show(text)}: write an IPv6 address without brackets")
    return text


def _ssh_port(value: object) -> int:
    port = _integer(value, "a port number")
    if not 1 <= port <= 65535:
        raise _Bad(f"{port} is not a TCP port; use 1-65535")
    return port


def _table(value: object) -> int:
    table = _integer(value, "a routing table number")
    if table in RESERVED_TABLES:
        names = ", ".join(f"{n} {name}" for n, name in RESERVED_TABLES.items())
        raise _Bad(f"{table} is reserved ({names}); {TABLE_HINT}")
    if table == 0:
        raise _Bad(f"0 is not a usable table (the kernel reads 0 as 'unspecified'); {TABLE_HINT}")
    if not 1 <= table <= TABLE_MAX:
        raise _Bad(f"{table} is out of range; {TABLE_HINT}")
    return table


def _ifname_problem(name: str) -> str | None:
    """Why `name` cannot be a device name here, or None: the kernel's rules (dev_valid_name)
    narrowed to the characters real interface names use."""
    if not name:
        return "is empty"
    size = len(name.encode())
    if size > IFNAME_MAX:
        return (
            f"is {size} bytes long; Linux device names have at most {IFNAME_MAX} bytes "
            f"(use {IFNAME_CHARS})"
        )
    if name in (".", ".."):
        return f"{_show(name)} is not allowed as a device name"
    if not _IFNAME_RE.fullmatch(name):
        bad = sorted({c for c in name if not _IFNAME_RE.fullmatch(c)})
        shown = " ".join(repr(c) for c in bad)
        return (
            f"contains {shown}; a device name here uses only {IFNAME_CHARS}, "
            f"at most {IFNAME_MAX} bytes, as real interface names do"
        )
    if name.startswith("-"):
        return (
            "starts with '-', which ip and mgmt-vrf-exec would read as an option; "
            "start it with a letter or digit"
        )
    if name in RESERVED_DEVICE_NAMES:
        return f"is reserved: {_show(name)} {RESERVED_DEVICE_NAMES[name]}; pick another name"
    return None


def _prefix_of(text: str, version: int) -> int:
    example = "24" if version == 4 else "64"
    if "/" not in text:
        raise _Bad(
            f"{_show(text)} has no prefix length; write it as {text}/{example} "
            "(or whatever the segment's prefix is)"
        )
    prefix = text.partition("/")[2]
    limit = 32 if version == 4 else 128
    if not prefix.isdigit():
        raise _Bad(
            f"{_show(text)}: the prefix must be a length such as /{example}, not a netmask or text"
        )
    if int(prefix) > limit:
        raise _Bad(f"{_show(text)}: prefix /{prefix} is too long for IPv{version} (0-{limit})")
    return int(prefix)


def _no_zone(text: str) -> None:
    # Python parses "fe80::1%eth2", the kernel's tools do not all; and the fleet file already
    # says which device an address belongs to.
    if "%" in text:
        zone = text.partition("%")[2].partition("/")[0]
        raise _Bad(
            f"{_show(text)} has an IPv6 zone id (%{zone}); write the address without it: "
            "the device is the interface it is written under, or the VRF's port"
        )


def _address_of(text: str, version: int, other_key: str) -> IPv4Address | IPv6Address:
    _no_zone(text)
    try:
        addr = ip_address(text)
    except ValueError:
        raise _Bad(f"{_show(text)} is not a valid IPv{version} address") from None
    if addr.version != version:
        raise _Bad(f"{_show(text)} is an IPv{addr.version} address; put it under {other_key}")
    return addr


def _interface_address(version: int) -> Callable[[object], IPv4Interface | IPv6Interface]:
    other = "ipv6" if version == 4 else "ipv4"

    def check(value: object) -> IPv4Interface | IPv6Interface:
        text = _string(value).strip()
        _no_zone(text)
        # The address first: an IPv6 address under ipv4 is a misplaced line, not a bad prefix.
        addr = _address_of(text.partition("/")[0], version, other)
        prefix = _prefix_of(text, version)
        iface = IPv4Interface((addr, prefix)) if version == 4 else IPv6Interface((addr, prefix))
        if version == 4 and prefix <= 30:
            if iface.ip == iface.network.network_address:
                raise _Bad(
                    f"{text}: {iface.ip} is the network address of {iface.network}, "
                    "not a host address"
                )
            if iface.ip == iface.network.broadcast_address:
                raise _Bad(
                    f"{text}: {iface.ip} is the broadcast address of {iface.network}, "
                    "not a host address"
                )
        return iface

    return check


def _gateway(version: int) -> Callable[[object], IPv4Address | IPv6Address]:
    other = "gateway6" if version == 4 else "gateway4"

    def check(value: object) -> IPv4Address | IPv6Address:
        text = _string(value).strip()
        if "/" in text:
            raise _Bad(f"{_show(text)}: a gateway is one address, write it without /prefix")
        return _address_of(text, version, other)

    return check


def _names(
    value: object,
    key: str,
    what: str,
    in_quotes: str,
    problem_of: Callable[[str], str | None],
    normal: Callable[[str], str] = str,
) -> tuple[str, ...]:
    """An array of names, each checked, none twice (after `normal`)."""
    if isinstance(value, str):
        raise _Bad(f"expected an array of {what}, write {key} = [{_show(value)}]")
    if not isinstance(value, list):
        raise _Bad(f"expected an array of {what}, got {_describe(value)}")
    names: list[str] = []
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise _Bad(f"item {i} is {_describe(item)}; {in_quotes}")
        problem = problem_of(item)
        if problem:
            raise _Bad(f"{_show(item)} {problem}")
        name = normal(item)
        if name in names:
            raise _Bad(f"{name} is listed twice")
        names.append(name)
    return tuple(names)


def _ports(value: object) -> tuple[str, ...]:
    return _names(
        value, "ports", "device names", "ports are device names in quotes", _ifname_problem
    )


# systemd's unit-name alphabet (unit_name_is_valid); the rest would need escaping.
_UNIT_NAME = re.compile(r"[A-Za-z0-9:_.\\@-]+")
_UNIT_SUFFIX = ".service"


# Units that build the network (the VRF included) or that everything else needs: inside a
# VRF they would lose the host, and ours would be ordered after itself.
_HOST_UNITS = frozenset(
    {
        "mgmt-vrf",
        "mgmt-vrf-rollback",
        "mgmt-vrf-rollback-window",
        "NetworkManager",
        "NetworkManager-wait-online",
        "network",
        "systemd-networkd",
        "systemd-resolved",
        "systemd-journald",
        "systemd-logind",
        "systemd-udevd",
        "dbus",
        "dbus-broker",
    }
)


def _unit_problem(name: str) -> str | None:
    base = name.removesuffix(_UNIT_SUFFIX)
    if base in _HOST_UNITS:
        return (
            "runs the host itself (its network, the VRF, or what every service needs); "
            "it stays outside every VRF"
        )
    kind = name.rpartition(".")[2] if "." in name else ""
    if kind == "socket":
        return (
            "is a socket unit: systemd opens its sockets itself, so they stay outside the VRF; "
            "set BindToDevice= in that socket unit and list nothing here"
        )
    if kind in ("timer", "target", "mount", "path", "slice", "scope", "device", "swap"):
        return f"is a .{kind} unit; list the .service it starts instead"
    if not base or not _UNIT_NAME.fullmatch(base) or len(name) > 250:
        return (
            "is not a systemd service name (letters, digits and ':_.\\@-' only), "
            'e.g. "sshd" or "chronyd.service"'
        )
    if base.endswith("@"):
        return f"is a template; name an instance, e.g. {base}NAME"
    return None


def _services(value: object) -> tuple[str, ...]:
    return _names(
        value,
        "services",
        "service names",
        "service names go in quotes",
        _unit_problem,
        lambda item: item if item.endswith(_UNIT_SUFFIX) else item + _UNIT_SUFFIX,
    )


def _group_list(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        raise _Bad(f"expected an array of group names, write groups = [{_show(value)}]")
    if not isinstance(value, list):
        raise _Bad(f"expected an array of group names, got {_describe(value)}")
    names: list[str] = []
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise _Bad(f"item {i} is {_describe(item)}; group names go in quotes")
        if item not in names:
            names.append(item)
    return tuple(names)


# What each file is for, said when it is missing: without the known-hosts file pyinfra's
# default (accept-new) would trust whatever key answers first, silently.
_SSH_FILES = {
    "ssh_key": "the private key pyinfra logs in with",
    "ssh_known_hosts_file": (
        "the host keys this host is checked against; without it ssh would trust any key "
        "on first use"
    ),
}


def _ssh_file(key: str, base: Path) -> Checker:
    """A path to an existing file, `~` expanded and relative paths taken from `base` (the
    fleet file's directory), returned absolute so pyinfra finds it from any directory."""

    def check(value: object) -> str:
        text = _string(value)
        path = Path(text).expanduser()
        if not path.is_absolute():
            path = base / path
        path = Path(os.path.normpath(path))
        if not path.exists():
            relative = "" if Path(text).expanduser().is_absolute() else f", read from {base}"
            raise _Bad(
                f"{_show(text)} does not exist ({path}{relative}); it is {_SSH_FILES[key]}. "
                "Fix the path (relative paths are read from the fleet file's directory)"
            )
        if path.is_dir():
            raise _Bad(f"{_show(text)} is a directory ({path}); give the file")
        return str(path)

    return check


def _nearest(word: str, known: Sequence[str]) -> str | None:
    found = difflib.get_close_matches(word, list(known), n=1, cutoff=0.6)
    return found[0] if found else None


# ---------------------------------------------------------------------------------------
# Schemas

Checker = Callable[[object], Any]

_HOST_SCALARS: dict[str, Checker] = {
    "ssh_address": _ssh_address,
    "ssh_user": _string,
    "ssh_port": _ssh_port,
    "ssh_key": _string,  # checked by _ssh_file, which needs the fleet file's directory
    "ssh_known_hosts_file": _string,
    "ssh_strict_host_key_checking": _choice(*STRICT_CHOICES),
    "ssh_connect_timeout": _seconds(
        1, MAX_CONNECT_TIMEOUT, "it is how long to wait for a host's ssh handshake"
    ),
    "backend": _choice(*BACKEND_CHOICES),
    "l3mdev_accept": _boolean,
    "rollback_timeout": _rollback_timeout,
    "apply_timeout": _apply_timeout,
    "changes_at_once": _changes_at_once,
}
_HOST_KEYS = (*_HOST_SCALARS, "interfaces", "vrfs", "groups")

_IFACE_KEYS: dict[str, Checker] = {
    "ipv4": _interface_address(4),
    "ipv6": _interface_address(6),
    "gateway4": _gateway(4),
    "gateway6": _gateway(6),
    "main_default": _boolean,
}

_VRF_KEYS: dict[str, Checker] = {
    "table": _table,
    "ports": _ports,
    "gateway4": _gateway(4),
    "gateway6": _gateway(6),
    "state": _choice(*STATE_CHOICES),
    "services": _services,
}
_VRF_ALL_KEYS = (*_VRF_KEYS, "routes")
_ROUTE_KEYS = ("to", "via")

# Words people type from ifcfg files or other tools, mapped to what this file calls them.
_HOST_HINTS = {
    "address": "ssh_address",
    "host": "ssh_address",
    "hostname": "ssh_address",
    "ssh_hostname": "ssh_address",
    "user": "ssh_user",
    "port": "ssh_port",
    "key": "ssh_key",
    "group": "groups",
    "interface": "interfaces",
    "vrf": "vrfs",
}
_IFACE_HINTS = {
    "address": "ipv4 or ipv6",
    "ipaddr": "ipv4",
    "ipv6addr": "ipv6",
    "gateway": "gateway4 or gateway6",
    "ipv6_defaultgw": "gateway6",
    "defroute": "main_default",
    "default": "main_default",
    "vrf": "the VRF's ports list, [hosts.NAME.vrfs.VRF] ports = [...]",
    "master": "the VRF's ports list, [hosts.NAME.vrfs.VRF] ports = [...]",
}
_VRF_HINTS = {
    "gateway": "gateway4 or gateway6",
    "port": "ports",
    "interfaces": "ports",
    "route": "routes",
    "table_id": "table",
    "service": "services",
    "units": "services",
    "route_table": "table",
}
_ROUTE_HINTS = {
    "dst": "to",
    "destination": "to",
    "network": "to",
    "prefix": "to",
    "gw": "via",
    "gateway": "via",
    "nexthop": "via",
}


def _unknown_key(key: str, known: Sequence[str], hints: Mapping[str, str]) -> str:
    hint = hints.get(key.lower()) or _nearest(key, known)
    if hint:
        return f"unknown key; did you mean {hint}?"
    return "unknown key; known keys here: " + ", ".join(known)


# ---------------------------------------------------------------------------------------
# Layer checks: types and single values, once per place they are written.


def _check_layer(
    raw: Mapping[str, Any], where: str, errors: _Errors, *, is_host: bool, base: Path
) -> dict[str, Any]:
    """Check one [defaults], [groups.X] or [hosts.X] table; bad values become INVALID.
    `base` is the directory relative ssh file paths are read from."""
    layer: dict[str, Any] = {}
    for key, value in raw.items():
        if key in _SSH_FILES:
            layer[key] = _checked(value, where, key, _ssh_file(key, base), errors)
        elif key in _HOST_SCALARS:
            layer[key] = _checked(value, where, key, _HOST_SCALARS[key], errors)
        elif key == "interfaces":
            layer[key] = _check_named_tables(value, where, key, errors, _check_interface)
        elif key == "vrfs":
            layer[key] = _check_named_tables(value, where, key, errors, _check_vrf)
        elif key == "groups":
            if is_host:
                layer[key] = _checked(value, where, key, _group_list, errors)
            else:
                errors.add(
                    where,
                    key,
                    "groups can only be listed in a [hosts.NAME] table; "
                    "add groups = [...] to each host instead",
                )
        else:
            errors.add(where, _key(key), _unknown_key(key, _HOST_KEYS, _HOST_HINTS))
    return layer


def _checked(value: object, where: str, path: str, check: Checker, errors: _Errors) -> Any:
    try:
        return check(value)
    except _Bad as bad:
        errors.add(where, path, str(bad))
        return INVALID


def _check_named_tables(
    value: object,
    where: str,
    key: str,
    errors: _Errors,
    check_entry: Callable[[Mapping[str, Any], str, str, _Errors], dict[str, Any]],
) -> Any:
    if not isinstance(value, dict):
        example = (
            "[hosts.NAME.interfaces.eth0]" if key == "interfaces" else "[hosts.NAME.vrfs.mgmt0]"
        )
        errors.add(where, key, f"expected tables such as {example}, got {_describe(value)}")
        return INVALID
    entries: dict[str, Any] = {}
    for name, entry in value.items():
        path = _join(key, _key(name))
        problem = _ifname_problem(name)
        if problem:
            kind = "VRF name" if key == "vrfs" else "device name"
            errors.add(where, path, f"{kind} {_show(name)} {problem}")
        if not isinstance(entry, dict):
            errors.add(where, path, f"expected a table [{path}], got {_describe(entry)}")
            entries[name] = INVALID
            continue
        entries[name] = check_entry(entry, where, path, errors)
    return entries


def _check_interface(
    raw: Mapping[str, Any], where: str, path: str, errors: _Errors
) -> dict[str, Any]:
    entry: dict[str, Any] = {}
    for key, value in raw.items():
        if key in _IFACE_KEYS:
            entry[key] = _checked(value, where, _join(path, key), _IFACE_KEYS[key], errors)
        else:
            errors.add(
                where, _join(path, _key(key)), _unknown_key(key, [*_IFACE_KEYS], _IFACE_HINTS)
            )
    return entry


def _check_vrf(raw: Mapping[str, Any], where: str, path: str, errors: _Errors) -> dict[str, Any]:
    entry: dict[str, Any] = {}
    for key, value in raw.items():
        if key in _VRF_KEYS:
            entry[key] = _checked(value, where, _join(path, key), _VRF_KEYS[key], errors)
        elif key == "routes":
            entry[key] = _check_routes(value, where, _join(path, key), errors)
        else:
            errors.add(where, _join(path, _key(key)), _unknown_key(key, _VRF_ALL_KEYS, _VRF_HINTS))
    return entry


def _check_routes(value: object, where: str, path: str, errors: _Errors) -> Any:
    if not isinstance(value, list):
        errors.add(
            where,
            path,
            f'expected an array of {{ to = "...", via = "..." }} tables, got {_describe(value)}',
        )
        return INVALID
    routes: list[Any] = []
    for i, item in enumerate(value):
        item_path = f"{path}[{i}]"
        if not isinstance(item, dict):
            errors.add(
                where,
                item_path,
                f'expected a table {{ to = "...", via = "..." }}, got {_describe(item)}',
            )
            routes.append(INVALID)
            continue
        routes.append(_check_route(item, where, item_path, errors))
    return routes


def _check_route(raw: Mapping[str, Any], where: str, path: str, errors: _Errors) -> Any:
    ok = True
    for key in raw:
        if key not in _ROUTE_KEYS:
            errors.add(where, _join(path, _key(key)), _unknown_key(key, _ROUTE_KEYS, _ROUTE_HINTS))
            ok = False
    for key in _ROUTE_KEYS:
        if key not in raw:
            example = '"10.0.0.0/8"' if key == "to" else '"192.0.2.254"'
            errors.add(where, _join(path, key), f"missing; every route needs {key} = {example}")
            ok = False
    if not ok:
        return INVALID
    to = _checked(raw["to"], where, _join(path, "to"), _route_destination, errors)
    via = _checked(raw["via"], where, _join(path, "via"), _route_via, errors)
    if to is INVALID or via is INVALID:
        return INVALID
    if to.version != via.version:
        errors.add(
            where,
            _join(path, "via"),
            f"{via} is IPv{via.version} but the destination {to} is IPv{to.version}; "
            "a route's to and via must be the same family",
        )
        return INVALID
    return Route(to=to, via=via)


def _route_destination(value: object) -> IPv4Network | IPv6Network:
    text = _string(value).strip()
    _no_zone(text)
    if text == "default":
        raise _Bad("use the VRF's gateway4/gateway6 for its default route, not a route entry")
    try:
        network = ip_network(text, strict=False)
    except ValueError:
        raise _Bad(f"{_show(text)} is not a network such as 10.0.0.0/8") from None
    if _has_host_bits(text):
        raise _Bad(f"{text} has host bits set; the network is {network}")
    if network.prefixlen == 0:
        other = "gateway4" if network.version == 4 else "gateway6"
        raise _Bad(f"{text} is the default route; set the VRF's {other} instead")
    return network


def _has_host_bits(text: str) -> bool:
    # Only called once a non-strict parse worked, so a strict failure means host bits.
    try:
        ip_network(text, strict=True)
    except ValueError:
        return True
    return False


def _route_via(value: object) -> IPv4Address | IPv6Address:
    text = _string(value).strip()
    if "/" in text:
        raise _Bad(f"{_show(text)}: via is one next-hop address, write it without /prefix")
    _no_zone(text)
    try:
        return ip_address(text)
    except ValueError:
        raise _Bad(f"{_show(text)} is not a valid IP address") from None


# ---------------------------------------------------------------------------------------
# The document: defaults, groups, hosts.


_TOP_TABLES = ("defaults", "groups", "hosts", "rollout")


def _parse_document(document: Mapping[str, Any], source: Path, errors: _Errors) -> Fleet | None:
    for key in document:
        if key not in _TOP_TABLES:
            hint = _nearest(key, _TOP_TABLES)
            suggestion = (
                f"did you mean [{hint}]?"
                if hint
                else "use [defaults], [groups.NAME], [hosts.NAME] or [rollout]"
            )
            errors.add("top level", _key(key), f"unknown table; {suggestion}")
    rollout = ALL_AT_ONCE
    if "rollout" in document:
        rollout = _check_rollout(document["rollout"], "rollout", errors)

    base = source.resolve().parent
    defaults: dict[str, Any] = {}
    raw_defaults = document.get("defaults", {})
    if isinstance(raw_defaults, dict):
        defaults = _check_layer(raw_defaults, "defaults", errors, is_host=False, base=base)
    else:
        errors.add(
            "top level", "defaults", f"expected a table [defaults], got {_describe(raw_defaults)}"
        )

    groups: dict[str, dict[str, Any]] = {}
    raw_groups = document.get("groups", {})
    if isinstance(raw_groups, dict):
        for name, raw in raw_groups.items():
            where = f"group {name}"
            if name in RESERVED_GROUPS or name.startswith("_"):
                errors.add(
                    where,
                    "",
                    f"the group name {_show(name)} is used by pyinfra or this deploy; "
                    "pick another name",
                )
            elif not _GROUP_NAME_RE.match(name):
                errors.add(
                    where,
                    "",
                    f"{_show(name)} is not a usable group name; "
                    "use letters, digits, '_' and '-', starting with a letter",
                )
            if not isinstance(raw, dict):
                errors.add(
                    where, "", f"expected a table [groups.{_key(name)}], got {_describe(raw)}"
                )
                groups[name] = {}
                continue
            groups[name] = _check_layer(raw, where, errors, is_host=False, base=base)
    else:
        errors.add(
            "top level", "groups", f"expected tables [groups.NAME], got {_describe(raw_groups)}"
        )

    raw_hosts = document.get("hosts")
    if raw_hosts is None or raw_hosts == {}:
        errors.add("top level", "hosts", "no hosts defined; add a [hosts.NAME] table per host")
        return None
    if not isinstance(raw_hosts, dict):
        errors.add(
            "top level", "hosts", f"expected tables [hosts.NAME], got {_describe(raw_hosts)}"
        )
        return None

    specs: list[HostSpec] = []
    members: dict[str, list[str]] = {name: [] for name in groups}
    for name, raw in raw_hosts.items():
        where = f"host {name}"
        if not _HOST_NAME_RE.match(name):
            errors.add(
                where,
                "",
                f"{_show(name)} is not a usable host name; "
                "use letters, digits, '.', '_' and '-', starting with a letter or digit",
            )
        if not isinstance(raw, dict):
            errors.add(where, "", f"expected a table [hosts.{_key(name)}], got {_describe(raw)}")
            continue
        host_layer = _check_layer(raw, where, errors, is_host=True, base=base)
        layers: list[tuple[str | None, dict[str, Any]]] = [("[defaults]", defaults)]
        host_groups = host_layer.get("groups", ())
        if host_groups is not INVALID:
            for group in host_groups:
                if group in groups:
                    layers.append((f"group {group}", groups[group]))
                    members[group].append(name)
                else:
                    hint = _nearest(group, list(groups))
                    known = ", ".join(groups) or "none"
                    suggestion = f"did you mean {hint}? " if hint else ""
                    errors.add(
                        where,
                        "groups",
                        f"unknown group {_show(group)}; {suggestion}defined groups: {known}",
                    )
        layers.append((None, host_layer))
        spec = _build_host(name, layers, where, errors)
        if spec is not None:
            specs.append(spec)

    _check_distinct_machines(specs, errors)
    if errors.messages:
        return None
    return Fleet(
        hosts=tuple(_checked_here(spec) for spec in specs),
        groups={name: tuple(hosts) for name, hosts in members.items()},
        source=source,
        rollout=rollout,
    )


def _check_distinct_machines(specs: Sequence[HostSpec], errors: _Errors) -> None:
    """Two entries that reach the same sshd are one machine: it would be converged twice,
    each time towards another entry's spec."""
    seen: dict[tuple[str, int], str] = {}
    for spec in specs:
        try:
            address = str(ip_address(spec.ssh.address))
        except ValueError:
            address = spec.ssh.address.lower().rstrip(".")
        port = spec.ssh.port or 22
        first = seen.setdefault((address, port), spec.name)
        if first != spec.name:
            unset = "" if spec.ssh.port else " (22: ssh_port is not set)"
            errors.add(
                f"host {spec.name}",
                "ssh_address",
                f"{spec.ssh.address} port {port}{unset} is also where host {first} is reached; "
                "both entries would converge the same machine. Give each host its own "
                "ssh_address or ssh_port",
            )


# ---------------------------------------------------------------------------------------
# Merging and the checks that need the whole host.


def _merge(
    layers: Sequence[tuple[str | None, Mapping[str, Any]]],
) -> tuple[dict[str, Any], dict[str, str | None]]:
    """Merge layers, lowest first; also return where each leaf came from (None = the host)."""
    merged: dict[str, Any] = {}
    origin: dict[str, str | None] = {}
    for source, layer in layers:
        for key, value in layer.items():
            if key in ("interfaces", "vrfs") and isinstance(value, dict):
                target = merged.get(key)
                if not isinstance(target, dict):
                    target = merged[key] = {}
                for name, entry in value.items():
                    base = _join(key, _key(name))
                    if isinstance(entry, dict):
                        current = target.get(name)
                        if not isinstance(current, dict):
                            current = target[name] = {}
                        for sub, sub_value in entry.items():
                            current[sub] = sub_value
                            origin[_join(base, sub)] = source
                    else:
                        target[name] = entry
                        origin[base] = source
            else:
                merged[key] = value
                origin[key] = source
    return merged, origin


class _HostErrors:
    """Errors about one merged host, saying which layer set the value when it was not the host."""

    def __init__(
        self, errors: _Errors, host: str, where: str, origin: Mapping[str, str | None]
    ) -> None:
        self.errors = errors
        self.host = host
        self.where = where
        self.origin = origin
        self.count = 0

    def add(self, path: str, problem: str) -> None:
        source = self.origin.get(path)
        if source is None and "[" in path:
            source = self.origin.get(path.split("[", 1)[0])
        suffix = f" (set in {source})" if source else ""
        self.errors.add(self.where, path, problem + suffix)
        self.count += 1


def _valid(*values: object) -> bool:
    return all(v is not INVALID for v in values)


def _build_host(
    name: str,
    layers: Sequence[tuple[str | None, Mapping[str, Any]]],
    where: str,
    errors: _Errors,
) -> HostSpec | None:
    before = len(errors.messages)
    merged, origin = _merge(layers)
    err = _HostErrors(errors, name, where, origin)

    address = merged.get("ssh_address")
    if address is None:
        err.add(
            "ssh_address",
            'missing; set the address pyinfra connects to, e.g. ssh_address = "192.0.2.10"',
        )

    interfaces_raw = merged.get("interfaces", {})
    vrfs_raw = merged.get("vrfs", {})
    interfaces = _host_interfaces(interfaces_raw, vrfs_raw, err)
    vrfs = _host_vrfs(vrfs_raw, interfaces_raw, err)

    if merged.get("l3mdev_accept") is False and isinstance(address, str):
        _check_lockout(address, vrfs, interfaces, err)

    if len(errors.messages) != before or not _valid(*merged.values()):
        return None
    ssh = Ssh(
        address=cast(str, address),
        user=merged.get("ssh_user"),
        port=merged.get("ssh_port"),
        key=merged.get("ssh_key"),
        known_hosts_file=merged.get("ssh_known_hosts_file"),
        strict_host_key_checking=merged.get("ssh_strict_host_key_checking"),
        connect_timeout=merged.get("ssh_connect_timeout"),
    )
    return HostSpec(
        name=name,
        ssh=ssh,
        interfaces=tuple(interfaces.values()),
        vrfs=tuple(vrfs),
        groups=tuple(merged.get("groups", ())),
        backend=cast(Backend, merged.get("backend", "auto")),
        l3mdev_accept=bool(merged.get("l3mdev_accept", True)),
        rollback_timeout=int(merged.get("rollback_timeout", DEFAULT_ROLLBACK_TIMEOUT)),
        apply_timeout=int(merged.get("apply_timeout", DEFAULT_APPLY_TIMEOUT)),
        changes_at_once=int(merged.get("changes_at_once", DEFAULT_CHANGES_AT_ONCE)),
    )


def _host_interfaces(raw: Any, vrfs_raw: Any, err: _HostErrors) -> dict[str, Interface]:
    """Build the interfaces whose values are all valid, checking gateways and main_default."""
    if not isinstance(raw, dict):
        return {}
    port_of: dict[str, str] = {}
    if isinstance(vrfs_raw, dict):
        for vrf_name, vrf in vrfs_raw.items():
            if isinstance(vrf, dict) and isinstance(vrf.get("ports"), tuple):
                for port in vrf["ports"]:
                    port_of.setdefault(port, vrf_name)

    result: dict[str, Interface] = {}
    main_default_owner: str | None = None
    address_owner: dict[IPv4Address | IPv6Address, str] = {}
    for name, entry in raw.items():
        if not isinstance(entry, dict):
            continue
        base = _join("interfaces", _key(name))
        main_default = entry.get("main_default", False)
        for addr_key in ("ipv4", "ipv6"):
            address = entry.get(addr_key)
            if address is None or address is INVALID:
                continue
            if address.ip in address_owner:
                err.add(
                    _join(base, addr_key),
                    f"{address.ip} is also the address of {address_owner[address.ip]}; one "
                    "address belongs to one interface (replies would leave by either)",
                )
            address_owner.setdefault(address.ip, name)
        gateways_ok = True
        for version in (4, 6):
            gw_key, addr_key = f"gateway{version}", f"ipv{version}"
            gateway, address = entry.get(gw_key), entry.get(addr_key)
            if gateway is None or gateway is INVALID:
                continue
            path = _join(base, gw_key)
            if main_default is not True and main_default is not INVALID:
                if name in port_of:
                    vrf = port_of[name]
                    err.add(
                        path,
                        f"{name} is a port of VRF {vrf}, and a gateway on an interface is a "
                        f"main-table default route; move it to vrfs.{_key(vrf)}.{gw_key} "
                        f"so it goes into {vrf}'s table",
                    )
                else:
                    err.add(
                        path,
                        f"a gateway on an interface is a main-table default route; set "
                        f"{_join(base, 'main_default')} = true if {name} carries the host's "
                        f"default route, or move the gateway to vrfs.NAME.{gw_key} if it "
                        "belongs to a VRF",
                    )
                gateways_ok = False
                continue
            if address is INVALID:
                continue
            if address is None:
                err.add(
                    path,
                    f"{gateway} needs an IPv{version} address on {name}; "
                    f"set {_join(base, addr_key)}",
                )
                gateways_ok = False
                continue
            problem = _gateway_problem(gateway, address)
            if problem:
                err.add(path, f"{problem} of {name}; a gateway must be on the interface's segment")
                gateways_ok = False
        if main_default is True:
            path = _join(base, "main_default")
            if entry.get("gateway4") is None and entry.get("gateway6") is None:
                err.add(
                    path,
                    f"{name} has no gateway4 or gateway6; add the main default gateway(s) "
                    "or remove main_default",
                )
            if main_default_owner is not None:
                err.add(
                    path,
                    f"{main_default_owner} already carries the main default route; only one "
                    "interface per host can have main_default = true",
                )
            else:
                main_default_owner = name
        if gateways_ok and _valid(*entry.values()):
            result[name] = Interface(
                name=name,
                ipv4=entry.get("ipv4"),
                ipv6=entry.get("ipv6"),
                gateway4=entry.get("gateway4"),
                gateway6=entry.get("gateway6"),
                main_default=bool(main_default),
            )
    return result


def _gateway_problem(
    gateway: IPv4Address | IPv6Address, address: IPv4Interface | IPv6Interface
) -> str | None:
    """Why `gateway` cannot be a router on the segment of `address`, or None. An IPv6
    link-local gateway is on every IPv6 link: the route names the device instead."""
    network = address.network
    if needs_dev(gateway):
        return None
    if gateway not in network:
        return f"{gateway} is outside {network}, the subnet of {address}"
    if gateway == address.ip:
        return f"{gateway} is the interface's own address {address}"
    if isinstance(network, IPv4Network) and network.prefixlen <= 30:
        if gateway == network.network_address:
            return f"{gateway} is the network address of {network}"
        if gateway == network.broadcast_address:
            return f"{gateway} is the broadcast address of {network}"
    return None


def _host_vrfs(raw: Any, interfaces_raw: Any, err: _HostErrors) -> list[Vrf]:
    if not isinstance(raw, dict):
        return []
    declared = interfaces_raw if isinstance(interfaces_raw, dict) else {}
    table_owner: dict[int, str] = {}
    port_owner: dict[str, str] = {}
    service_owner: dict[str, str] = {}
    result: list[Vrf] = []
    for name, entry in raw.items():
        if not isinstance(entry, dict):
            continue
        base = _join("vrfs", _key(name))
        state = entry.get("state", "present")
        # An unreadable state was reported already; check the VRF as if present.
        present = state != "absent"
        table = entry.get("table")
        ports = entry.get("ports")

        if name in declared:
            err.add(
                base,
                f"{name} is also declared under interfaces; the VRF device needs a name of its own",
            )
        if table is None:
            err.add(
                _join(base, "table"),
                "missing; every VRF needs its own routing table, e.g. table = 10",
            )
        elif table is not INVALID and present:
            if table in table_owner:
                err.add(
                    _join(base, "table"),
                    f"table {table} is already used by VRF {table_owner[table]}; "
                    "each VRF needs a table of its own",
                )
            else:
                table_owner[table] = name
        if ports is None or ports == ():
            err.add(
                _join(base, "ports"),
                f'{name} has no ports; list the interfaces it owns, e.g. ports = ["eth2"]',
            )
            ports = INVALID
        port_entries: list[tuple[str, Mapping[str, Any]]] = []
        all_ports_known = ports is not INVALID
        if ports is not INVALID:
            for port in ports:
                _port_problem(port, name, present, declared, port_owner, base, err)
                port_entry = declared.get(port)
                if isinstance(port_entry, dict):
                    port_entries.append((port, port_entry))
                else:
                    all_ports_known = False

        gateways: dict[int, Any] = {}
        for version in (4, 6):
            gw = entry.get(f"gateway{version}")
            gateways[version] = gw
            if gw is None or gw is INVALID or not all_ports_known:
                continue
            problem = _on_port_segment(gw, port_entries, name)
            if problem:
                err.add(
                    _join(base, f"gateway{version}"),
                    f"{problem}; a VRF gateway must be on one of its ports' segments",
                )

        routes = entry.get("routes", [])
        route_list: list[Route] = []
        if routes is not INVALID:
            seen: dict[IPv4Network | IPv6Network, int] = {}
            for i, route in enumerate(routes):
                if route is INVALID:
                    continue
                path = f"{base}.routes[{i}]"
                if route.to in seen:
                    err.add(
                        _join(path, "to"),
                        f"{route.to} is already routed by routes[{seen[route.to]}]; "
                        "keep one route per destination",
                    )
                seen.setdefault(route.to, i)
                if all_ports_known:
                    problem = _on_port_segment(route.via, port_entries, name)
                    if problem:
                        err.add(
                            _join(path, "via"),
                            f"{problem}; the next hop must be on one of its ports' segments",
                        )
                route_list.append(route)

        services = entry.get("services", ())
        if services and services is not INVALID and not present:
            err.add(
                _join(base, "services"),
                f'{name} is marked state = "absent", so nothing runs inside it; remove its '
                "services list (their drop-ins go with the VRF) or list them under a present VRF",
            )
        if services is not INVALID and present:
            for unit in services:
                if unit in service_owner:
                    err.add(
                        _join(base, "services"),
                        f"{unit} is also listed for VRF {service_owner[unit]}; "
                        "a service runs inside one VRF",
                    )
                service_owner.setdefault(unit, name)

        if _valid(*entry.values()) and table is not None and all_ports_known:
            result.append(
                Vrf(
                    name=name,
                    table=table,
                    ports=tuple(ports),
                    gateway4=gateways[4],
                    gateway6=gateways[6],
                    routes=tuple(route_list),
                    state=cast(State, state),
                    services=tuple(services),
                )
            )
    return result


def _port_problem(
    port: str,
    vrf: str,
    present: bool,
    declared: Mapping[str, Any],
    port_owner: dict[str, str],
    base: str,
    err: _HostErrors,
) -> str | None:
    path = _join(base, "ports")
    if port not in declared:
        hint = _nearest(port, list(declared))
        suggestion = f"did you mean {hint}? Otherwise add" if hint else "add"
        problem = (
            f"{port} is not declared; {suggestion} a [hosts.{_key(err.host)}.interfaces."
            f"{_key(port)}] table with its ipv4/ipv6 address"
        )
        err.add(path, problem)
        return problem
    entry = declared[port]
    if not isinstance(entry, dict):
        return "invalid"
    if entry.get("ipv4") is None and entry.get("ipv6") is None:
        problem = (
            f"{port} has no ipv4 or ipv6 address; a VRF port needs one, set "
            f"interfaces.{_key(port)}.ipv4 or .ipv6"
        )
        err.add(path, problem)
        return problem
    if not present:
        # A VRF being torn down hands its ports back to the main table, where they may well
        # carry the main default route or join another VRF.
        return None
    if entry.get("main_default") is True:
        problem = (
            f"{port} carries the main default route (interfaces.{_key(port)}.main_default = "
            f"true); in {vrf} its routes would leave the main table. Use another port or "
            "move main_default to the service interface"
        )
        err.add(path, problem)
        return problem
    if port in port_owner:
        problem = (
            f"{port} is already a port of VRF {port_owner[port]}; an interface can be in "
            "one VRF only"
        )
        err.add(path, problem)
        return problem
    port_owner[port] = vrf
    return None


def _on_port_segment(
    address: IPv4Address | IPv6Address, ports: Sequence[tuple[str, Mapping[str, Any]]], vrf: str
) -> str | None:
    """Why `address` cannot be a next hop of `vrf` through one of its ports, or None."""
    version = address.version
    ifaces = []
    for name, entry in ports:
        if entry.get(f"ipv{version}") is INVALID:
            return None  # that address was reported already; no guessing about the rest
        ifaces.append(Interface(name, ipv4=entry.get("ipv4"), ipv6=entry.get("ipv6")))
    subnets = [
        f"{i.name}: {own.network}"
        for i in ifaces
        if (own := i.ipv4 if version == 4 else i.ipv6) is not None
    ]
    if not subnets:
        return f"{address} is IPv{version} but no port of {vrf} has an IPv{version} address"
    port = nexthop_port(address, ifaces)
    if port is None and needs_dev(address):
        return (
            f"{address} is link-local, so the route must name its device, and {vrf} has "
            f"{len(subnets)} ports with IPv6 addresses ({', '.join(subnets)}); use a router "
            "address inside one port's subnet"
        )
    if port is None:
        return (
            f"{address} is outside the IPv{version} subnets of {vrf}'s ports ({', '.join(subnets)})"
        )
    subnet = port.ipv4 if version == 4 else port.ipv6
    assert subnet is not None
    problem = _gateway_problem(address, subnet)
    return (
        f"{problem} (port {port.name}); a next hop is a router, not the port" if problem else None
    )


def _check_lockout(
    address: str, vrfs: Sequence[Vrf], interfaces: Mapping[str, Interface], err: _HostErrors
) -> None:
    try:
        target = ip_address(address)
    except ValueError:
        return
    for vrf in vrfs:
        if not vrf.present:
            continue
        for port in vrf.ports:
            iface = interfaces.get(port)
            if iface and target in (
                getattr(iface.ipv4, "ip", None),
                getattr(iface.ipv6, "ip", None),
            ):
                err.add(
                    "l3mdev_accept",
                    f"false would lock pyinfra out: ssh_address {address} is on {port}, a port "
                    f"of VRF {vrf.name}, and sshd (in the default VRF) only answers there with "
                    "net.ipv4.tcp_l3mdev_accept=1; keep l3mdev_accept = true",
                )
                return


# ---------------------------------------------------------------------------------------
# Host data: the spec as a plain dict, and back


def spec_to_data(spec: HostSpec) -> dict[str, Any]:
    """A JSON-friendly dict in fleet-file form (plus `name`), for printing or storing."""
    host: dict[str, Any] = {"name": spec.name, "ssh_address": spec.ssh.address}
    for attr in SSH_CONNECTOR_KEYS:
        value = getattr(spec.ssh, attr)
        if value is not None:
            host[f"ssh_{attr}"] = value
    if spec.ssh.connect_timeout is not None:
        host["ssh_connect_timeout"] = spec.ssh.connect_timeout
    host["backend"] = spec.backend
    host["l3mdev_accept"] = spec.l3mdev_accept
    host["rollback_timeout"] = spec.rollback_timeout
    host["apply_timeout"] = spec.apply_timeout
    host["changes_at_once"] = spec.changes_at_once
    if spec.groups:
        host["groups"] = list(spec.groups)
    host["interfaces"] = {
        iface.name: {
            key: value if isinstance(value, bool) else str(value)
            for key, value in (
                ("ipv4", iface.ipv4),
                ("ipv6", iface.ipv6),
                ("gateway4", iface.gateway4),
                ("gateway6", iface.gateway6),
                ("main_default", iface.main_default),
            )
            if value is not None
        }
        for iface in spec.interfaces
    }
    vrfs: dict[str, Any] = {}
    for vrf in spec.vrfs:
        entry: dict[str, Any] = {"table": vrf.table, "ports": list(vrf.ports), "state": vrf.state}
        if vrf.gateway4 is not None:
            entry["gateway4"] = str(vrf.gateway4)
        if vrf.gateway6 is not None:
            entry["gateway6"] = str(vrf.gateway6)
        if vrf.routes:
            entry["routes"] = [{"to": str(r.to), "via": str(r.via)} for r in vrf.routes]
        if vrf.services:
            entry["services"] = list(vrf.services)
        vrfs[vrf.name] = entry
    host["vrfs"] = vrfs
    return host


# The specs this module built: by the fleet file's rules, so they need no second look. Any
# other HostSpec was built in code, and is checked by the same rules when it is first used.
# Keyed by identity: a spec compares by value, and hashing every nested field is slow.
_CHECKED: weakref.WeakValueDictionary[int, HostSpec] = weakref.WeakValueDictionary()


def _checked_here(spec: HostSpec) -> HostSpec:
    _CHECKED[id(spec)] = spec
    return spec


def spec_from_data(data: HostSpec | Mapping[str, Any], source: str = "host data") -> HostSpec:
    """Rebuild a HostSpec from host data: a `spec_to_data` dict, or a HostSpec, both validated
    with the same rules as the fleet file (FleetError on problems). A HostSpec this module
    built comes back as it is; one built in code comes back as the fleet file would give it
    (ssh key paths absolute, from the current directory)."""
    if isinstance(data, HostSpec):
        if _CHECKED.get(id(data)) is data:
            return data
        return spec_from_data(spec_to_data(data), source)
    errors = _Errors(source)
    raw = dict(data)
    name = raw.pop("name", None)
    if not isinstance(name, str) or not name:
        raise FleetError([f"{source}: name: missing; the dict needs the host's name"])
    odd = next((c for c in name if c.isspace() or not c.isprintable()), None)
    if odd is not None:
        # pyinfra's own names (@local, @docker/NAME) pass; a newline would end a comment
        # line in the generated scripts, and a blank would split the host's name in two.
        raise FleetError(
            [
                f"{source}: name: {name!r} contains {odd!r}; a host's name is one word of "
                "printable characters (your inventory's name for the host)"
            ]
        )
    where = f"host {name}"
    raw_groups = raw.pop("groups", None)
    # No fleet file here: spec_to_data wrote absolute ssh paths; any other is read from cwd.
    layer = _check_layer(raw, where, errors, is_host=True, base=Path.cwd())
    if raw_groups is not None:
        layer["groups"] = _checked(raw_groups, where, "groups", _group_list, errors)
    spec = _build_host(name, [(None, layer)], where, errors)
    if errors.messages or spec is None:
        raise FleetError(errors.messages)
    return _checked_here(spec)
