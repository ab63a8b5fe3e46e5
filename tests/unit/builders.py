"""Specs and host states for planner tests, in documentation address ranges.

The host mirrors the seed blog's machine: eth0 service segment with the main defaults,
eth1 access segment without gateway, eth2 management port of VRF mgmt0 in table 10.
"""

from __future__ import annotations

from dataclasses import replace
from ipaddress import ip_address, ip_interface
from typing import Literal

from mgmt_vrf import paths
from mgmt_vrf.hoststate import (
    MAIN_TABLE,
    FileState,
    HostState,
    Link,
    NetworkManager,
    Profile,
    RouteEntry,
    RuleEntry,
)
from mgmt_vrf.model import UNREACHABLE_METRIC, HostSpec, Interface, Route, Ssh, Vrf
from mgmt_vrf.plan import Plan, RunCommand, WriteFile, desired_files
from mgmt_vrf.port_profile import new_port_uuid, port_profile

SERVICE_GW4, SERVICE_GW6 = "198.51.100.1", "2001:db8:100::1"
MGMT_GW4, MGMT_GW6 = "203.0.113.1", "2001:db8:1::1"
ETH2_V4, ETH2_V6 = "203.0.113.10/24", "2001:db8:1::10/64"


def seed_spec(**changes: object) -> HostSpec:
    spec = HostSpec(
        name="alma1",
        ssh=Ssh("127.0.0.1", port=2201),
        interfaces=(
            Interface(
                "eth0",
                ip_interface("198.51.100.10/24"),  # type: ignore[arg-type]
                ip_interface("2001:db8:100::10/64"),  # type: ignore[arg-type]
                ip_address(SERVICE_GW4),  # type: ignore[arg-type]
                ip_address(SERVICE_GW6),  # type: ignore[arg-type]
                main_default=True,
            ),
            Interface(
                "eth1",
                ip_interface("192.0.2.10/25"),  # type: ignore[arg-type]
                ip_interface("2001:db8:52::10/64"),  # type: ignore[arg-type]
            ),
            Interface(
                "eth2",
                ip_interface(ETH2_V4),  # type: ignore[arg-type]
                ip_interface(ETH2_V6),  # type: ignore[arg-type]
            ),
        ),
        vrfs=(
            Vrf(
                "mgmt0",
                10,
                ("eth2",),
                ip_address(MGMT_GW4),  # type: ignore[arg-type]
                ip_address(MGMT_GW6),  # type: ignore[arg-type]
            ),
        ),
    )
    return replace(spec, **changes)  # type: ignore[arg-type]


def with_route(spec: HostSpec, to: str, via: str) -> HostSpec:
    vrf = spec.vrfs[0]
    route = Route(ip_interface(to).network, ip_address(via))  # type: ignore[arg-type]
    return replace(spec, vrfs=(replace(vrf, routes=vrf.routes + (route,)),))


def _addr(*values: str) -> tuple:
    return tuple(ip_interface(v) for v in values)


def clean_state(**changes: object) -> HostState:
    """A freshly booted host: addresses on all three NICs, main defaults via eth0, no VRF."""
    state = HostState(
        links={
            "lo": Link("lo", 1, up=True),
            "eth0": Link(
                "eth0", 2, up=True, addresses=_addr("198.51.100.10/24", "2001:db8:100::10/64")
            ),
            "eth1": Link(
                "eth1", 3, up=True, addresses=_addr("192.0.2.10/25", "2001:db8:52::10/64")
            ),
            "eth2": Link("eth2", 4, up=True, addresses=_addr(ETH2_V4, ETH2_V6)),
        },
        routes=(
            RouteEntry(4, MAIN_TABLE, "default", gateway=SERVICE_GW4, dev="eth0", metric=100),
            RouteEntry(6, MAIN_TABLE, "default", gateway=SERVICE_GW6, dev="eth0", metric=1024),
            RouteEntry(4, MAIN_TABLE, "203.0.113.0/24", dev="eth2", protocol="kernel"),
        ),
        sysctls={
            "net.ipv4.tcp_l3mdev_accept": "0",
            "net.ipv4.udp_l3mdev_accept": "0",
            "net.ipv6.conf.eth2.keep_addr_on_down": "0",
        },
        network_manager=NetworkManager(installed=True, version="1.40.16", running=True),
        systemd_running=True,
        os_id="almalinux",
        os_version="8.7",
    )
    return replace(state, **changes)  # type: ignore[arg-type]


BLOG_VRF_PROFILE = paths.ifcfg("vrf.eth2")


def keyfile_of(port: str) -> str:
    """Where a new profile of a port goes on a NetworkManager host: a keyfile."""
    return f"{paths.SYSTEM_CONNECTIONS}/{port}.nmconnection"


def up_new(port: str) -> str:
    """The activation of a port's new profile: by the uuid we gave it."""
    return f"nmcli --wait 90 connection up uuid {new_port_uuid(port)}"


def broken_state() -> HostState:
    """The blog after reboot: two profiles for eth2, its defaults in the main table, no VRF."""
    state = clean_state()
    return replace(
        state,
        routes=state.routes
        + (
            RouteEntry(4, MAIN_TABLE, "default", gateway=MGMT_GW4, dev="eth2", metric=102),
            RouteEntry(6, MAIN_TABLE, "default", gateway=MGMT_GW6, dev="eth2", metric=1024),
        ),
        profiles=(
            Profile(paths.ifcfg("eth2"), "eth2", "eth2"),
            Profile(BLOG_VRF_PROFILE, "eth2", "vrf.eth2", vrf="mgmt0"),
        ),
        files={
            paths.ifcfg("eth2"): FileState(
                paths.ifcfg("eth2"), b"DEVICE=eth2\nIPV6_AUTOCONF=yes\n"
            ),
            BLOG_VRF_PROFILE: FileState(BLOG_VRF_PROFILE, b"DEVICE=eth2\nVRF=mgmt0\n"),
            paths.route4("vrf.eth2"): FileState(
                paths.route4("vrf.eth2"),
                b"ADDRESS=0.0.0.0\nNETMASK=0.0.0.0\nGATEWAY0=203.0.113.1\n",
            ),
            paths.route6("vrf.eth2"): FileState(
                paths.route6("vrf.eth2"), b"::/0 via 2001:db8:1::1\n"
            ),
        },
    )


# An AlmaLinux 8 host's own profile of eth2, as the lab's hosts carry it.
INSTALLER_IFCFG = "TYPE=Ethernet\nBOOTPROTO=none\nNAME=eth2\nDEVICE=eth2\nONBOOT=yes\n"


def converged_state(
    spec: HostSpec | None = None, backend: str = "networkmanager", ifcfg: bool = False
) -> HostState:
    """The host after a deploy; with ``ifcfg``, of a host whose eth2 had an ifcfg profile
    (AlmaLinux 8), else of one where the deploy wrote a new profile."""
    spec = spec or seed_spec()
    vrf = spec.vrfs[0]
    before = None
    if ifcfg:
        path = paths.ifcfg("eth2")
        before = clean_state(
            profiles=(Profile(path, "eth2", "eth2"),),
            files={path: FileState(path, INSTALLER_IFCFG.encode())},
        )
    own = port_profile(before, "eth2", backend)
    files = {
        path: FileState(path, desired[0].encode())
        for path, desired in desired_files(spec, backend, before).items()
        if desired is not None
    }
    state = clean_state()
    links = dict(state.links)
    links[vrf.name] = Link(vrf.name, 5, kind="vrf", vrf_table=vrf.table, up=True)
    links["eth2"] = replace(links["eth2"], master=vrf.name)
    table = vrf.table
    routes = [r for r in state.routes if r.dev != "eth2"] + [
        RouteEntry(4, table, "default", gateway=MGMT_GW4, dev="eth2"),
        RouteEntry(6, table, "default", gateway=MGMT_GW6, dev="eth2", metric=1024),
        RouteEntry(4, table, "default", type="unreachable", metric=UNREACHABLE_METRIC),
        RouteEntry(6, table, "default", type="unreachable", metric=UNREACHABLE_METRIC),
        RouteEntry(4, table, "203.0.113.0/24", dev="eth2", protocol="kernel"),
    ]
    for route in vrf.routes:
        family: Literal[4, 6] = 4 if route.family == 4 else 6
        routes.append(RouteEntry(family, table, str(route.to), gateway=str(route.via)))
    return replace(
        state,
        links=links,
        routes=tuple(routes),
        # The kernel's own, added with the first VRF.
        rules=(RuleEntry(4, 1000, l3mdev=True), RuleEntry(6, 1000, l3mdev=True)),
        sysctls={
            "net.ipv4.tcp_l3mdev_accept": "1",
            "net.ipv4.udp_l3mdev_accept": "1",
            "net.ipv6.conf.eth2.keep_addr_on_down": "1",
        },
        files=files,
        profiles=(
            Profile(
                own.path,
                "eth2",
                "eth2",
                uuid=own.handle[1] if own.handle[0] == "uuid" else None,
                vrf=vrf.name,
            ),
        ),
        unit_enabled=True,
    )


def summary(result: Plan) -> list[str]:
    """A plan as a reviewer reads it: each command, and `write PATH` / `remove PATH`."""
    out = []
    for change in result.changes:
        if isinstance(change, RunCommand):
            out.append(change.shell)
        elif isinstance(change, WriteFile):
            out.append(f"write {change.path}")
        else:
            out.append(f"remove {change.path}")
    return out
