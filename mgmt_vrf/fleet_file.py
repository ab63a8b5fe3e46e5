"""Read the fleet file (TOML) into validated HostSpecs.

Every problem in the file is collected in one pass and raised together as a FleetError,
each message naming the file, the host (or group, or [defaults]) and the key path, so a
user fixes the whole file at once instead of one error per run. Nothing here imports
pyinfra: inventory.py only wires the result into pyinfra groups.

Layout of the file (see fleet.example.toml): [defaults], [groups.NAME], [hosts.NAME] with
its interfaces and vrfs tables, and [rollout]. Which keys each table takes, and each value's
rule, is declared once in fleet_schema; this module merges the layers and runs the checks
that need a whole host, or the whole fleet.

Merge order: defaults < groups (in the order the host lists them) < host. The interfaces
and vrfs tables merge key by key, so a group can define a VRF and a host change only its
table; lists (ports, routes, groups) are replaced, never appended.
"""

from __future__ import annotations

import gc
import re
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
    ip_address,
)
from pathlib import Path
from typing import Any, cast

# tomli, not the standard library's tomllib (the same parser): its wheels are compiled, and
# read a 10,000-host fleet file in half the time.
import tomli

from .fleet_schema import (
    BASE_DIR,
    HostKeys,
    InterfaceKeys,
    LayerKeys,
    RolloutKeys,
    RouteKeys,
    Table,
    VrfKeys,
    check_table,
)
from .fleet_values import INVALID, _describe, _join, _key, _nearest, _show
from .model import (
    DEFAULT_APPLY_TIMEOUT,
    DEFAULT_CHANGES_AT_ONCE,
    DEFAULT_ROLLBACK_TIMEOUT,
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
from .rollout import ALL_AT_ONCE, Rollout

__all__ = [
    "Fleet",
    "FleetError",
    "load_fleet",
    "parse_fleet",
    "rollout_from_data",
    "spec_from_data",
    "spec_to_data",
]

# Fleet groups become inventory groups. pyinfra builds "all" and "inventory" itself, and
# the inventory's group of every host of the fleet is ALL_HOSTS_GROUP: a fleet group of one
# of these names would silently merge with them.
ALL_HOSTS_GROUP = "mgmt_vrf_hosts"
RESERVED_GROUPS = ("all", "inventory", ALL_HOSTS_GROUP)
# The Ssh fields the fleet file spells ssh_NAME, as pyinfra's ssh connector does its data.
SSH_CONNECTOR_KEYS = ("user", "port", "key", "known_hosts_file", "strict_host_key_checking")
_HOST_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_GROUP_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
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


def _check_rollout(raw: object, where: str, errors: _Errors) -> Rollout:
    if not isinstance(raw, dict):
        errors.add(where, "", f"expected a table [rollout], got {_describe(raw)}")
        return ALL_AT_ONCE
    keys = _check_table(RolloutKeys, raw, where, errors)
    if any(value is INVALID for value in keys.values()):
        return ALL_AT_ONCE
    return Rollout(waves=keys.get("waves", ()), failures_allowed=keys.get("failures_allowed", 0))


def _check_table(
    model: type[Table],
    raw: Mapping[str, Any],
    where: str,
    errors: _Errors,
    context: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One table checked by its schema: its values (INVALID where wrong), problems added."""
    values, problems = check_table(model, raw, context)
    for path, problem in problems:
        errors.add(where, path, problem)
    return values


def _check_layer(
    raw: Mapping[str, Any], where: str, errors: _Errors, *, is_host: bool, base: Path
) -> dict[str, Any]:
    """Check one [defaults], [groups.X] or [hosts.X] table; bad values become INVALID.
    `base` is the directory relative ssh file paths are read from."""
    model = HostKeys if is_host else LayerKeys
    return _check_table(model, raw, where, errors, {BASE_DIR: base})


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


def _merge(layers: Sequence[tuple[str | None, Mapping[str, Any]]]) -> dict[str, Any]:
    """Merge layers, lowest first: a named table's keys one by one, any other key whole."""
    merged: dict[str, Any] = {}
    for _, layer in layers:
        for key, value in layer.items():
            if key in ("interfaces", "vrfs") and isinstance(value, dict):
                target = merged.get(key)
                if not isinstance(target, dict):
                    target = merged[key] = {}
                for name, entry in value.items():
                    if isinstance(entry, dict):
                        current = target.get(name)
                        if not isinstance(current, dict):
                            current = target[name] = {}
                        current.update(entry)
                    else:
                        target[name] = entry
            else:
                merged[key] = value
    return merged


def _origins(layers: Sequence[tuple[str | None, Mapping[str, Any]]]) -> dict[str, str | None]:
    """Where each leaf of the merge came from (None = the host), by the same rules."""
    origin: dict[str, str | None] = {}
    for source, layer in layers:
        for key, value in layer.items():
            if key in ("interfaces", "vrfs") and isinstance(value, dict):
                for name, entry in value.items():
                    base = _join(key, _key(name))
                    for sub in entry if isinstance(entry, dict) else ():
                        origin[_join(base, sub)] = source
                    if not isinstance(entry, dict):
                        origin[base] = source
            else:
                origin[key] = source
    return origin


class _HostErrors:
    """Errors about one merged host, saying which layer set the value when it was not the host.
    Where each value came from is worked out at the first error: most hosts have none."""

    def __init__(
        self,
        errors: _Errors,
        host: str,
        where: str,
        layers: Sequence[tuple[str | None, Mapping[str, Any]]],
    ) -> None:
        self.errors = errors
        self.host = host
        self.where = where
        self.layers = layers
        self.origin: dict[str, str | None] | None = None
        self.count = 0

    def add(self, path: str, problem: str) -> None:
        if self.origin is None:
            self.origin = _origins(self.layers)
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
    merged = _merge(layers)
    err = _HostErrors(errors, name, where, layers)

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
            ip = address.ip  # a new object at each access
            if ip in address_owner:
                err.add(
                    _join(base, addr_key),
                    f"{ip} is also the address of {address_owner[ip]}; one "
                    "address belongs to one interface (replies would leave by either)",
                )
            address_owner.setdefault(ip, name)
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


# Keys that only a present VRF can have, and why, said when an absent one has them.
_PRESENT_ONLY = {
    "services": "nothing runs inside it; remove its services list (their drop-ins go with "
    "the VRF) or list them under a present VRF",
    "nameservers": "nothing resolves names inside it; remove its nameservers (their "
    "resolv.conf goes with the VRF)",
}


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

        for key, why in _PRESENT_ONLY.items():
            value = entry.get(key)
            if value and value is not INVALID and not present:
                err.add(_join(base, key), f'{name} is marked state = "absent", so {why}')
        services = entry.get("services", ())
        if services is not INVALID and present:
            for unit in services:
                if unit in service_owner:
                    err.add(
                        _join(base, "services"),
                        f"{unit} is also listed for VRF {service_owner[unit]}; "
                        "a service runs inside one VRF",
                    )
                service_owner.setdefault(unit, name)

        nameservers = entry.get("nameservers", ())
        if present and nameservers is not INVALID and all_ports_known and routes is not INVALID:
            for ns in nameservers:
                problem = _unreachable(ns, gateways[ns.version], route_list, port_entries, name)
                if problem:
                    err.add(_join(base, "nameservers"), problem)
        search = entry.get("search")
        if search and search is not INVALID and not nameservers:
            err.add(
                _join(base, "search"),
                f"search domains need nameservers of {name} to ask; add nameservers = "
                '["ADDRESS"], or remove search to keep the host\'s own resolver',
            )

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
                    nameservers=tuple(nameservers),
                    search=tuple(search or ()),
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


def _unreachable(
    address: IPv4Address | IPv6Address,
    gateway: IPv4Address | IPv6Address | None,
    routes: Sequence[Route],
    ports: Sequence[tuple[str, Mapping[str, Any]]],
    vrf: str,
) -> str | None:
    """Why the VRF's table has no path to `address`, or None: its default, a route, or a
    port's own subnet."""
    if gateway is not None or any(address in r.to for r in routes):
        return None
    for _, entry in ports:
        own = entry.get(f"ipv{address.version}")
        if own is INVALID:
            return None  # reported already
        if own is not None and address in own.network:
            return None
    return (
        f"nameserver {address} is not reachable inside {vrf}: no gateway{address.version}, no "
        f"route to it and no port on its subnet; give {vrf} gateway{address.version} or a "
        "route to it (routes = [{ to = ..., via = ... }])"
    )


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
    """A JSON-friendly dict in fleet-file form (plus `name`), for printing or storing: every
    key of the schema that the spec sets, each table's keys read from the object it became."""
    host: dict[str, Any] = {"name": spec.name}
    for key in HostKeys.model_fields:
        if key == "interfaces":
            host[key] = {iface.name: _data(InterfaceKeys, iface) for iface in spec.interfaces}
        elif key == "vrfs":
            host[key] = {vrf.name: _data(VrfKeys, vrf) for vrf in spec.vrfs}
        else:
            _put(
                host,
                key,
                getattr(spec.ssh, key[4:]) if key.startswith("ssh_") else getattr(spec, key),
            )
    return host


def _data(model: type[Table], obj: object) -> dict[str, Any]:
    entry: dict[str, Any] = {}
    for key in model.model_fields:
        value = getattr(obj, key)
        if key == "routes":
            value = [_data(RouteKeys, route) for route in value]
        _put(entry, key, value)
    return entry


def _put(data: dict[str, Any], key: str, value: object) -> None:
    """Set a key as TOML writes it: addresses as text, arrays as lists; unset keys left out."""
    if value is None or value == () or value == []:
        return
    if isinstance(value, tuple):
        value = [item if isinstance(item, (bool, int, str)) else str(item) for item in value]
    elif not isinstance(value, (bool, int, str, list)):
        value = str(value)
    data[key] = value


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
    # No fleet file here: spec_to_data wrote absolute ssh paths; any other is read from cwd.
    layer = _check_layer(raw, where, errors, is_host=True, base=Path.cwd())
    spec = _build_host(name, [(None, layer)], where, errors)
    if errors.messages or spec is None:
        raise FleetError(errors.messages)
    return _checked_here(spec)
