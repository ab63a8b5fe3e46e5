"""Checks of a host's real state against its spec that must pass before anything changes.

A fleet file can be valid and still not fit the host (a NIC named ens3 where the file says
eth2). Such a host is refused with a message naming the host and the fleet key, and is not
touched; the rest of the fleet goes on.
"""

from __future__ import annotations

from .hoststate import HostState
from .model import HostSpec
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
    return problems
