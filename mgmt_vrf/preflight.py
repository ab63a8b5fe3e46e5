"""Checks of a host's real state against its spec that must pass before anything changes.

A fleet file can be valid and still not fit the host (a NIC named ens3 where the file says
eth2). Such a host is refused with a message naming the host and the fleet key, and is not
touched; the rest of the fleet goes on.
"""

from __future__ import annotations

from .host_commands import route_match_words
from .hoststate import HostState, RouteEntry
from .leaks import first_prefs, leaks
from .model import UNREACHABLE_METRIC, HostSpec
from .paths import UNIT_NAME
from .plan import resolve_backend
from .port_profile import port_profile
from .probe import BOOT_UNIT_WAIT
from .profile_text import ProfileSyntaxError
from .services import unit_problems
from .steps import replaced_vrfs


def host_problems(spec: HostSpec, state: HostState) -> list[str]:
    where = f"host {spec.name}"
    if not state.links:
        return [
            f"{where}: the combined fact found no network devices; is iproute2 (`ip`) installed "
            "and does `ip -j link show` work there?"
        ]
    problems = []
    if state.unit_busy:
        problems.append(
            f"{where}: {UNIT_NAME} (our boot-time repair) is still running after "
            f"{BOOT_UNIT_WAIT} s, so the host's state is half-built; see "
            f"`journalctl -u {UNIT_NAME}` there, then run the deploy again"
        )
    have = ", ".join(sorted(state.links))
    owned_tables = {vrf.table: vrf.name for vrf in spec.present_vrfs}
    for vrf in spec.present_vrfs:
        link = state.links.get(vrf.name)
        if link is not None and not link.is_vrf:
            problems.append(
                f"{where}: vrfs.{vrf.name}: a {link.kind or 'network'} device named {vrf.name} "
                "already exists and is not a VRF; choose another VRF name or remove that device"
            )
        for port in vrf.ports:
            plink = state.links.get(port)
            if plink is None:
                problems.append(
                    f"{where}: vrfs.{vrf.name}.ports: {port} does not exist on the host (it has "
                    f"{have}); fix the interface name in the fleet file"
                )
                continue
            master = state.links.get(plink.master) if plink.master else None
            if master is not None and not master.is_vrf:
                problems.append(
                    f"{where}: vrfs.{vrf.name}.ports: {port} is a port of {master.name} "
                    f"({master.kind or 'unknown kind'}); release it there first, we only move "
                    "ports between VRFs"
                )
    # A VRF marked absent gives its table up before the new one is built (a rename), when
    # the plan knows it does: its entry names that table.
    leaving = {vrf.name: vrf.table for vrf in replaced_vrfs(spec)}
    absent = {vrf.name: vrf.table for vrf in spec.absent_vrfs}
    for name, link in state.vrf_links.items():
        owner = owned_tables.get(link.vrf_table or -1)
        if owner is None or owner == name or leaving.get(name) == link.vrf_table:
            continue
        if name in absent:
            problems.append(
                f"{where}: vrfs.{name}.table: {name} is marked absent but holds table "
                f"{link.vrf_table} on the host, which vrfs.{owner} wants; its entry says "
                f"table {absent[name]}: set it to {link.vrf_table} so {name} gives the table "
                "up first"
            )
        else:
            problems.append(
                f"{where}: vrfs.{owner}.table: table {link.vrf_table} already belongs to VRF "
                f"{name} on the host; pick another table or mark {name} absent in the fleet file"
            )
    service = spec.main_default_interface
    if service is not None and service.name not in state.links:
        problems.append(
            f"{where}: interfaces.{service.name}: the main-default interface does not exist on "
            f"the host (it has {have})"
        )
    if spec.backend == "networkmanager" and not state.network_manager.installed:
        problems.append(
            f"{where}: backend: 'networkmanager' is set but NetworkManager is not installed; "
            "use backend = 'network-scripts' or 'auto'"
        )
    if spec.backend == "network-scripts" and not state.network_scripts_installed:
        problems.append(
            f"{where}: backend: 'network-scripts' is set but the legacy network-scripts package "
            "is not installed; use backend = 'networkmanager' or 'auto'"
        )
    backend = resolve_backend(spec, state)
    for vrf in spec.vrfs:
        for port in vrf.ports:
            try:
                port_profile(state, port, backend).parsed()
            except ProfileSyntaxError as e:
                problems.append(
                    f"{where}: vrfs.{vrf.name}.ports: {port}'s profile cannot be edited "
                    f"without losing what it says: {e}"
                )
    problems += unit_problems(spec, state)
    problems += _tables_in_use(spec, state, where)
    problems += _l3mdev_rule_order(spec, state, where)
    problems += _vrf_module(spec, state, where)
    problems += _socket_matching(spec, state, where)
    problems += [f"{where}: {leak}" for leak in leaks(spec, state)]
    return problems


def _left_by_a_vrf(route: RouteEntry) -> bool:
    # A VRF profile's unreachable default names no device, so it outlives NetworkManager's
    # deletion of the VRF; it is the guard our own VRF puts there again.
    return route.type == "unreachable" and route.is_default and route.metric == UNREACHABLE_METRIC


def _tables_in_use(spec: HostSpec, state: HostState, where: str) -> list[str]:
    """A table no VRF holds yet but that routes or rules already use belongs to someone else
    (policy routing, another tool): a VRF on it would take those routes over, and our own
    steps would delete the gateways it does not declare."""
    problems = []
    held = {link.vrf_table for link in state.vrf_links.values()}
    for vrf in spec.present_vrfs:
        if vrf.table in held:
            continue
        routes = [r for r in state.routes_in(vrf.table) if not _left_by_a_vrf(r)]
        rules = [r for r in state.rules if r.table == str(vrf.table) and not r.l3mdev]
        if not routes and not rules:
            continue
        found = [
            "route " + " ".join(([] if r.type == "unicast" else [r.type]) + [*route_match_words(r)])
            for r in routes
        ]
        found += [f"IPv{r.family} rule pref {r.priority}" for r in rules]
        shown = "; ".join(found[:4]) + (f"; {len(found) - 4} more" if len(found) > 4 else "")
        problems.append(
            f"{where}: vrfs.{vrf.name}.table: table {vrf.table} is already used on the host "
            f"and no VRF holds it ({shown}); a VRF on it would take those routes over. Pick a "
            f"table that is unused there, or empty this one first (`ip route flush table "
            f"{vrf.table}`, `ip rule del pref N`) if nothing needs it"
        )
    return problems


def _l3mdev_rule_order(spec: HostSpec, state: HostState, where: str) -> list[str]:
    """The l3mdev rule must come before the main table's: after it, a packet that arrives on
    a VRF port is routed by the main table first (and leaves by the service side)."""
    if not spec.present_vrfs:
        return []
    problems = []
    for family in (4, 6):
        # Against the main table's catch-all rule: a narrower one before the l3mdev rule is
        # a leak of its own (leaks.py).
        pref, main = first_prefs(state, family)
        if pref is not None and main is not None and pref > main:
            problems.append(
                f"{where}: the IPv{family} l3mdev rule is at pref {pref}, after the main "
                f"table's rule at pref {main}: traffic of every VRF would be routed by the "
                "main table first. Put it back where the kernel puts it: `ip "
                f"-{family} rule add pref 1000 l3mdev protocol kernel && ip -{family} rule del "
                f"pref {pref} l3mdev`"
            )
    return problems


# An `install vrf CMD` line whose command loads nothing (hardening baselines write these).
_REFUSING_INSTALLS = frozenset({"true", "false"})


def _vrf_module(spec: HostSpec, state: HostState, where: str) -> list[str]:
    """Without the vrf module, creating the VRF fails half way through a change (the kernel
    says only "Unknown device type"); a module that loads now but not at boot fails later."""
    kernel = state.kernel
    new = [vrf.name for vrf in spec.present_vrfs if vrf.name not in state.vrf_links]
    if not new or kernel.vrf_module is not False:
        return []
    key = f"{where}: vrfs.{new[0]}"
    if kernel.modules_disabled:
        return [
            f"{key}: the vrf kernel module is not loaded and kernel.modules_disabled = 1 "
            "forbids loading it until the host reboots; have it loaded at boot (`echo vrf > "
            "/etc/modules-load.d/vrf.conf`, which runs before modules are disabled), reboot, "
            "then run the deploy again"
        ]
    alias, name = kernel.modprobe_alias, kernel.modprobe_name
    if alias is None or alias[0] == 127:
        return []  # no modprobe to ask: the kernel's own request tells us, if it fails
    said = alias[1].split()
    if alias[0] != 0:
        return [
            f"{key}: this kernel has no vrf module (`modprobe -n rtnl-link-vrf` says: "
            f"{alias[1]}): it was built without CONFIG_NET_VRF, or the package holding "
            "vrf.ko for the running kernel is not installed (`dnf provides '*/vrf.ko*'`); "
            "install it, or boot a kernel that has it"
        ]
    if said[:1] == ["install"] and said[1:2] and said[1].rsplit("/", 1)[-1] in _REFUSING_INSTALLS:
        return [
            f"{key}: the modprobe configuration runs `{' '.join(said[1:])}` in place of "
            "loading the vrf module (an `install vrf ...` line, as hardening baselines write; "
            "`grep -rw vrf /etc/modprobe.d /usr/lib/modprobe.d` finds it), so no VRF can be "
            "created; remove that line, then run the deploy again"
        ]
    if not said and name is not None and name[0] == 0 and "insmod" in name[1].split():
        return [
            f"{key}: the vrf module is blacklisted (a `blacklist vrf` line; `grep -rw vrf "
            "/etc/modprobe.d /usr/lib/modprobe.d` finds it), so the kernel does not load it "
            "when a VRF device is created, now or at boot; remove that line, then run the "
            "deploy again"
        ]
    return []


def _socket_matching(spec: HostSpec, state: HostState, where: str) -> list[str]:
    """Once the kernel turns cgroup2 socket matching off, `ip vrf exec` still succeeds but
    its BPF program never runs: the services would start in the default VRF, unnoticed."""
    line = state.kernel.socket_matching_off
    if not line or state.cgroup not in ("v1", "hybrid"):
        return []
    counts = ", ".join(f"{name} {n}" for name, n in sorted(state.kernel.net_cgroups.items()))
    in_use = f" (cgroups now: {counts})" if counts else ""
    return [
        f"{where}: vrfs.{vrf.name}.services: the kernel has turned cgroup2 socket matching "
        f"off (its log says: {line.strip()}), so ip vrf exec would start "
        f"{', '.join(vrf.services)} in the default VRF without any error. A net_cls or "
        f"net_prio cgroup v1 controller was used{in_use} and it stays off until reboot: stop "
        "what writes net_cls.classid or net_prio.ifpriomap or joins tasks to net_prio "
        "cgroups (container runtimes on cgroup v1 do), or boot with cgroup v2 "
        "(systemd.unified_cgroup_hierarchy=1); reboot, then run the deploy again"
        for vrf in spec.present_vrfs
        if vrf.services
    ]
