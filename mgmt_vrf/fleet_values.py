"""The fleet file's single values: each checker returns the typed value or raises Bad with
the problem, in words for the person who wrote the file. The schema (fleet_schema) says
which key takes which checker; nothing here knows about tables, hosts or merging."""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
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
from socket import AF_INET, AF_INET6, inet_pton
from typing import Any

from .model import (
    MAX_APPLY_TIMEOUT,
    MAX_CHANGES_AT_ONCE,
    MAX_ROLLBACK_TIMEOUT,
    MIN_APPLY_TIMEOUT,
    MIN_ROLLBACK_TIMEOUT,
)
from .rollout import WaveSize, percent

Checker = Callable[[object], Any]

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
STRICT_CHOICES = ("yes", "accept-new", "no")
BACKEND_CHOICES = ("auto", "networkmanager", "network-scripts")
STATE_CHOICES = ("present", "absent")

MAX_CONNECT_TIMEOUT = 600
_BARE_KEY_RE = re.compile(r"^[A-Za-z0-9_-]+$")


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
    return ".".join(filter(None, parts))


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


@dataclass(frozen=True)
class Ranged:
    """A checker of an integer key and the range it allows, declared once: the checker
    enforces it, the JSON Schema states it (minimum, maximum, and the values left out)."""

    check: Callable[[object], int]
    low: int
    high: int
    excluded: tuple[int, ...] = ()

    def __call__(self, value: object) -> int:
        return self.check(value)


def _seconds(low: int, high: int, why: str) -> Ranged:
    def check(value: object) -> int:
        seconds = _integer(value, "a number of seconds")
        if not low <= seconds <= high:
            raise _Bad(f"{seconds} is outside {low}..{high} seconds; {why}")
        return seconds

    return Ranged(check, low, high)


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


def _host_count(low: int, why: str) -> Ranged:
    def check(value: object) -> int:
        hosts = _integer(value, "a number of hosts")
        if not low <= hosts <= MAX_CHANGES_AT_ONCE:
            raise _Bad(f"{hosts} is outside {low}..{MAX_CHANGES_AT_ONCE} hosts; {why}")
        return hosts

    return Ranged(check, low, MAX_CHANGES_AT_ONCE)


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


def _check_ssh_port(value: object) -> int:
    port = _integer(value, "a port number")
    if not 1 <= port <= 65535:
        raise _Bad(f"{port} is not a TCP port; use 1-65535")
    return port


_ssh_port = Ranged(_check_ssh_port, 1, 65535)


def _check_table(value: object) -> int:
    table = _integer(value, "a routing table number")
    if table in RESERVED_TABLES:
        names = ", ".join(f"{n} {name}" for n, name in RESERVED_TABLES.items())
        raise _Bad(f"{table} is reserved ({names}); {TABLE_HINT}")
    if table == 0:
        raise _Bad(f"0 is not a usable table (the kernel reads 0 as 'unspecified'); {TABLE_HINT}")
    if not 1 <= table <= TABLE_MAX:
        raise _Bad(f"{table} is out of range; {TABLE_HINT}")
    return table


_table = Ranged(_check_table, 1, TABLE_MAX, tuple(RESERVED_TABLES))


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
    # inet_pton first, as `ip` and the kernel's other tools read addresses: a big fleet file
    # has tens of thousands of them, and ipaddress parses text in Python (ip_address() even
    # tries IPv4, and raises, before each IPv6 address). The messages come from ipaddress.
    try:
        packed = inet_pton(AF_INET if version == 4 else AF_INET6, text)
    except OSError:
        pass
    else:
        return IPv4Address(packed) if version == 4 else IPv6Address(packed)
    try:
        addr = ip_address(text)
    except ValueError:
        raise _Bad(f"{_show(text)} is not a valid IPv{version} address") from None
    raise _Bad(f"{_show(text)} is an IPv{addr.version} address; put it under {other_key}")


def _interface_address(version: int) -> Callable[[object], IPv4Interface | IPv6Interface]:
    other = "ipv6" if version == 4 else "ipv4"

    def check(value: object) -> IPv4Interface | IPv6Interface:
        text = _string(value).strip()
        _no_zone(text)
        # The address first: an IPv6 address under ipv4 is a misplaced line, not a bad prefix.
        addr = _address_of(text.partition("/")[0], version, other)
        prefix = _prefix_of(text, version)
        # From the integer: given an address object, ipaddress parses its text again, twice.
        packed = (int(addr), prefix)
        iface = IPv4Interface(packed) if version == 4 else IPv6Interface(packed)
        host_bits = (1 << (32 - prefix)) - 1 if version == 4 and prefix <= 30 else 0
        if host_bits and int(addr) & host_bits in (0, host_bits):
            what = "network" if int(addr) & host_bits == 0 else "broadcast"
            raise _Bad(
                f"{text}: {addr} is the {what} address of {iface.network}, not a host address"
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


# glibc's resolver reads the first three nameserver lines (MAXNS) and ignores the rest.
MAX_NAMESERVERS = 3
_DOMAIN_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)")


def _nameserver_problem(item: str) -> str | None:
    text = item.strip()
    if "%" in text:
        return "has a zone id; give a nameserver by a global address, reached through the VRF"
    try:
        addr = ip_address(text)
    except ValueError:
        return "is not an IP address (a nameserver is one address, without /prefix or port)"
    if addr.is_loopback or addr.is_unspecified:
        return (
            "is this host itself, which the VRF's programs reach outside the VRF; give the "
            "address of a nameserver on the management network"
        )
    if addr.is_link_local or addr.is_multicast:
        return "is link-local or multicast; give a nameserver's global address"
    if isinstance(addr, IPv6Address) and addr.ipv4_mapped:
        return f"is an IPv4 address written as IPv6; write it as {addr.ipv4_mapped}"
    if addr.is_reserved:
        return "is a reserved address, where no nameserver can be"
    return None


def _nameservers(value: object) -> tuple[IPv4Address | IPv6Address, ...]:
    names = _names(
        value,
        "nameservers",
        "nameserver addresses",
        'nameservers are addresses in quotes, e.g. "203.0.113.53"',
        _nameserver_problem,
        lambda item: str(ip_address(item.strip())),
    )
    if not names:
        raise _Bad("is empty; list a nameserver, or leave the key out to keep the host's own")
    if len(names) > MAX_NAMESERVERS:
        raise _Bad(
            f"lists {len(names)} nameservers, and the resolver reads only the first "
            f"{MAX_NAMESERVERS}; keep {MAX_NAMESERVERS} at most"
        )
    return tuple(ip_address(n) for n in names)


def _domain_problem(item: str) -> str | None:
    name = item.removesuffix(".")
    if not name or len(name) > 253:
        return "is not a domain name (1 to 253 characters)"
    if not all(_DOMAIN_LABEL.fullmatch(label) for label in name.split(".")):
        return (
            "is not a domain name: dot-separated labels of letters, digits, '-' and '_', "
            'e.g. "mgmt.example.net"'
        )
    return None


def _search(value: object) -> tuple[str, ...]:
    return _names(
        value,
        "search",
        "domain names",
        'search domains are names in quotes, e.g. "mgmt.example.net"',
        _domain_problem,
        lambda item: item.removesuffix(".").lower(),
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
