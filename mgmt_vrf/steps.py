"""The runtime state a host must reach, as ordered steps.

Each step knows three things about one piece of kernel state: how to tell from the combined
fact whether it already holds (used by the planner), how to tell the same thing on the host
in POSIX sh (used by the boot-time converge script), and the commands that make it hold.
Both the plan and the script are built from this one list, so they cannot disagree on what
"converged" means or in which order repairs happen.

Order matters because the host must keep answering between steps:
l3mdev sysctls first (a global sshd then still accepts connections arriving through the
VRF port), then the main table's service defaults (added before anything is removed), the
VRF devices and their fall-through guard, the removal of stray main-table defaults through
VRF ports, the enslaving of ports, and last the VRF tables' own routes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from ipaddress import IPv4Interface, IPv6Interface, ip_address, ip_network

from .commands import sh_quote, to_shell
from .host_commands import CreateVrf, DeleteRoute, HostCommand, Ip, Sysctl
from .hoststate import MAIN_TABLE, HostState, RouteEntry
from .model import UNREACHABLE_METRIC, HostSpec, Interface, Vrf, needs_dev

Check = Callable[[HostState], bool]


@dataclass(frozen=True)
class Step:
    what: str  # what is wrong while the step does not hold: "table 10 lacks default via 192.0.2.1"
    holds: Check  # True when the fact shows this step is already done
    commands: tuple[HostCommand, ...]  # what the plan runs when it is not
    shell_check: str  # POSIX sh condition, true when done (the boot script's view)
    # The boot script may need a different, self-contained form of the repair (a loop where
    # the plan lists exact routes); by default it runs `commands`.
    shell_repair: tuple[str, ...] | None = None
    # Runs before any file is written: settings that keep our own ssh session answering.
    early: bool = False

    def repair_lines(self) -> tuple[str, ...]:
        if self.shell_repair is not None:
            return self.shell_repair
        return tuple(to_shell(command.argv) for command in self.commands)


_q = sh_quote


def _has(text: str) -> str:
    """A grep that matches a fixed string: names and addresses hold regex metacharacters."""
    return f"grep -qF -- {_q(text)}"


def _without_dev(dev: str) -> str:
    """Filter for `ip -o route show` lines: drop routes through `dev` and multipath routes.

    A multipath default (its nexthops on one line with -o) is the operator's design, never a
    stray; the plan leaves it alone too. A space is appended so a line ending in "dev eth0"
    matches like one that goes on."""
    return f"grep -v nexthop | sed 's/$/ /' | grep -vF -- {_q(f' dev {dev} ')}"


# Turns an `ip -o route show` line into the words `ip route del` takes to single it out:
# "default" and its via, dev and metric. Flags the show prints (linkdown, dead, offload) and
# IPv6's "expires 299sec" would make the delete fail.
SELECTING_WORDS = (
    'awk \'{ o = "default"; for (i = 2; i < NF; i++) '
    'if ($i == "via" || $i == "dev" || $i == "metric") { o = o " " $i " " $(i + 1); i++ } '
    "print o }'"
)
# Each line SELECTING_WORDS prints is the words of one route for `ip route del`, read into
# $line and split on purpose; this tells shellcheck so, on the line before such a loop.
SPLIT_ON_PURPOSE = "# shellcheck disable=SC2086 # $line: one route's words for ip, split on purpose"


def _addr_word(family: int) -> str:
    return "inet" if family == 4 else "inet6"


def _fam(family: int) -> str:
    return "-4" if family == 4 else "-6"


def _any_default(family: int) -> str:
    return "0.0.0.0/0" if family == 4 else "::/0"


def _route_dst_text(network: str, family: int) -> str:
    """The destination as `ip route show` prints it: default, a.b.c.d/nn, or a bare host."""
    net = ip_network(network, strict=False)
    if net.prefixlen == 0:
        return "default"
    if net.prefixlen == net.max_prefixlen:
        return str(net.network_address)
    return str(net)


# --- checks on the fact --------------------------------------------------------------


def vrf_device_ok(vrf: Vrf) -> Check:
    def holds(state: HostState) -> bool:
        link = state.links.get(vrf.name)
        return link is not None and link.is_vrf and link.vrf_table == vrf.table

    return holds


def _sysctl_is(key: str, value: str) -> Check:
    return lambda state: state.sysctls.get(key) == value


def _link_up(name: str, also: Check | None = None) -> Check:
    def holds(state: HostState) -> bool:
        link = state.links.get(name)
        return link is not None and link.up and (also is None or also(state))

    return holds


def _enslaved(port: str, vrf: Vrf) -> Check:
    device_ok = vrf_device_ok(vrf)

    def holds(state: HostState) -> bool:
        link = state.links.get(port)
        return link is not None and link.master == vrf.name and device_ok(state)

    return holds


def _has_address(port: str, address: IPv4Interface | IPv6Interface, vrf: Vrf) -> Check:
    enslaved = _enslaved(port, vrf)

    def holds(state: HostState) -> bool:
        link = state.links.get(port)
        # After (re-)enslaving, the kernel cycles the port; re-adding the address is cheap
        # insurance, so a pending enslave makes this step pending too.
        return link is not None and address in link.addresses and enslaved(state)

    return holds


def _route_present(
    family: int, table: int, dst: str, gateway: str | None, kind: str = "unicast"
) -> Check:
    def holds(state: HostState) -> bool:
        for route in state.routes_in(table, family):
            if route.type != kind or not route.same_dst(dst):
                continue
            if kind == "unreachable":
                if route.metric == UNREACHABLE_METRIC:
                    return True
            elif route.same_gateway(gateway):
                return True
            elif (
                gateway is not None
                and route.is_multipath
                and any(ip_address(h) == ip_address(gateway) for h in route.nexthop_gateways)
            ):
                return True  # an operator's multipath default through the gateway
        return False

    return holds


def _stray_main_defaults(spec: HostSpec, family: int) -> Callable[[HostState], list[RouteEntry]]:
    """Main-table defaults that must go: through a VRF port, or through any interface other
    than the declared service interface (the blog's duplicate defaults)."""
    ports = {p for vrf in spec.present_vrfs for p in vrf.ports}
    service = spec.main_default_interface

    def strays(state: HostState) -> list[RouteEntry]:
        found = []
        for route in state.routes_in(MAIN_TABLE, family):
            if not route.is_default or route.type != "unicast":
                continue
            if route.is_multipath:
                # Its nexthops carry the devices: an operator's ECMP default, not a leftover.
                continue
            if route.dev in ports or (service is not None and route.dev != service.name):
                found.append(route)
        return found

    return strays


def _vrf_table_extras(vrf: Vrf, family: int) -> Callable[[HostState], list[RouteEntry]]:
    """Gateway routes in a VRF table that the fleet file does not declare (a stale gateway)."""
    wanted = _wanted_vrf_routes(vrf, family)

    def extras(state: HostState) -> list[RouteEntry]:
        found = []
        for route in state.routes_in(vrf.table, family):
            if route.type != "unicast" or route.gateway is None:
                continue
            if not any(route.same_dst(dst) and route.same_gateway(gw) for dst, gw in wanted):
                found.append(route)
        return found

    return extras


def _wanted_vrf_routes(vrf: Vrf, family: int) -> list[tuple[str, str]]:
    wanted: list[tuple[str, str]] = []
    gateway = vrf.gateway4 if family == 4 else vrf.gateway6
    if gateway is not None:
        wanted.append(("default", str(gateway)))
    for route in vrf.routes:
        if route.family == family:
            wanted.append((str(route.to), str(route.via)))
    return wanted


Finder = Callable[[HostState], list[RouteEntry]]


def _none_found(find: Finder) -> Check:
    return lambda state: not find(state)


def _deletes_of(find: Finder) -> Callable[[HostState], tuple[HostCommand, ...]]:
    return lambda state: tuple(DeleteRoute(route) for route in find(state))


def _released(port: str, vrf: str) -> Check:
    return lambda s: port not in s.links or s.links[port].master != vrf


def _released_with(port: str, vrf: str, address: IPv4Interface | IPv6Interface) -> Check:
    released = _released(port, vrf)
    return lambda s: port not in s.links or (address in s.links[port].addresses and released(s))


def _no_vrf_device(vrf: str) -> Check:
    return lambda s: not (vrf in s.links and s.links[vrf].is_vrf)


def _table_empty(table: int, family: int) -> Check:
    return lambda s: not s.routes_in(table, family)


# --- the steps ---------------------------------------------------------------------------


def l3mdev_sysctls(spec: HostSpec) -> dict[str, str]:
    value = "1" if spec.l3mdev_accept else "0"
    return {"net.ipv4.tcp_l3mdev_accept": value, "net.ipv4.udp_l3mdev_accept": value}


def port_sysctls(spec: HostSpec) -> dict[str, str]:
    """keep_addr_on_down=1 keeps a port's IPv6 addresses across the down/up that enslaving does."""
    ports = sorted({p for vrf in spec.present_vrfs for p in vrf.ports})
    return {f"net.ipv6.conf.{port}.keep_addr_on_down": "1" for port in ports}


def sysctl_slash_key(key: str) -> str:
    """`net/ipv6/conf/eth0.100/keep_addr_on_down`: sysctl(8) and sysctl.d read "/" keys
    literally, so interface names with dots (VLANs) stay intact."""
    head = "net.ipv6.conf."
    if key.startswith(head):
        dev, _, leaf = key[len(head) :].rpartition(".")
        return f"net/ipv6/conf/{dev}/{leaf}"
    return key


def _sysctl_step(key: str, value: str) -> Step:
    slash = sysctl_slash_key(key)
    path = "/proc/sys/" + (slash if "/" in slash else slash.replace(".", "/"))
    return Step(
        what=f"{key} is not {value}",
        holds=_sysctl_is(key, value),
        commands=(Sysctl(slash, value),),
        shell_check=f'[ "$(cat {_q(path)} 2>/dev/null)" = {_q(value)} ]',
        early=True,
    )


def _main_default_steps(spec: HostSpec) -> list[Step]:
    iface = spec.main_default_interface
    if iface is None:
        return []
    steps = []
    for family, gateway in ((4, iface.gateway4), (6, iface.gateway6)):
        if gateway is None:
            continue
        steps.append(
            Step(
                what=f"main table lacks default via {gateway} dev {iface.name}",
                holds=_route_present(family, MAIN_TABLE, "default", str(gateway)),
                commands=(
                    Ip(
                        ("route", "replace", "default", "via", str(gateway))
                        + ("dev", iface.name, "table", "main"),
                        family,
                    ),
                ),
                shell_check=(
                    f"ip -o {_fam(family)} route show table main exact {_any_default(family)} "
                    f"2>/dev/null | grep -qF -- {_q(f' via {gateway} ')}"
                ),
            )
        )
    return steps


def _stray_main_default_steps(spec: HostSpec) -> list[Step]:
    steps: list[Step] = []
    service = spec.main_default_interface
    ports = sorted({p for vrf in spec.present_vrfs for p in vrf.ports})
    for family in (4, 6):
        find = _stray_main_defaults(spec, family)
        # The boot script cannot know each stray route in advance: it deletes by device in a
        # loop (the blog's "route delete default" twice, done until none is left).
        loop_devs = ports
        if service is not None:
            check_cmd = (
                f"ip -o {_fam(family)} route show table main exact {_any_default(family)} "
                f"2>/dev/null | {_without_dev(service.name)} | grep -q ."
            )
        else:
            check_cmd = " || ".join(
                f"ip {_fam(family)} route show table main exact {_any_default(family)} "
                f"dev {_q(dev)} 2>/dev/null | grep -q ."
                for dev in ports
            )
        if not check_cmd:
            continue
        # `ip route show dev X` leaves "dev X" out of its lines: it is added back.
        repair = tuple(
            f"{SPLIT_ON_PURPOSE}\n"
            f"ip -o {_fam(family)} route show table main exact {_any_default(family)} "
            f"dev {_q(dev)} 2>/dev/null | grep -v nexthop | {SELECTING_WORDS} | "
            f"while read -r line; do ip {_fam(family)} route del $line dev {_q(dev)} "
            "table main; done"
            for dev in loop_devs
        )
        if service is not None:
            # Defaults through any other non-service device: remove them one by one.
            repair += (
                f"{SPLIT_ON_PURPOSE}\n"
                f"ip -o {_fam(family)} route show table main exact {_any_default(family)} "
                f"2>/dev/null | {_without_dev(service.name)} | {SELECTING_WORDS} | "
                f"while read -r line; do ip {_fam(family)} route del $line table main; done",
            )
        steps.append(
            _DynamicStep(
                what=f"extra IPv{family} default route in main",
                holds=_none_found(find),
                commands=(),
                shell_check=f"! {{ {check_cmd}; }}",
                shell_repair=repair,
                dynamic=_deletes_of(find),
            )
        )
    return steps


@dataclass(frozen=True)
class _DynamicStep(Step):
    """A step whose plan commands depend on what the fact found (routes to delete)."""

    dynamic: Callable[[HostState], tuple[HostCommand, ...]] | None = None

    def commands_for(self, state: HostState) -> tuple[HostCommand, ...]:
        assert self.dynamic is not None
        return self.dynamic(state)


def commands_for(step: Step, state: HostState) -> tuple[HostCommand, ...]:
    if isinstance(step, _DynamicStep):
        return step.commands_for(state)
    return step.commands


def _vrf_device_steps(vrf: Vrf, tables_in_use: frozenset[int] = frozenset()) -> list[Step]:
    name, table = vrf.name, str(vrf.table)
    device_ok = vrf_device_ok(vrf)
    create = CreateVrf(name, vrf.table)

    def recreate(state: HostState) -> tuple[HostCommand, ...]:
        cmds: tuple[HostCommand, ...] = ()
        link = state.links.get(vrf.name)
        if link is not None:
            # NetworkManager and the kernel cannot change a VRF's table in place.
            cmds += (Ip(("link", "del", "dev", name)),)
            old = link.vrf_table
            # Nor a table another VRF on the host uses, declared here or not.
            others = {v.vrf_table for n, v in state.vrf_links.items() if n != vrf.name}
            if link.is_vrf and old is not None and old not in tables_in_use | others:
                # The old table would keep its unreachable guards and static routes.
                cmds += tuple(
                    Ip(("route", "flush", "table", str(old)), family) for family in (4, 6)
                )
        return (*cmds, create)

    steps: list[Step] = [
        _DynamicStep(
            what=f"create VRF {name} with table {table}: missing, or on another table",
            holds=device_ok,
            commands=(),
            shell_check=(
                f"ip -d link show dev {_q(name)} 2>/dev/null | {_has(f' vrf table {table} ')}"
            ),
            shell_repair=(
                f"ip link del dev {_q(name)} 2>/dev/null || :",
                to_shell(create.argv),
            ),
            dynamic=recreate,
        ),
        Step(
            what=f"VRF {name} is not up",
            holds=_link_up(name, also=device_ok),
            commands=(Ip(("link", "set", "dev", name, "up")),),
            shell_check=f"ip link show dev {_q(name)} 2>/dev/null | grep -Eq '[<,]UP[,>]'",
        ),
    ]
    for family in (4, 6):
        steps.append(
            Step(
                what=(
                    f"table {table} lacks the IPv{family} unreachable default at metric "
                    f"{UNREACHABLE_METRIC}: lookups would fall through to the main table"
                ),
                holds=_route_present(family, vrf.table, "default", None, kind="unreachable"),
                commands=(
                    Ip(
                        ("route", "replace", "unreachable", "default")
                        + ("metric", str(UNREACHABLE_METRIC), "table", table),
                        family,
                    ),
                ),
                shell_check=(
                    f"ip {_fam(family)} route show table {table} type unreachable exact "
                    f"{_any_default(family)} 2>/dev/null | {_has(f'metric {UNREACHABLE_METRIC}')}"
                ),
            )
        )
    return steps


def _port_steps(vrf: Vrf, port: Interface) -> list[Step]:
    name, p = vrf.name, port.name
    enslaved = _enslaved(p, vrf)
    steps: list[Step] = [
        Step(
            what=f"{p} is not in VRF {name}",
            holds=enslaved,
            commands=(Ip(("link", "set", "dev", p, "master", name)),),
            shell_check=f"ip link show dev {_q(p)} 2>/dev/null | {_has(f' master {name} ')}",
        ),
        Step(
            what=f"{p} is not up in VRF {name}",
            holds=_link_up(p, also=enslaved),
            commands=(Ip(("link", "set", "dev", p, "up")),),
            shell_check=f"ip link show dev {_q(p)} 2>/dev/null | grep -Eq '[<,]UP[,>]'",
        ),
    ]
    for address in (port.ipv4, port.ipv6):
        if address is None:
            continue
        fam = address.version
        word = _addr_word(fam)
        steps.append(
            Step(
                what=f"{p} lacks address {address} in VRF {name}",
                holds=_has_address(p, address, vrf),
                commands=(Ip(("addr", "replace", str(address), "dev", p), fam),),
                shell_check=(
                    f"ip {_fam(fam)} addr show dev {_q(p)} 2>/dev/null | "
                    f"grep -qF -- {_q(f'{word} {address} ')}"
                ),
            )
        )
    return steps


def _vrf_route_steps(spec: HostSpec, vrf: Vrf) -> list[Step]:
    table = str(vrf.table)
    steps: list[Step] = []
    for family in (4, 6):
        extras = _vrf_table_extras(vrf, family)
        steps.append(
            _DynamicStep(
                what=f"undeclared IPv{family} gateway route in table {table}",
                holds=_none_found(extras),
                commands=(),
                # First, so a `replace` below never races a delete of the same route key.
                # At boot only our profiles have put routes there: nothing to clean.
                shell_check="true",
                shell_repair=(),
                dynamic=_deletes_of(extras),
            )
        )
        for dst, gateway in _wanted_vrf_routes(vrf, family):
            shown = _route_dst_text(dst, family) if dst != "default" else "default"
            exact = _any_default(family) if dst == "default" else dst
            port = spec.nexthop_port(vrf, ip_address(gateway))
            dev = ("dev", port.name) if port is not None and needs_dev(ip_address(gateway)) else ()
            steps.append(
                Step(
                    what=f"table {table} lacks {shown} via {gateway}",
                    holds=_route_present(family, vrf.table, dst, gateway),
                    commands=(
                        Ip(("route", "replace", dst, "via", gateway, *dev, "table", table), family),
                    ),
                    shell_check=(
                        f"ip {_fam(family)} route show table {table} exact {_q(exact)} 2>/dev/null"
                        f" | grep -qF -- {_q(f'{shown} via {gateway} ')}"
                    ),
                )
            )
    return steps


def _l3mdev_rule_steps() -> list[Step]:
    """The rule that sends a VRF's lookups to its table. The kernel adds it with the first VRF
    ever created in a network namespace, and never again: once deleted (by hand, or by our
    rollback on a host that had no VRF before), VRF-bound sockets would look up the main
    table and a service inside the VRF could not answer. Added before the VRF, so the
    kernel's own add, on a first VRF, finds it there and lets it be: only with the same
    `protocol kernel`, or the namespace would end up with the rule twice."""
    steps = []
    for family in (4, 6):

        def holds(state: HostState, family: int = family) -> bool:
            return any(r.family == family and r.l3mdev for r in state.rules)

        steps.append(
            Step(
                what=f"no IPv{family} l3mdev rule: VRF-bound sockets would use the main table",
                holds=holds,
                commands=(
                    Ip(("rule", "add", "pref", "1000", "l3mdev", "protocol", "kernel"), family),
                ),
                shell_check=f"ip {_fam(family)} rule show 2>/dev/null | {_has('l3mdev')}",
            )
        )
    return steps


def present_steps(spec: HostSpec) -> list[Step]:
    """Every step that brings up the host's present VRFs, in a safe order."""
    if not spec.present_vrfs:
        return []
    steps: list[Step] = []
    for key, value in {**l3mdev_sysctls(spec), **port_sysctls(spec)}.items():
        steps.append(_sysctl_step(key, value))
    steps += _main_default_steps(spec)
    tables = frozenset(v.table for v in spec.present_vrfs)
    steps += _l3mdev_rule_steps()
    for vrf in spec.present_vrfs:
        steps += _vrf_device_steps(vrf, tables)
    steps += _stray_main_default_steps(spec)
    for vrf in spec.present_vrfs:
        for port_name in vrf.ports:
            port = spec.interface(port_name)
            if port is not None:
                steps += _port_steps(vrf, port)
    for vrf in spec.present_vrfs:
        steps += _vrf_route_steps(spec, vrf)
    return steps


def replaced_vrfs(spec: HostSpec) -> tuple[Vrf, ...]:
    """Absent VRFs whose port or table a present VRF takes over (a renamed VRF).

    They must be torn down before the present VRFs are built, not after: the other way round,
    the teardown would release the port the new VRF has just taken."""
    ports = {p for vrf in spec.present_vrfs for p in vrf.ports}
    tables = {vrf.table for vrf in spec.present_vrfs}
    return tuple(
        vrf for vrf in spec.absent_vrfs if vrf.table in tables or ports.intersection(vrf.ports)
    )


def after_teardown(spec: HostSpec, vrfs: Iterable[Vrf], state: HostState) -> HostState:
    """The host as the kernel leaves it once ``vrfs`` are torn down, for planning what follows.

    Releasing a port cycles it, which drops every route through it; deleting the VRF device
    drops the routes through the device; a table no present VRF uses is flushed."""
    links = dict(state.links)
    gone: set[str] = set()
    flushed: set[int] = set()
    kept_tables = {v.table for v in spec.present_vrfs}
    for vrf in vrfs:
        if vrf.name in links and links[vrf.name].is_vrf:
            gone.add(vrf.name)
            del links[vrf.name]
        for name, link in list(links.items()):
            if link.master == vrf.name:
                gone.add(name)
                iface = spec.interface(name)
                declared = tuple(a for a in (iface.ipv4, iface.ipv6) if a) if iface else ()
                addresses = tuple(dict.fromkeys((*link.addresses, *declared)))
                links[name] = replace(link, master=None, addresses=addresses)
        if vrf.table not in kept_tables:
            flushed.add(vrf.table)
    routes = tuple(r for r in state.routes if r.dev not in gone and r.table not in flushed)
    return replace(state, links=links, routes=routes)


def teardown_steps(spec: HostSpec, vrfs: Iterable[Vrf] | None = None) -> list[Step]:
    """Remove VRFs marked absent: release ports (addresses stay), delete device, empty table.

    ``vrfs``: only these absent VRFs (default: all of them)."""
    steps: list[Step] = []
    kept_tables = {v.table for v in spec.present_vrfs}
    for vrf in spec.absent_vrfs if vrfs is None else vrfs:
        for port_name in vrf.ports:
            port = spec.interface(port_name)
            steps.append(
                Step(
                    what=f"{port_name} still in VRF {vrf.name}, which is marked absent",
                    holds=_released(port_name, vrf.name),
                    commands=(Ip(("link", "set", "dev", port_name, "nomaster")),),
                    # Checked on the host only where NetworkManager may have done it first.
                    shell_check=(
                        f"! ip link show dev {_q(port_name)} 2>/dev/null | "
                        f"{_has(f' master {vrf.name} ')}"
                    ),
                )
            )
            for address in (port.ipv4, port.ipv6) if port else ():
                if address is None:
                    continue
                steps.append(
                    Step(
                        what=f"{port_name} lacks address {address}",
                        holds=_released_with(port_name, vrf.name, address),
                        commands=(
                            Ip(
                                ("addr", "replace", str(address), "dev", port_name), address.version
                            ),
                        ),
                        shell_check=(
                            f"ip {_fam(address.version)} addr show dev {_q(port_name)} "
                            f"2>/dev/null | "
                            f"{_has(f'{_addr_word(address.version)} {address} ')}"
                        ),
                    )
                )
        steps.append(
            Step(
                what=f"VRF {vrf.name} still exists but is marked absent",
                holds=_no_vrf_device(vrf.name),
                commands=(Ip(("link", "del", "dev", vrf.name)),),
                shell_check=f"! ip link show dev {_q(vrf.name)} >/dev/null 2>&1",
            )
        )
        if vrf.table in kept_tables:
            # A present VRF uses this table now: its own steps keep the table's content.
            continue
        for family in (4, 6):
            steps.append(
                Step(
                    what=(
                        f"table {vrf.table} still has IPv{family} routes of the absent VRF "
                        f"{vrf.name}"
                    ),
                    holds=_table_empty(vrf.table, family),
                    commands=(Ip(("route", "flush", "table", str(vrf.table)), family),),
                    # A route of a VRF profile that names no device (the unreachable
                    # default) outlives NetworkManager's deletion of the VRF.
                    shell_check=(
                        f'[ -z "$(ip {_fam(family)} route show table {vrf.table} 2>/dev/null)" ]'
                    ),
                )
            )
    return steps
