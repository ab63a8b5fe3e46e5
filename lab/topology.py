"""The lab's addressing plan, shared by the controller and the code running inside the VM.

Every host is a clone: the same in-host addresses on eth0/eth1/eth2, like servers
built from one image. What tells hosts apart is their router namespace, whose uplink
to the VM's root namespace is selected by the controller's TCP port.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Segment:
    role: str
    host_if: str
    gw_if: str
    host4: str
    gw4: str
    prefix4: int
    host6: str
    gw6: str
    prefix6: int

    @property
    def host4_cidr(self) -> str:
        return f"{self.host4}/{self.prefix4}"

    @property
    def host6_cidr(self) -> str:
        return f"{self.host6}/{self.prefix6}"


SERVICE = Segment(
    "service",
    "eth0",
    "svc",
    "198.51.100.10",
    "198.51.100.1",
    25,
    "2001:db8:100::10",
    "2001:db8:100::1",
    64,
)
ACCESS = Segment(
    "access", "eth1", "acc", "192.0.2.10", "192.0.2.1", 25, "2001:db8:52::10", "2001:db8:52::1", 64
)
MGMT = Segment(
    "mgmt", "eth2", "mgmt", "203.0.113.10", "203.0.113.1", 25, "2001:db8:1::10", "2001:db8:1::1", 64
)
SEGMENTS = (SERVICE, ACCESS, MGMT)

# The controller side (qemu user networking) lives in the VM's root namespace, in a
# subnet that no host is on, so every ssh session is routed through a gateway.
SLIRP_NET = "203.0.113.192/27"
CONTROLLER4 = "203.0.113.200"
VM4 = "203.0.113.210"
VM_PREFIX = 27
# Uplink between the VM's root namespace and each router namespace (same on every
# uplink; the root namespace picks the uplink by firewall mark).
UPLINK_ROOT4 = "203.0.113.129"
UPLINK_ROUTER4 = "203.0.113.130"
# An off-link address on each router, for tests that must not be answered on-link.
ROUTER_FAR6 = "2001:db8:ffff::1"

VRF_NAME = "mgmt0"
VRF_TABLE = 10
# Every gateway address answers TCP on this port with one line naming itself.
GATEWAY_TCP_PORT = 7
# The service and management gateways are each a nameserver too, reached only through
# their own segment, and each answers this name with its own addresses: which one a
# program asked shows which resolver it used.
DNS_SEGMENTS = ("service", "mgmt")
DNS_NAME = "where.example.net"
MAIN_METRIC = 100


def base_port() -> int:
    return int(os.environ.get("LAB_BASE_PORT", "2200"))


def control_port() -> int:
    return base_port()


def host_port(index: int) -> int:
    return base_port() + index


def host_name(index: int) -> str:
    return f"lab{index}"


def host_index(name: str) -> int:
    if not name.startswith("lab") or not name[3:].isdigit() or int(name[3:]) < 1:
        raise ValueError(f"not a lab host name: {name!r} (expected lab1, lab2, ...)")
    return int(name[3:])


def router_ns(name: str) -> str:
    return f"{name}-gw"


def uplink_root_if(index: int) -> str:
    return f"up{index}"


def mac(index: int, segment: int, router: bool) -> str:
    return f"52:54:{0x10 if router else 0x00:02x}:{index >> 8:02x}:{index & 0xFF:02x}:{segment:02x}"
