"""The rollback a host runs by itself when the controller does not confirm a change in time.

Generated before the change from the state the combined fact read, it puts back what the
change can touch and nothing else: the files (from copies saved by the apply script), the
unit's enablement, the VRF devices of the fleet file, their ports (master, up, addresses),
their tables, the main table's default routes and routes through those ports, and the
sysctls. `differences()` compares the same things between two states, so the controller (and
the tests) can say whether a rollback really brought the host back.

No pyinfra import: mgmt_vrf/pyinfra/operations.py ships these scripts, tests read them directly.
"""

from __future__ import annotations

from collections.abc import Iterable

from . import paths
from .commands import sh_comment, sh_quote
from .host_commands import RestartUnit, route_match_words
from .hoststate import MAIN_TABLE, HostState, Link, RouteEntry
from .model import HostSpec
from .plan import Plan, RemoveFile, RunCommand, WriteFile, activated_ports
from .steps import (
    SELECTING_WORDS,
    SPLIT_ON_PURPOSE,
    l3mdev_sysctls,
    sysctl_slash_key,
)

# Route types the kernel derives from addresses; they come back by themselves.
_DERIVED = frozenset({"local", "broadcast", "anycast", "multicast"})

_q = sh_quote


# Stop an apply that is still running, with what it started (it leads its own session);
# after a reboot the pid may be another's.
STOP_APPLY = (
    'pid=$(cat "$run/apply.pid" 2>/dev/null)',
    '[ -n "$pid" ] && grep -qs apply.sh "/proc/$pid/cmdline" &&',
    '    echo "mgmt-vrf: the apply was still running; stopping it" &&',
    '    { kill -- "-$pid" 2>/dev/null || kill "$pid"; }',
)


def touched_paths(plan: Plan) -> list[str]:
    """Files the plan writes or removes: the apply script saves each before the change."""
    return list(
        dict.fromkeys(c.path for c in plan.changes if isinstance(c, (WriteFile, RemoveFile)))
    )


def _changes_runtime(plan: Plan) -> bool:
    return any(isinstance(c, RunCommand) and c.command.changes_runtime for c in plan.changes)


def _ports(spec: HostSpec, before: HostState) -> list[str]:
    names = {vrf.name for vrf in spec.vrfs}
    ports = {p for vrf in spec.vrfs for p in vrf.ports}
    ports |= {link.name for link in before.links.values() if link.master in names}
    return sorted(p for p in ports if p in before.links)


def _tables(spec: HostSpec, before: HostState) -> list[int]:
    tables = {vrf.table for vrf in spec.vrfs}
    for vrf in spec.vrfs:
        old = before.links.get(vrf.name)
        if old is not None and old.is_vrf and old.vrf_table is not None:
            tables.add(old.vrf_table)
    return sorted(tables)


def _sysctl_keys(spec: HostSpec, before: HostState) -> list[str]:
    keys = list(l3mdev_sysctls(spec))
    keys += [f"net.ipv6.conf.{port}.keep_addr_on_down" for port in _ports(spec, before)]
    return keys


def _restored_route(route: RouteEntry, ports: Iterable[str], tables: Iterable[int]) -> bool:
    if route.type in _DERIVED:
        return False
    if route.table in tables:
        # Connected routes come back when the port rejoins its VRF.
        return route.protocol != "kernel"
    if route.table == MAIN_TABLE:
        if route.is_default and route.is_multipath:
            return False  # never deleted above
        return route.protocol != "kernel" and (route.is_default or route.dev in set(ports))
    return False


def _route_add(route: RouteEntry) -> str:
    words = ["ip", f"-{route.family}", "route", "add"]
    if route.type != "unicast":
        words.append(route.type)
    words += route_match_words(route)
    if route.protocol:
        words += ["proto", route.protocol]
    words += ["table", str(route.table)]
    return " ".join(_q(w) for w in words)


def _file_lines(spec: HostSpec, before: HostState, plan: Plan) -> list[str]:
    lines = []
    for path in touched_paths(plan):
        saved = paths.SAVED_DIR + path
        lines.append(
            f"if [ -e {_q(saved)} ]; then mkdir -p {_q(path.rsplit('/', 1)[0] or '/')} && "
            f"cp -p {_q(saved)} {_q(path)}; else rm -f {_q(path)}; fi"
        )
    if before.unit_enabled:
        lines.append(f"mkdir -p {_q(paths.UNIT_WANTS_LINK.rsplit('/', 1)[0])}")
        lines.append(f"ln -sfn {_q(paths.UNIT)} {_q(paths.UNIT_WANTS_LINK)}")
    else:
        lines.append(f"rm -f {_q(paths.UNIT_WANTS_LINK)}")
    if before.systemd_running:
        lines.append("systemctl daemon-reload")
        if paths.RESOLV_PATH_UNIT in touched_paths(plan):
            # As it was: watching with the old file, or not at all.
            action = "restart" if before.file(paths.RESOLV_PATH_UNIT).exists else "stop"
            lines.append(f"systemctl {action} {_q(paths.RESOLV_WATCH)}")
    if before.network_manager.running:
        lines.append("nmcli connection reload")
    return lines


def _runtime_lines(spec: HostSpec, before: HostState) -> list[str]:
    ports = _ports(spec, before)
    tables = _tables(spec, before)
    lines = ["# Keep the ports' IPv6 addresses through the down/up that (un)enslaving does."]
    for port in ports:
        lines.append(
            f"sysctl -q -w {_q(sysctl_slash_key(f'net.ipv6.conf.{port}.keep_addr_on_down'))}=1"
        )
    for port in ports:
        lines.append(f"ip link set dev {_q(port)} nomaster")
    for vrf in spec.vrfs:
        old = before.links.get(vrf.name)
        if old is None:
            lines.append(f"ip link del dev {_q(vrf.name)}")
        elif old.is_vrf:
            same_table = _q(f"vrf table {old.vrf_table}( |$)")
            lines.append(
                f"ip -d link show dev {_q(vrf.name)} | grep -Eq {same_table}"
                f" || {{ ip link del dev {_q(vrf.name)}; "
                f"ip link add dev {_q(vrf.name)} type vrf table {old.vrf_table}; }}"
            )
            lines.append(f"ip link set dev {_q(vrf.name)} {'up' if old.up else 'down'}")
    for table in tables:
        lines.append(f"ip -4 route flush table {table}")
        lines.append(f"ip -6 route flush table {table}")
    for port in ports:
        link = before.links[port]
        if link.master is not None:
            lines.append(f"ip link set dev {_q(port)} master {_q(link.master)}")
        lines.append(f"ip link set dev {_q(port)} {'up' if link.up else 'down'}")
    for port in ports:
        had = set(before.links[port].addresses)
        iface = spec.interface(port)
        for address in (iface.ipv4, iface.ipv6) if iface else ():
            if address is not None and address not in had:
                lines.append(f"ip addr del {_q(address)} dev {_q(port)}")
        for address in sorted(had, key=str):
            lines.append(f"ip addr replace {_q(address)} dev {_q(port)}")
    lines.append(
        "# The main table's defaults exactly as they were (the deploy adds and deletes some)."
    )
    for family in (4, 6):
        # Each single-path default by its own words; a multipath default (nexthops on its
        # line with -o) is the operator's, untouched by the deploy and so by this.
        lines.append(SPLIT_ON_PURPOSE)
        lines.append(
            f"ip -o -{family} route show table main exact {'0.0.0.0/0' if family == 4 else '::/0'}"
            f" | grep -v nexthop | {SELECTING_WORDS} | while read -r line; do "
            f"ip -{family} route del $line table main; done"
        )
    for route in before.routes:
        if _restored_route(route, ports, tables):
            lines.append(_route_add(route))
    for key in _sysctl_keys(spec, before):
        if key in before.sysctls:
            lines.append(f"sysctl -q -w {_q(sysctl_slash_key(key) + '=' + before.sysctls[key])}")
    if not before.vrf_links:
        # The kernel adds the l3mdev rule with the first VRF and keeps it after the last.
        for family in (4, 6):
            for rule in before.rules:
                if rule.family == family and rule.l3mdev:
                    break
            else:
                lines.append(f"ip -{family} rule del pref 1000 l3mdev")
    return lines


def _reactivation_lines(plan: Plan) -> list[str]:
    """Where the change had NetworkManager activate the new profiles, it brings up again the
    profile it had active on each port before (restored with the files); left alone, it
    would take the restored addresses as an unmanaged, externally made connection."""
    lines = []
    for port in activated_ports(plan):
        uuid = f"awk -F: -v d={_q(port)} '$2 == d {{ print $1 }}' {_q(paths.NM_ACTIVE)}"
        # A profile NetworkManager had generated for an external setup is gone by now: then
        # it picks the port's best profile, as at boot.
        lines.append(
            f'uuid=$({uuid} 2>/dev/null); [ -z "$uuid" ] || '
            f'nmcli --wait 30 connection up uuid "$uuid" || '
            f"nmcli --wait 30 device connect {_q(port)}"
        )
    return lines


def restarted_units(plan: Plan) -> list[str]:
    return [
        c.command.unit
        for c in plan.changes
        if isinstance(c, RunCommand) and isinstance(c.command, RestartUnit)
    ]


def _restart_lines(before: HostState, plan: Plan) -> list[str]:
    """Last, once the VRFs are back: each service the change restarted starts again from
    its restored files; one that did not run before is only restarted if it runs now."""
    lines = []
    for unit in restarted_units(plan):
        known = before.units.get(unit)
        verb = "restart" if known is not None and known.running else "try-restart"
        lines.append(f"systemctl {verb} {_q(unit)}")
    return lines


def rollback_script(spec: HostSpec, before: HostState, plan: Plan) -> str:
    """A POSIX sh script that puts `before` back. It runs at most once: it claims the armed
    marker first, so a confirmation that won the race leaves it nothing to do."""
    run = _q(paths.RUN_DIR)
    lines = [
        "#!/bin/sh",
        f"# mgmt-vrf rollback for {sh_comment(spec.name)}: restores the state read before the "
        "change.",
        f"run={run}",
        'mv "$run/armed" "$run/rolling-back" 2>/dev/null || exit 0',
        'exec >>"$run/log" 2>&1',
        "# Whichever timer (or word) started this, the other one must not linger.",
        "[ ! -d /run/systemd/system ] || systemctl stop "
        f"{_q(paths.ROLLBACK_UNIT + '.timer')} {_q(paths.WINDOW_UNIT + '.timer')} 2>/dev/null",
        'echo "mgmt-vrf: rollback started $(date -u +%FT%TZ)"',
        *STOP_APPLY,
        "# Let the command that may have started us return before the network moves.",
        "sleep 2",
        *_file_lines(spec, before, plan),
    ]
    if _changes_runtime(plan):
        # Each line on its own: a step that finds nothing to undo must not stop the others.
        lines += [
            line if line.startswith("#") or line.endswith("2>/dev/null") else f"{line} 2>/dev/null"
            for line in _runtime_lines(spec, before)
        ]
    lines += _reactivation_lines(plan)
    lines += _restart_lines(before, plan)
    lines += [
        "echo 'done' > \"$run/rollback.status\"",
        'echo "mgmt-vrf: rollback done $(date -u +%FT%TZ)"',
    ]
    return "\n".join(lines) + "\n"


# --- comparing states ------------------------------------------------------------------------


def _view(
    spec: HostSpec,
    state: HostState,
    reference: HostState,
    files: Iterable[str],
    units: Iterable[str] = (),
) -> dict[str, object]:
    """What a rollback restores, keyed by a name a human understands."""
    ports = _ports(spec, reference)
    tables = _tables(spec, reference)
    view: dict[str, object] = {}
    for name in [vrf.name for vrf in spec.vrfs] + ports:
        link = state.links.get(name)
        view[f"device {name}"] = "missing" if link is None else _link_words(link)
    for route in state.routes:
        if route.type in _DERIVED:
            continue
        if route.table in tables or (
            route.table == MAIN_TABLE and (route.is_default or route.dev in ports)
        ):
            key = (
                f"route table {route.table} {route.family} {route.type} {route.dst} "
                f"via {route.gateway} dev {route.dev} metric {route.metric} proto {route.protocol}"
            )
            view[key] = True
    for key in _sysctl_keys(spec, reference):
        view[f"sysctl {key}"] = state.sysctls.get(key)
    for rule in state.rules:
        view[f"rule {rule.family} pref {rule.priority} table {rule.table} l3mdev {rule.l3mdev}"] = (
            True
        )
    for path in files:
        sha = state.file(path).sha256
        view[f"file {path}"] = f"sha256 {sha[:12]}" if sha else "absent"
    for unit in units:
        found = state.units.get(unit)
        if found is None:
            view[f"service {unit}"] = "missing"
        else:
            where = f"in VRF {found.vrf}" if found.vrf else "in the default VRF"
            view[f"service {unit}"] = f"{'running' if found.running else 'stopped'} {where}"
    return view


def _link_words(link: Link) -> str:
    """A device as the rollback restores it, in words (compared as they are, and shown)."""
    words = [f"a {link.kind} device" if link.kind else "a NIC"]
    if link.vrf_table is not None:
        words.append(f"table {link.vrf_table}")
    words.append(f"in {link.master}" if link.master else "in no VRF")
    words.append("up" if link.up else "down")
    addresses = sorted(map(str, link.addresses))
    words.append("addresses " + " ".join(addresses) if addresses else "no address")
    return ", ".join(words)


def _shown(value: object) -> str:
    return "unset" if value is None else str(value)


def differences(
    spec: HostSpec,
    before: HostState,
    after: HostState,
    files: Iterable[str] = (),
    units: Iterable[str] = (),
) -> list[str]:
    """How `after` differs from `before` in what a rollback restores; empty when equal."""
    files = list(files)
    units = list(units)
    old = _view(spec, before, before, files, units)
    new = _view(spec, after, before, files, units)
    out = []
    for key in sorted(old.keys() | new.keys()):
        if old.get(key) != new.get(key):
            if key.startswith(("route ", "rule ")):
                out.append(f"{key}: {'gone' if key in old else 'new'}")
            else:
                out.append(f"{key}: was {_shown(old.get(key))}, now {_shown(new.get(key))}")
    return out
