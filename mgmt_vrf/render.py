"""Contents of every file we push, rendered from the templates in files/."""

from __future__ import annotations

import uuid
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

import jinja2

from . import paths
from .commands import sh_quote
from .model import UNREACHABLE_METRIC, HostSpec, Interface, Vrf, needs_dev
from .steps import l3mdev_sysctls, port_sysctls, present_steps, sysctl_slash_key

TEMPLATES = Path(__file__).resolve().parent.parent / "files"
HEADER = (
    "Managed by mgmt-vrf (pyinfra). Edits here are replaced on the next deploy; "
    f"earlier versions are kept in {paths.BACKUP_DIR}."
)
# Stable per VRF name, so re-rendering never changes the file and NetworkManager keeps the
# same connection across deploys.
_UUID_NAMESPACE = uuid.UUID("6f2a4c1e-0d3b-5e7f-9a41-2c8d5b7e1f30")

_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(TEMPLATES)),
    keep_trailing_newline=True,
    undefined=jinja2.StrictUndefined,
    autoescape=False,
)
# Every value a shell reads (scripts, and ifcfg files, which network-scripts source) goes
# through `q`; text that lands in a comment must stay on that comment's line.
_env.filters["q"] = sh_quote
_env.filters["oneline"] = lambda text: " ".join(str(text).split())


def _render(template: str, **values: object) -> str:
    return _env.get_template(template).render(header=HEADER, **values)


def vrf_keyfile(vrf: Vrf) -> str:
    return _render(
        "vrf.nmconnection.j2",
        vrf=vrf,
        uuid=uuid.uuid5(_UUID_NAMESPACE, f"vrf:{vrf.name}"),
        unreachable_metric=UNREACHABLE_METRIC,
    )


def port_ifcfg(spec: HostSpec, iface: Interface, vrf: Vrf | None, backend: str) -> str:
    """The one profile of a port. With NetworkManager the port's gateways go in the profile
    (NetworkManager puts them in the VRF's table); initscripts would put them in the main
    table, so for them the defaults live in the route files with an explicit table."""
    with_gateway = vrf is not None and backend == "networkmanager"

    def through_this_port(gateway: IPv4Address | IPv6Address | None) -> object:
        if not with_gateway or vrf is None or gateway is None:
            return None
        port = spec.nexthop_port(vrf, gateway)
        return gateway if port is not None and port.name == iface.name else None

    return _render(
        "ifcfg-port.j2",
        iface=iface,
        vrf=vrf,
        gateway4=through_this_port(vrf.gateway4) if vrf else None,
        gateway6=through_this_port(vrf.gateway6) if vrf else None,
    )


def port_route_lines(
    spec: HostSpec, iface: Interface, vrf: Vrf, family: int, backend: str
) -> list[str]:
    """Line-form routes of one port: those whose next hop is reached through it."""
    if (iface.ipv4 if family == 4 else iface.ipv6) is None:
        return []
    hops: list[tuple[str, IPv4Address | IPv6Address]] = []
    gateway = vrf.gateway4 if family == 4 else vrf.gateway6
    if backend != "networkmanager" and gateway is not None:
        hops.append(("default", gateway))
    hops += [(str(route.to), route.via) for route in vrf.routes if route.family == family]
    lines = []
    for to, via in hops:
        port = spec.nexthop_port(vrf, via)
        if port is None or port.name != iface.name:
            continue
        dev = f" dev {iface.name}" if needs_dev(via) else ""
        lines.append(f"{to} via {via}{dev} table {vrf.table}")
    return lines


def route_file(lines: list[str]) -> str:
    return _render("route-port.j2", lines=lines)


def sysctl_dropin(spec: HostSpec) -> str:
    values = {**l3mdev_sysctls(spec), **port_sysctls(spec)}
    items = [(sysctl_slash_key(k), v) for k, v in values.items()]
    return _render("sysctl.conf.j2", sysctls=items)


def converge_script(spec: HostSpec) -> str:
    steps = [
        {
            "what": step.what,
            "shell_check": step.shell_check,
            "repair": step.repair_lines(),
        }
        for step in present_steps(spec)
        if step.repair_lines()
    ]
    return _render(
        "mgmt-vrf-converge.sh.j2",
        steps=steps,
        vrfs=_vrf_names(spec),
        armed=paths.ARMED,
        armed_this_boot=paths.ARMED_THIS_BOOT,
        rollback=paths.ROLLBACK_SCRIPT,
    )


def unit(spec: HostSpec) -> str:
    return _render("mgmt-vrf.service.j2", script=paths.CONVERGE_SCRIPT, vrfs=_vrf_names(spec))


def _vrf_names(spec: HostSpec) -> str:
    return ", ".join(v.name for v in spec.present_vrfs)


def exec_wrapper(spec: HostSpec) -> str:
    names = [vrf.name for vrf in spec.present_vrfs]
    return _render(
        "mgmt-vrf-exec.sh.j2",
        vrfs=names,
        default=names[0],
        boot_unit=paths.UNIT_NAME,
        converge=paths.CONVERGE_SCRIPT,
    )


def service_dropin(unit: str, vrf: str, exec_start: list[str]) -> str:
    return _render(
        "service-dropin.conf.j2",
        unit=unit,
        vrf=vrf,
        exec_start=exec_start,
        wrapper=paths.EXEC_WRAPPER,
        boot_unit=paths.UNIT_NAME,
    )
