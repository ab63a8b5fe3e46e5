"""The ifcfg files of the blog (seed), with the lab's addresses in place of the blog's.

`broken_files()` keeps the blog's keys, order and mistakes (two profiles for eth2,
`ADDRESS=` without an index in route-vrf.eth2); only addresses are the lab's.
`clean_ifcfg()` is what a freshly installed lab host carries.
"""

from __future__ import annotations

import uuid

from lab import topology as t


def _eth(seg: t.Segment, gateway: bool, comment_gw: bool = False) -> str:
    gw6 = f"IPV6_DEFAULTGW={seg.gw6}"
    gw4 = f"GATEWAY={seg.gw4}"
    if comment_gw:
        gw6, gw4 = "#" + gw6, "#" + gw4
    lines = [
        "TYPE=Ethernet",
        "DEFROUTE=yes",
        "IPV4_FAILURE_FATAL=no",
        "IPV6INIT=yes",
        "IPV6_AUTOCONF=yes",
        "IPV6_DEFROUTE=yes",
        "IPV6_FAILURE_FATAL=no",
        f"IPV6ADDR={seg.host6}",
        gw6,
        "IPV6_ADDR_GEN_MODE=stable-privacy",
        f"NAME={seg.host_if}",
        f"DEVICE={seg.host_if}",
        "ONBOOT=yes",
        "IPV6_PRIVACY=no",
        "MACADDR=permanent",
        f"IPADDR={seg.host4}",
        f"PREFIX={seg.prefix4}",
        gw4,
    ]
    if not gateway and not comment_gw:
        lines = [x for x in lines if not x.startswith(("GATEWAY=", "IPV6_DEFAULTGW="))]
        lines = [x.replace("DEFROUTE=yes", "DEFROUTE=no") for x in lines]
    return "\n".join(lines) + "\n"


def broken_files() -> dict[str, str]:
    m = t.MGMT
    return {
        "ifcfg-eth0": _eth(t.SERVICE, gateway=True),
        "ifcfg-eth1": _eth(t.ACCESS, gateway=False, comment_gw=True),
        "ifcfg-eth2": _eth(m, gateway=True),
        "ifcfg-vrf.eth2": "\n".join(
            [
                "TYPE=Ethernet",
                "DEFROUTE=yes",
                "BOOTPROTO=none",
                f"IPADDR={m.host4}",
                f"PREFIX={m.prefix4}",
                "IPV4_FAILURE_FATAL=no",
                "IPV6INIT=yes",
                "IPV6_AUTOCONF=no",
                f"IPV6ADDR={m.host6}",
                "IPV6_DEFROUTE=yes",
                "IPV6_FAILURE_FATAL=no",
                "IPV6_ADDR_GEN_MODE=stable-privacy",
                "NAME=vrf.eth2",
                "DEVICE=eth2",
                "ONBOOT=yes",
                f"VRF={t.VRF_NAME}",
            ]
        )
        + "\n",
        "route-vrf.eth2": f"ADDRESS=0.0.0.0\nNETMASK=0.0.0.0\nGATEWAY0={m.gw4}\n",
        "route6-vrf.eth2": f"::/0 via {m.gw6}\n",
    }


def clean_profiles() -> dict[str, list[str]]:
    """The profiles of clean_ifcfg() as `nmcli connection add` arguments, for a host whose
    NetworkManager reads keyfiles only (AlmaLinux 10): the same addresses, gateways and
    keys, in keyfile terms (IPV6_AUTOCONF=yes is `ipv6.method auto`)."""
    out = {}
    for seg, gateway in ((t.SERVICE, True), (t.ACCESS, None), (t.MGMT, False)):
        name = seg.host_if
        args = [
            "type", "ethernet", "con-name", name, "ifname", name,
            "connection.uuid", str(uuid.uuid5(uuid.NAMESPACE_URL, f"lab:{name}")),
            "ethernet.cloned-mac-address", "permanent",
            "ipv4.method", "manual", "ipv4.addresses", seg.host4_cidr,
            "ipv6.method", "auto", "ipv6.addresses", seg.host6_cidr,
            "ipv6.addr-gen-mode", "stable-privacy", "ipv6.ip6-privacy", "0",
        ]  # fmt: skip
        if gateway:
            args += ["ipv4.gateway", seg.gw4, "ipv6.gateway", seg.gw6]
        elif gateway is False:  # DEFROUTE=no; eth1 (None) only has its gateway commented out
            args += ["ipv4.never-default", "yes", "ipv6.never-default", "yes"]
        out[name] = args
    return out


def clean_ifcfg() -> dict[str, str]:
    return {
        "ifcfg-eth0": _eth(t.SERVICE, gateway=True),
        "ifcfg-eth1": _eth(t.ACCESS, gateway=False, comment_gw=True),
        "ifcfg-eth2": _eth(t.MGMT, gateway=False),
    }
