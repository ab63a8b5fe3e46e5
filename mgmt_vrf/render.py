"""Contents of every file we push, rendered from the templates in files/."""

from __future__ import annotations

import re
import uuid
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

import jinja2

from . import paths
from .commands import sh_quote
from .model import UNREACHABLE_METRIC, HostSpec, Interface, Vrf, needs_dev
from .probe import SOCKET_MATCHING_OFF
from .profile_text import Ifcfg, Keyfile
from .steps import l3mdev_sysctls, port_sysctls, present_steps, sysctl_slash_key

# files/ of the checkout; installed, the wheel carries the same directory as mgmt_vrf/files.
_HERE = Path(__file__).resolve().parent
TEMPLATES = _HERE / "files" if (_HERE / "files").is_dir() else _HERE.parent / "files"
HEADER = (
    "Managed by mgmt-vrf (pyinfra). Edits here are replaced on the next deploy; "
    f"earlier versions are kept in {paths.BACKUP_DIR}."
)
PORT_HEADER = (
    "Managed by mgmt-vrf (pyinfra): each deploy sets the VRF port's own keys here (VRF, "
    "addresses, gateways, DEFROUTE); every other key and comment is kept. Earlier versions are "
    f"kept in {paths.BACKUP_DIR}."
)
PORT_KEYFILE_HEADER = (
    "Managed by mgmt-vrf (pyinfra): each deploy sets the VRF port's own keys here (controller, "
    "interface-name, method, addresses, gateways, routes, never-default); every other key and "
    f"comment is kept. Earlier versions are kept in {paths.BACKUP_DIR}."
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


def stable_uuid(what: str) -> str:
    return str(uuid.uuid5(_UUID_NAMESPACE, what))


def vrf_keyfile(vrf: Vrf) -> str:
    return _render(
        "vrf.nmconnection.j2",
        vrf=vrf,
        uuid=stable_uuid(f"vrf:{vrf.name}"),
        unreachable_metric=UNREACHABLE_METRIC,
    )


def port_gateways(
    spec: HostSpec, iface: Interface, vrf: Vrf | None, backend: str
) -> tuple[str | None, str | None]:
    """The VRF's IPv4 and IPv6 gateways that a port's profile carries: those reached through
    this port. With NetworkManager the gateways go in the profile (NetworkManager puts them
    in the VRF's table); initscripts would put them in the main table, so for them the
    defaults live in the route files with an explicit table."""
    if vrf is None or backend != "networkmanager":
        return None, None

    def through_this_port(gateway: IPv4Address | IPv6Address | None) -> str | None:
        port = spec.nexthop_port(vrf, gateway) if gateway is not None else None
        return str(gateway) if port is not None and port.name == iface.name else None

    return through_this_port(vrf.gateway4), through_this_port(vrf.gateway6)


# Keys of a port's ifcfg profile that the fleet file decides, in the order a new profile
# lists them; None removes the key. Every other key of the host's profile is the operator's
# (MTU, ZONE, DNS*, ETHTOOL_OPTS, MACADDR, IPV6_PRIVACY, comments, ...) and is kept.
def port_ifcfg_keys(
    spec: HostSpec, iface: Interface, vrf: Vrf | None, backend: str
) -> list[tuple[str, str | None]]:
    """The ifcfg keys we own, in a new profile's order (None: the key goes)."""
    v4, v6 = iface.ipv4, iface.ipv6
    gateway4, gateway6 = port_gateways(spec, iface, vrf, backend)
    return [
        ("DEVICE", iface.name),
        ("ONBOOT", "yes"),
        ("BOOTPROTO", "none"),
        ("IPADDR", str(v4.ip) if v4 else None),
        ("PREFIX", str(v4.network.prefixlen) if v4 else None),
        ("GATEWAY", gateway4),
        ("DEFROUTE", "yes" if gateway4 else "no"),
        ("IPV6INIT", "yes" if v6 else "no"),
        ("IPV6_AUTOCONF", "no" if v6 else None),
        ("IPV6ADDR", str(v6) if v6 else None),
        ("IPV6_DEFAULTGW", gateway6),
        ("IPV6_DEFROUTE", ("yes" if gateway6 else "no") if v6 else None),
        ("VRF", vrf.name if vrf else None),
    ]


# What a new profile also gets, where the host's own profile may say otherwise.
_NEW_IFCFG_DEFAULTS = {
    "TYPE": "Ethernet",
    "IPV4_FAILURE_FATAL": "no",
    "IPV6_FAILURE_FATAL": "no",
    "IPV6_ADDR_GEN_MODE": "stable-privacy",
}
# Further addresses and gateways in the host's profile: the fleet file's addresses win.
_OTHER_ADDRESS_KEYS = re.compile(
    r"(IPADDR|PREFIX|NETMASK|GATEWAY)[0-9]+|NETMASK|IPV6ADDR_SECONDARIES"
)


def port_ifcfg(
    spec: HostSpec,
    iface: Interface,
    vrf: Vrf | None,
    backend: str,
    current: Ifcfg | None = None,
) -> str:
    """The port's profile: the host's own (``current``) with our keys set, or a new one.

    Our comment lines lead it while it is a VRF port; released, it is the host's again and
    keeps none of them."""
    keys = port_ifcfg_keys(spec, iface, vrf, backend)
    template = _env.get_template("ifcfg-port.j2")
    if current is None:
        return template.render(
            header=PORT_HEADER, iface=iface, vrf=vrf, keys=_new_ifcfg_keys(iface, keys)
        )
    our_header, body = _without_our_comments(current.text())
    edited = Ifcfg.parse(current.path, body)
    for key in [k for k in edited.values() if _OTHER_ADDRESS_KEYS.fullmatch(k)]:
        edited.remove(key)
    for key, value in keys:
        if value is None:
            edited.remove(key)
        else:
            edited.set(key, value)
    if vrf is None:
        return edited.text()
    header, role = template.render(header=PORT_HEADER, iface=iface, vrf=vrf, keys=[]).splitlines(
        keepends=True
    )
    return (our_header or header) + role + edited.text()


# The comment lines this module has ever put at the top of a port's profile.
_OUR_COMMENTS = ("# Managed by mgmt-vrf (pyinfra)", "# Port of VRF ", "# Plain profile for ")


def _without_our_comments(text: str) -> tuple[str | None, str]:
    """A profile's text without the comment lines we lead it with, and our header line if it
    had one: an older release's wording is no reason to rewrite a converged host's profile
    (the line naming the VRF is renewed)."""
    lines = text.split("\n")
    ours = []
    while lines and lines[0].startswith(_OUR_COMMENTS):
        ours.append(lines.pop(0) + "\n")
    header = ours[0] if ours and ours[0].startswith(_OUR_COMMENTS[0]) else None
    return header, "\n".join(lines)


def _new_ifcfg_keys(iface: Interface, keys: list[tuple[str, str | None]]) -> list[tuple[str, str]]:
    owned = dict(keys)
    order = ["TYPE", "NAME", "DEVICE", "ONBOOT", "BOOTPROTO", "IPADDR", "PREFIX", "GATEWAY",
             "DEFROUTE", "IPV4_FAILURE_FATAL", "IPV6INIT", "IPV6_AUTOCONF", "IPV6ADDR",
             "IPV6_DEFAULTGW", "IPV6_DEFROUTE", "IPV6_FAILURE_FATAL", "IPV6_ADDR_GEN_MODE",
             "VRF"]  # fmt: skip
    values: dict[str, str | None] = {**_NEW_IFCFG_DEFAULTS, "NAME": iface.name, **owned}
    if iface.ipv6 is None:
        values["IPV6_FAILURE_FATAL"] = values["IPV6_ADDR_GEN_MODE"] = None
    out = [(key, values[key]) for key in order]
    return [(key, value) for key, value in out if value is not None]


def port_routes(
    spec: HostSpec, iface: Interface, vrf: Vrf, family: int, backend: str
) -> list[tuple[str, IPv4Address | IPv6Address]]:
    """(to, via) of the routes a port's profile carries: those whose next hop is reached
    through it (and, for initscripts, the default; see port_gateways)."""
    if (iface.ipv4 if family == 4 else iface.ipv6) is None:
        return []
    hops: list[tuple[str, IPv4Address | IPv6Address]] = []
    gateway = vrf.gateway4 if family == 4 else vrf.gateway6
    if backend != "networkmanager" and gateway is not None:
        hops.append(("default", gateway))
    hops += [(str(route.to), route.via) for route in vrf.routes if route.family == family]
    return [
        (to, via)
        for to, via in hops
        if (port := spec.nexthop_port(vrf, via)) is not None and port.name == iface.name
    ]


def port_route_lines(
    spec: HostSpec, iface: Interface, vrf: Vrf, family: int, backend: str
) -> list[str]:
    """Line-form routes of one port, as route-PORT files hold them."""
    lines = []
    for to, via in port_routes(spec, iface, vrf, family, backend):
        dev = f" dev {iface.name}" if needs_dev(via) else ""
        lines.append(f"{to} via {via}{dev} table {vrf.table}")
    return lines


# NetworkManager 1.46 renamed the keys of a port's controller; both are read by every
# release since, and a keyfile keeps the spelling it has.
_CONTROLLER_KEYS = {"old": ("master", "slave-type"), "new": ("controller", "port-type")}
# Keys of a keyfile's [ipv4]/[ipv6] that carry addresses, gateways and routes: the fleet
# file's win, so the profile's own go (as the ifcfg editor drops IPADDR1=, GATEWAY1=, ...).
_KEYFILE_IP_KEYS = re.compile(r"(address|addresses|route|routes)[0-9]*(_options)?|gateway")


# IPv6 methods that carry static addresses beside what they learn: the operator's SLAAC or
# DHCPv6 stays (NetworkManager puts what it learns on a VRF port into the VRF's table).
_IPV6_METHODS_WITH_ADDRESSES = ("manual", "auto", "dhcp")


def _nm_at_least(nm_version: str | None, release: tuple[int, int]) -> bool:
    """Whether the host's NetworkManager is that release or later; False when unknown, so
    an unknown host gets the older spelling, which every release reads."""
    parts = (nm_version or "").split(".")
    try:
        return (int(parts[0]), int(parts[1])) >= release
    except (IndexError, ValueError):
        return False


def _controller_spelling(current: Keyfile | None, nm_version: str | None) -> str:
    if current is not None:
        keys = current.groups().get("connection", {})
        if "controller" in keys or "port-type" in keys:
            return "new"
        if "master" in keys or "slave-type" in keys:
            return "old"
    return "new" if _nm_at_least(nm_version, (1, 46)) else "old"


def _gateway_key_apart(current: Keyfile | None, group: str, nm_version: str | None) -> bool:
    """NetworkManager up to 1.48 (at least) writes the gateway into ``address1=ADDR,GW``,
    1.54 as its own ``gateway=`` key; every release reads both. A file keeps its form."""
    keys = current.groups().get(group, {}) if current is not None else {}
    if "gateway" in keys:
        return True
    if any(re.fullmatch(r"address(es)?[0-9]*", k) and "," in v for k, v in keys.items()):
        return False
    return _nm_at_least(nm_version, (1, 54))


def port_keyfile(
    spec: HostSpec,
    iface: Interface,
    vrf: Vrf | None,
    current: Keyfile | None,
    path: str,
    new_uuid: str,
    nm_version: str | None = None,
) -> str:
    """The port's keyfile: the host's own (``current``) with our keys set, or a new one.

    Ours: the controller keys, interface-name, autoconnect (only ever removed, when false:
    a VRF port must come up at boot), and per family the method, addresses, gateway,
    never-default and routes. Everything else (mtu, zone, dns, ethtool, 802.1x, comments,
    the uuid and id) is the operator's and stays as it is."""
    rendered = _env.get_template("port.nmconnection.j2").render(
        header=PORT_KEYFILE_HEADER, iface=iface, vrf=vrf, new=current is None, uuid=new_uuid
    )
    header, role, *skeleton = rendered.splitlines(keepends=True)
    if current is None:
        edited = Keyfile.parse(path, "".join(skeleton))
    else:
        our_header, body = _without_our_comments(current.text())
        edited = Keyfile.parse(path, body)
        header = our_header or header
    spelling = _controller_spelling(current, nm_version)
    for kind, (controller, port_type) in _CONTROLLER_KEYS.items():
        if vrf is not None and kind == spelling:
            edited.set("connection", controller, vrf.name)
            edited.set("connection", port_type, "vrf")
        else:
            edited.remove("connection", controller)
            edited.remove("connection", port_type)
    edited.set("connection", "interface-name", iface.name)
    if edited.get("connection", "autoconnect") not in (None, "true", "yes", "1"):
        edited.remove("connection", "autoconnect")
    gateways = dict(zip((4, 6), port_gateways(spec, iface, vrf, "networkmanager"), strict=True))
    for family, address in ((4, iface.ipv4), (6, iface.ipv6)):
        group = f"ipv{family}"
        wanted: dict[str, str] = {}
        gateway = gateways[family]
        if address is not None:
            apart = _gateway_key_apart(current, group, nm_version)
            wanted["address1"] = f"{address}" + (f",{gateway}" if gateway and not apart else "")
            if gateway and apart:
                wanted["gateway"] = gateway
            routes = port_routes(spec, iface, vrf, family, "networkmanager") if vrf else []
            for n, (to, via) in enumerate(routes, 1):
                wanted[f"route{n}"] = f"{to},{via}"
                wanted[f"route{n}_options"] = f"table={vrf.table}" if vrf else ""
        # Set in place, so a released profile reads as it did before the VRF.
        for key in list(edited.groups().get(group, {})):
            if _KEYFILE_IP_KEYS.fullmatch(key) and key not in wanted:
                edited.remove(group, key)
        method = edited.get(group, "method")
        if address is None:
            edited.set(group, "method", "disabled" if family == 4 else "ignore")
        elif family == 4 or method not in _IPV6_METHODS_WITH_ADDRESSES:
            edited.set(group, "method", "manual")
        for key, value in wanted.items():
            edited.set(group, key, value)
        if gateway or address is None:
            edited.remove(group, "never-default")
        else:
            edited.set(group, "never-default", "true")
    if vrf is None:
        return edited.text()
    return header + role + edited.text()


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
    resolv_path = paths.RESOLV_WATCH if spec.resolved_vrfs else ""
    return _render(
        "mgmt-vrf.service.j2",
        script=paths.CONVERGE_SCRIPT,
        vrfs=_vrf_names(spec),
        resolv_path=resolv_path,
    )


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
        socket_matching_off=SOCKET_MATCHING_OFF,
        wrapper=paths.EXEC_WRAPPER,
        resolvers=_resolvers(spec),
        resolv_unit=paths.RESOLV_WATCH,
    )


def _resolvers(spec: HostSpec) -> list[tuple[str, str]]:
    return [(v.name, paths.resolv_conf(v.name)) for v in spec.resolved_vrfs]


def resolv_units(spec: HostSpec) -> dict[str, str]:
    """The path unit that keeps the VRFs' resolv.conf mounted and the service it starts, or
    nothing when no VRF has nameservers."""
    if not spec.resolved_vrfs:
        return {}
    names = ", ".join(v.name for v in spec.resolved_vrfs)
    return {
        paths.RESOLV_PATH_UNIT: _render(
            "mgmt-vrf-resolv.path.j2", vrfs=names, service=paths.RESOLV_SERVICE
        ),
        paths.RESOLV_SERVICE_UNIT: _render(
            "mgmt-vrf-resolv.service.j2", vrfs=names, wrapper=paths.EXEC_WRAPPER
        ),
    }


def resolv_conf(vrf: Vrf) -> str:
    return _render(
        "resolv.conf.j2", vrf=vrf.name, nameservers=vrf.nameservers, search=" ".join(vrf.search)
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
