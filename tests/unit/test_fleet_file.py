"""Fleet file: loading, merging, every validation error, and the pyinfra inventory wiring.

Test fleets use documentation ranges only; the only connections ever attempted are by the
pyinfra subprocess tests, and those stop at inventory load (or target 127.0.0.1).
"""

from __future__ import annotations

import os
import re
import runpy
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Interface, IPv6Address, IPv6Interface, ip_network
from pathlib import Path

import pytest

from mgmt_vrf.fleet_file import (
    Fleet,
    FleetError,
    load_fleet,
    parse_fleet,
    spec_from_data,
    spec_to_data,
)
from mgmt_vrf.model import HostSpec, Interface, Route, Vrf
from mgmt_vrf.pyinfra.inventory_data import host_data, inventory_groups

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "fleet.example.toml"

BASE = """\
[hosts.web01]
ssh_address = "192.0.2.21"

[hosts.web01.interfaces.eth0]
ipv4 = "198.51.100.21/24"
gateway4 = "198.51.100.1"
ipv6 = "2001:db8:1::21/64"
gateway6 = "2001:db8:1::1"
main_default = true

[hosts.web01.interfaces.eth2]
ipv4 = "192.0.2.21/24"
ipv6 = "2001:db8:2::21/64"

[hosts.web01.vrfs.mgmt0]
table = 10
ports = ["eth2"]
gateway4 = "192.0.2.1"
gateway6 = "2001:db8:2::1"
routes = [{ to = "203.0.113.0/24", via = "192.0.2.254" }]
"""


def write(tmp_path: Path, text: str, name: str = "fleet.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def errors_of(tmp_path: Path, text: str) -> tuple[Path, list[str]]:
    path = write(tmp_path, text)
    with pytest.raises(FleetError) as caught:
        load_fleet(path)
    assert str(caught.value) == "\n".join(caught.value.messages)
    return path, list(caught.value.messages)


def edit(old: str, new: str) -> Callable[[str], str]:
    def apply(text: str) -> str:
        assert old in text, old
        return text.replace(old, new, 1)

    return apply


def append(extra: str) -> Callable[[str], str]:
    return lambda text: text + "\n" + extra


def chain(*changes: Callable[[str], str]) -> Callable[[str], str]:
    def apply(text: str) -> str:
        for change in changes:
            text = change(text)
        return text

    return apply


def test_base_fleet_is_valid(tmp_path: Path) -> None:
    fleet = load_fleet(write(tmp_path, BASE))
    spec = fleet.hosts[0]
    assert spec.name == "web01"
    assert spec.vrfs == (
        Vrf(
            name="mgmt0",
            table=10,
            ports=("eth2",),
            gateway4=IPv4Address("192.0.2.1"),
            gateway6=IPv6Address("2001:db8:2::1"),
            routes=(Route(to=ip_network("203.0.113.0/24"), via=IPv4Address("192.0.2.254")),),
        ),
    )


# (id, change to BASE, key path in the message, words the message must contain, count)
ERROR_CASES: list[tuple[str, Callable[[str], str], str, str, int]] = [
    (
        "malformed-address",
        edit('ipv4 = "192.0.2.21/24"', 'ipv4 = "192.0.2.321/24"'),
        "interfaces.eth2.ipv4",
        "is not a valid IPv4 address",
        1,
    ),
    (
        "missing-prefix",
        edit('ipv4 = "192.0.2.21/24"', 'ipv4 = "192.0.2.21"'),
        "interfaces.eth2.ipv4",
        "has no prefix length; write it as 192.0.2.21/24",
        1,
    ),
    (
        "prefix-too-long",
        edit('ipv6 = "2001:db8:2::21/64"', 'ipv6 = "2001:db8:2::21/129"'),
        "interfaces.eth2.ipv6",
        "prefix /129 is too long for IPv6",
        1,
    ),
    (
        "address-in-wrong-family",
        edit('ipv4 = "192.0.2.21/24"', 'ipv4 = "2001:db8:3::21/64"'),
        "interfaces.eth2.ipv4",
        "is an IPv6 address; put it under ipv6",
        1,
    ),
    (
        "network-address-as-host",
        edit('ipv4 = "192.0.2.21/24"', 'ipv4 = "192.0.2.0/24"'),
        "interfaces.eth2.ipv4",
        "is the network address of 192.0.2.0/24",
        1,
    ),
    (
        "malformed-gateway",
        edit('gateway4 = "198.51.100.1"', 'gateway4 = "198.51.100"'),
        "interfaces.eth0.gateway4",
        "is not a valid IPv4 address",
        1,
    ),
    (
        "interface-gateway-outside-subnet",
        edit('gateway4 = "198.51.100.1"', 'gateway4 = "203.0.113.1"'),
        "interfaces.eth0.gateway4",
        "203.0.113.1 is outside 198.51.100.0/24",
        1,
    ),
    (
        "interface-gateway-without-main-default",
        edit("main_default = true", ""),
        "interfaces.eth0.gateway4",
        "set interfaces.eth0.main_default = true",
        2,  # gateway4 and gateway6
    ),
    (
        "gateway-on-vrf-port",
        edit('ipv4 = "192.0.2.21/24"', 'ipv4 = "192.0.2.21/24"\ngateway4 = "192.0.2.1"'),
        "interfaces.eth2.gateway4",
        "move it to vrfs.mgmt0.gateway4",
        1,
    ),
    (
        "main-default-without-gateway",
        edit(
            'gateway4 = "198.51.100.1"\nipv6 = "2001:db8:1::21/64"\ngateway6 = "2001:db8:1::1"',
            'ipv6 = "2001:db8:1::21/64"',
        ),
        "interfaces.eth0.main_default",
        "eth0 has no gateway4 or gateway6",
        1,
    ),
    (
        "two-main-defaults",
        append(
            '[hosts.web01.interfaces.eth1]\nipv4 = "203.0.113.21/24"\n'
            'gateway4 = "203.0.113.1"\nmain_default = true\n'
        ),
        "interfaces.eth1.main_default",
        "eth0 already carries the main default route",
        1,
    ),
    (
        "vrf-name-too-long",
        edit("vrfs.mgmt0]", "vrfs.management_vrf01]"),
        "vrfs.management_vrf01",
        "is 16 bytes long; Linux device names have at most 15 bytes",
        1,
    ),
    (
        "vrf-name-with-slash",
        edit("vrfs.mgmt0]", 'vrfs."mgmt/0"]'),
        'vrfs."mgmt/0"',
        "contains '/'",
        1,
    ),
    (
        "vrf-name-with-colon",
        edit("vrfs.mgmt0]", 'vrfs."mgmt:0"]'),
        'vrfs."mgmt:0"',
        "contains ':'",
        1,
    ),
    (
        "vrf-name-with-percent",
        edit("vrfs.mgmt0]", 'vrfs."mgmt%d"]'),
        'vrfs."mgmt%d"',
        "contains '%'",
        1,
    ),
    (
        "vrf-name-with-space",
        edit("vrfs.mgmt0]", 'vrfs."mgmt 0"]'),
        'vrfs."mgmt 0"',
        "contains ' '",
        1,
    ),
    (
        "vrf-name-dot",
        edit("vrfs.mgmt0]", 'vrfs."."]'),
        'vrfs."."',
        "is not allowed as a device name",
        1,
    ),
    (
        "vrf-name-dotdot",
        edit("vrfs.mgmt0]", 'vrfs.".."]'),
        'vrfs.".."',
        "is not allowed as a device name",
        1,
    ),
    (
        "vrf-name-empty",
        edit("vrfs.mgmt0]", 'vrfs.""]'),
        'vrfs.""',
        "is empty",
        1,
    ),
    (
        "vrf-name-is-an-interface",
        chain(edit("vrfs.mgmt0]", "vrfs.eth1]"), append("[hosts.web01.interfaces.eth1]\n")),
        "vrfs.eth1",
        "also declared under interfaces",
        1,
    ),
    (
        "table-0",
        edit("table = 10", "table = 0"),
        "vrfs.mgmt0.table",
        "0 is not a usable table",
        1,
    ),
    (
        "table-253",
        edit("table = 10", "table = 253"),
        "vrfs.mgmt0.table",
        "253 is reserved (253 default, 254 main, 255 local); use 1-252 or 256-4294967295",
        1,
    ),
    (
        "table-254",
        edit("table = 10", "table = 254"),
        "vrfs.mgmt0.table",
        "254 is reserved (253 default, 254 main, 255 local); use 1-252 or 256-4294967295",
        1,
    ),
    (
        "table-255",
        edit("table = 10", "table = 255"),
        "vrfs.mgmt0.table",
        "255 is reserved",
        1,
    ),
    (
        "table-too-big",
        edit("table = 10", "table = 4294967296"),
        "vrfs.mgmt0.table",
        "4294967296 is out of range; use 1-252 or 256-4294967295",
        1,
    ),
    (
        "table-negative",
        edit("table = 10", "table = -5"),
        "vrfs.mgmt0.table",
        "-5 is out of range",
        1,
    ),
    (
        "table-boolean",
        edit("table = 10", "table = true"),
        "vrfs.mgmt0.table",
        "got the boolean true (TOML true/false is not a number)",
        1,
    ),
    (
        "table-string",
        edit("table = 10", 'table = "10"'),
        "vrfs.mgmt0.table",
        'got the string "10"; write 10 without quotes',
        1,
    ),
    (
        "table-missing",
        edit("table = 10\n", ""),
        "vrfs.mgmt0.table",
        "missing; every VRF needs its own routing table",
        1,
    ),
    (
        "same-table-twice",
        append(
            '[hosts.web01.interfaces.eth3]\nipv4 = "203.0.113.21/24"\n'
            '[hosts.web01.vrfs.backup0]\ntable = 10\nports = ["eth3"]\n'
        ),
        "vrfs.backup0.table",
        "table 10 is already used by VRF mgmt0",
        1,
    ),
    (
        "port-in-two-vrfs",
        append('[hosts.web01.vrfs.backup0]\ntable = 20\nports = ["eth2"]\n'),
        "vrfs.backup0.ports",
        "eth2 is already a port of VRF mgmt0; an interface can be in one VRF only",
        1,
    ),
    (
        "main-default-port-in-vrf",
        edit('ports = ["eth2"]', 'ports = ["eth2", "eth0"]'),
        "vrfs.mgmt0.ports",
        "eth0 carries the main default route",
        1,
    ),
    (
        "vrf-without-ports",
        edit('ports = ["eth2"]', "ports = []"),
        "vrfs.mgmt0.ports",
        "mgmt0 has no ports",
        1,
    ),
    (
        "vrf-ports-key-missing",
        edit('ports = ["eth2"]\n', ""),
        "vrfs.mgmt0.ports",
        "mgmt0 has no ports",
        1,
    ),
    (
        "port-not-declared",
        edit('ports = ["eth2"]', 'ports = ["eth9"]'),
        "vrfs.mgmt0.ports",
        "eth9 is not declared; did you mean eth2? Otherwise add a [hosts.web01.interfaces.eth9]",
        1,
    ),
    (
        "port-without-address",
        chain(
            edit('ports = ["eth2"]', 'ports = ["eth2", "eth3"]'),
            append("[hosts.web01.interfaces.eth3]\n"),
        ),
        "vrfs.mgmt0.ports",
        "eth3 has no ipv4 or ipv6 address",
        1,
    ),
    (
        "ports-not-an-array",
        edit('ports = ["eth2"]', 'ports = "eth2"'),
        "vrfs.mgmt0.ports",
        'write ports = ["eth2"]',
        1,
    ),
    (
        "vrf-gateway-outside-port-subnet",
        edit('gateway4 = "192.0.2.1"', 'gateway4 = "198.51.100.1"'),
        "vrfs.mgmt0.gateway4",
        "198.51.100.1 is outside the IPv4 subnets of mgmt0's ports (eth2: 192.0.2.0/24)",
        1,
    ),
    (
        "vrf-gateway-family-without-port-address",
        edit('ipv6 = "2001:db8:2::21/64"\n', ""),
        "vrfs.mgmt0.gateway6",
        "no port of mgmt0 has an IPv6 address",
        1,
    ),
    (
        "vrf-gateway-in-wrong-key",
        edit('gateway4 = "192.0.2.1"', 'gateway4 = "2001:db8:2::1"'),
        "vrfs.mgmt0.gateway4",
        "is an IPv6 address; put it under gateway6",
        1,
    ),
    (
        "vrf-gateway-link-local-with-two-ipv6-ports",
        chain(
            append('[hosts.web01.interfaces.eth3]\nipv6 = "2001:db8:3::21/64"\n'),
            edit('ports = ["eth2"]', 'ports = ["eth2", "eth3"]'),
            edit('gateway6 = "2001:db8:2::1"', 'gateway6 = "fe80::1"'),
        ),
        "vrfs.mgmt0.gateway6",
        "fe80::1 is link-local, so the route must name its device, and mgmt0 has 2 ports with "
        "IPv6 addresses (eth2: 2001:db8:2::/64, eth3: 2001:db8:3::/64)",
        1,
    ),
    (
        "route-via-outside-port-subnet",
        edit('via = "192.0.2.254"', 'via = "198.51.100.254"'),
        "vrfs.mgmt0.routes[0].via",
        "198.51.100.254 is outside the IPv4 subnets of mgmt0's ports",
        1,
    ),
    (
        "route-host-bits",
        edit('to = "203.0.113.0/24"', 'to = "203.0.113.7/24"'),
        "vrfs.mgmt0.routes[0].to",
        "203.0.113.7/24 has host bits set; the network is 203.0.113.0/24",
        1,
    ),
    (
        "route-family-mismatch",
        edit('to = "203.0.113.0/24"', 'to = "2001:db8:9::/48"'),
        "vrfs.mgmt0.routes[0].via",
        "192.0.2.254 is IPv4 but the destination 2001:db8:9::/48 is IPv6",
        1,
    ),
    (
        "route-default",
        edit('to = "203.0.113.0/24"', 'to = "0.0.0.0/0"'),
        "vrfs.mgmt0.routes[0].to",
        "is the default route; set the VRF's gateway4 instead",
        1,
    ),
    (
        "route-malformed",
        edit('to = "203.0.113.0/24"', 'to = "203.0.113.0/40"'),
        "vrfs.mgmt0.routes[0].to",
        "is not a network",
        1,
    ),
    (
        "route-twice",
        edit(
            'routes = [{ to = "203.0.113.0/24", via = "192.0.2.254" }]',
            'routes = [{ to = "203.0.113.0/24", via = "192.0.2.254" },'
            ' { to = "203.0.113.0/24", via = "192.0.2.253" }]',
        ),
        "vrfs.mgmt0.routes[1].to",
        "203.0.113.0/24 is already routed by routes[0]",
        1,
    ),
    (
        "route-key-typo",
        edit('via = "192.0.2.254"', 'gw = "192.0.2.254"'),
        "vrfs.mgmt0.routes[0].gw",
        "unknown key; did you mean via?",
        2,  # and via is then missing
    ),
    (
        "missing-ssh-address",
        edit('ssh_address = "192.0.2.21"\n', ""),
        "ssh_address",
        "missing; set the address pyinfra connects to",
        1,
    ),
    (
        "ssh-address-with-port",
        edit('ssh_address = "192.0.2.21"', 'ssh_address = "192.0.2.21:2222"'),
        "ssh_address",
        "put the port in ssh_port",
        1,
    ),
    (
        "unknown-key-vrf",
        edit('gateway4 = "192.0.2.1"', 'gatway4 = "192.0.2.1"'),
        "vrfs.mgmt0.gatway4",
        "unknown key; did you mean gateway4?",
        1,
    ),
    (
        "unknown-key-interface",
        edit('ipv6 = "2001:db8:2::21/64"', 'ipv6_adress = "2001:db8:2::21/64"'),
        "interfaces.eth2.ipv6_adress",
        "unknown key",
        2,  # eth2 then has no IPv6 for mgmt0's gateway6
    ),
    (
        "unknown-key-host",
        edit('ssh_address = "192.0.2.21"', 'ssh_address = "192.0.2.21"\nssh_usr = "admin"'),
        "ssh_usr",
        "unknown key; did you mean ssh_user?",
        1,
    ),
    (
        "ifcfg-word-for-a-key",
        edit('ipv6 = "2001:db8:2::21/64"', 'ipv6 = "2001:db8:2::21/64"\ngateway = "192.0.2.1"'),
        "interfaces.eth2.gateway",
        "did you mean gateway4 or gateway6?",
        1,
    ),
    (
        "ssh-port-string",
        edit('ssh_address = "192.0.2.21"', 'ssh_address = "192.0.2.21"\nssh_port = "22"'),
        "ssh_port",
        'got the string "22"; write 22 without quotes',
        1,
    ),
    (
        "ssh-port-range",
        edit('ssh_address = "192.0.2.21"', 'ssh_address = "192.0.2.21"\nssh_port = 70000'),
        "ssh_port",
        "70000 is not a TCP port",
        1,
    ),
    (
        "main-default-string",
        edit("main_default = true", 'main_default = "yes"'),
        "interfaces.eth0.main_default",
        "expected true or false",
        1,
    ),
    (
        "bad-state",
        edit("table = 10", 'table = 10\nstate = "deleted"'),
        "vrfs.mgmt0.state",
        'the string "deleted" is not one of "present", "absent"',
        1,
    ),
    (
        "bad-backend",
        edit(
            'ssh_address = "192.0.2.21"', 'ssh_address = "192.0.2.21"\nbackend = "network-script"'
        ),
        "backend",
        'did you mean "network-scripts"?',
        1,
    ),
    (
        "bad-host-key-checking",
        edit(
            'ssh_address = "192.0.2.21"',
            'ssh_address = "192.0.2.21"\nssh_strict_host_key_checking = "maybe"',
        ),
        "ssh_strict_host_key_checking",
        'is not one of "yes", "accept-new", "no"',
        1,
    ),
    (
        "unknown-group",
        chain(
            edit('ssh_address = "192.0.2.21"', 'ssh_address = "192.0.2.21"\ngroups = ["dc2"]'),
            append("[groups.dc1]\n"),
        ),
        "groups",
        'unknown group "dc2"; did you mean dc1? defined groups: dc1',
        1,
    ),
    (
        "groups-not-an-array",
        edit('ssh_address = "192.0.2.21"', 'ssh_address = "192.0.2.21"\ngroups = "dc1"'),
        "groups",
        'write groups = ["dc1"]',
        1,
    ),
    (
        "l3mdev-off-would-lock-out",
        edit('ssh_address = "192.0.2.21"', 'ssh_address = "192.0.2.21"\nl3mdev_accept = false'),
        "l3mdev_accept",
        "false would lock pyinfra out",
        1,
    ),
    (
        "rollback-timeout-too-short",
        edit('ssh_address = "192.0.2.21"', 'ssh_address = "192.0.2.21"\nrollback_timeout = 5'),
        "rollback_timeout",
        "5 is outside 15..3600 seconds",
        1,
    ),
    (
        "apply-timeout-too-short",
        edit('ssh_address = "192.0.2.21"', 'ssh_address = "192.0.2.21"\napply_timeout = 10'),
        "apply_timeout",
        "10 is outside 30..3600 seconds; the host must have time to apply the change",
        1,
    ),
    (
        "changes-at-once-zero",
        edit('ssh_address = "192.0.2.21"', 'ssh_address = "192.0.2.21"\nchanges_at_once = 0'),
        "changes_at_once",
        "0 is outside 1..1000 hosts; it is how many hosts may be between the start",
        1,
    ),
    (
        "connect-timeout-zero",
        edit('ssh_address = "192.0.2.21"', 'ssh_address = "192.0.2.21"\nssh_connect_timeout = 0'),
        "ssh_connect_timeout",
        "0 is outside 1..600 seconds",
        1,
    ),
    (
        "rollback-timeout-quoted",
        edit('ssh_address = "192.0.2.21"', 'ssh_address = "192.0.2.21"\nrollback_timeout = "60"'),
        "rollback_timeout",
        "write 60 without quotes",
        1,
    ),
    (
        "services-a-string",
        append('services = "sshd"'),
        "vrfs.mgmt0.services",
        'expected an array of service names, write services = ["sshd"]',
        1,
    ),
    (
        "services-twice",
        append('services = ["sshd", "sshd.service"]'),
        "vrfs.mgmt0.services",
        "sshd.service is listed twice",
        1,
    ),
    (
        "services-socket-unit",
        append('services = ["cockpit.socket"]'),
        "vrfs.mgmt0.services",
        "set BindToDevice= in that socket unit",
        1,
    ),
    (
        "services-template",
        append('services = ["getty@"]'),
        "vrfs.mgmt0.services",
        "is a template; name an instance, e.g. getty@NAME",
        1,
    ),
    (
        "services-bad-name",
        append('services = ["my app"]'),
        "vrfs.mgmt0.services",
        "is not a systemd service name",
        1,
    ),
    (
        "services-the-network-itself",
        append('services = ["NetworkManager"]'),
        "vrfs.mgmt0.services",
        '"NetworkManager" runs the host itself',
        1,
    ),
    (
        "service-singular",
        append('service = ["sshd"]'),
        "vrfs.mgmt0.service",
        "unknown key; did you mean services?",
        1,
    ),
    # Names: what real interface names use, nothing a shell or a command line reads.
    *[
        (
            f"vrf-name-with-{label}",
            edit("[hosts.web01.vrfs.mgmt0]", f"[hosts.web01.vrfs.{key}]"),
            f"vrfs.{key}",
            f"contains {shown}; a device name here uses only letters, digits, '_', '.' and '-', "
            "at most 15 bytes",
            1,
        )
        for label, key, shown in (
            ("command-substitution", '"m$(id)"', "'$' '(' ')'"),
            ("backtick", '"m`id`"', "'`'"),
            ("semicolon", '"m;id"', "';'"),
            ("pipe", '"m|id"', "'|'"),
            ("ampersand", '"m&"', "'&'"),
            ("single-quote", '"m\'x"', '"\'"'),
            ("double-quote", '"m\\"x"', "'\"'"),
        )
    ],
    (
        "port-name-with-dollar",
        append('[hosts.web01.interfaces."e$x"]\nipv4 = "203.0.113.21/24"\n'),
        'interfaces."e$x"',
        "device name \"e$x\" contains '$'",
        1,
    ),
    (
        "vrf-name-non-ascii-counts-bytes",
        edit("[hosts.web01.vrfs.mgmt0]", '[hosts.web01.vrfs."mgmtéééééééé"]'),
        'vrfs."mgmtéééééééé"',
        "is 20 bytes long; Linux device names have at most 15 bytes",
        1,
    ),
    (
        "vrf-name-leading-dash",
        edit("[hosts.web01.vrfs.mgmt0]", "[hosts.web01.vrfs.--status]"),
        "vrfs.--status",
        "starts with '-', which ip and mgmt-vrf-exec would read as an option",
        1,
    ),
    (
        "vrf-name-default",
        edit("[hosts.web01.vrfs.mgmt0]", "[hosts.web01.vrfs.default]"),
        "vrfs.default",
        "is reserved: \"default\" means 'outside every VRF' to ip vrf exec and mgmt-vrf-exec",
        1,
    ),
    (
        "interface-name-all",
        append('[hosts.web01.interfaces.all]\nipv4 = "203.0.113.21/24"\n'),
        "interfaces.all",
        'is reserved: "all" net.ipv4.conf.all and net.ipv6.conf.all are the sysctls',
        1,
    ),
    # Next hops that are the port itself.
    (
        "vrf-gateway-own-address",
        edit('gateway4 = "192.0.2.1"', 'gateway4 = "192.0.2.21"'),
        "vrfs.mgmt0.gateway4",
        "192.0.2.21 is the interface's own address 192.0.2.21/24 (port eth2); a next hop is a "
        "router, not the port",
        1,
    ),
    (
        "vrf-gateway-network-address",
        edit('gateway4 = "192.0.2.1"', 'gateway4 = "192.0.2.0"'),
        "vrfs.mgmt0.gateway4",
        "192.0.2.0 is the network address of 192.0.2.0/24 (port eth2)",
        1,
    ),
    (
        "vrf-gateway-broadcast-address",
        edit('gateway4 = "192.0.2.1"', 'gateway4 = "192.0.2.255"'),
        "vrfs.mgmt0.gateway4",
        "192.0.2.255 is the broadcast address of 192.0.2.0/24 (port eth2)",
        1,
    ),
    (
        "vrf-gateway6-own-address",
        edit('gateway6 = "2001:db8:2::1"', 'gateway6 = "2001:db8:2::21"'),
        "vrfs.mgmt0.gateway6",
        "2001:db8:2::21 is the interface's own address 2001:db8:2::21/64 (port eth2)",
        1,
    ),
    (
        "route-via-own-address",
        edit('via = "192.0.2.254"', 'via = "192.0.2.21"'),
        "vrfs.mgmt0.routes[0].via",
        "192.0.2.21 is the interface's own address 192.0.2.21/24 (port eth2)",
        1,
    ),
    (
        "route-via-broadcast-address",
        edit('via = "192.0.2.254"', 'via = "192.0.2.255"'),
        "vrfs.mgmt0.routes[0].via",
        "192.0.2.255 is the broadcast address of 192.0.2.0/24 (port eth2)",
        1,
    ),
    # IPv6 zone ids: the fleet file already says which device an address is on.
    (
        "address-with-zone-id",
        edit('ipv6 = "2001:db8:2::21/64"', 'ipv6 = "2001:db8:2::21%eth2/64"'),
        "interfaces.eth2.ipv6",
        '"2001:db8:2::21%eth2/64" has an IPv6 zone id (%eth2); write the address without it',
        1,
    ),
    (
        "gateway-with-zone-id",
        edit('gateway6 = "2001:db8:2::1"', 'gateway6 = "fe80::1%eth2"'),
        "vrfs.mgmt0.gateway6",
        '"fe80::1%eth2" has an IPv6 zone id (%eth2)',
        1,
    ),
    (
        "route-via-with-zone-id",
        edit(
            'routes = [{ to = "203.0.113.0/24", via = "192.0.2.254" }]',
            'routes = [{ to = "2001:db8:9::/48", via = "fe80::1%eth2" }]',
        ),
        "vrfs.mgmt0.routes[0].via",
        '"fe80::1%eth2" has an IPv6 zone id (%eth2)',
        1,
    ),
    (
        "same-address-on-two-interfaces",
        append('[hosts.web01.interfaces.eth3]\nipv4 = "192.0.2.21/24"\n'),
        "interfaces.eth3.ipv4",
        "192.0.2.21 is also the address of eth2; one address belongs to one interface",
        1,
    ),
    (
        "services-under-absent-vrf",
        edit("table = 10\n", 'table = 10\nstate = "absent"\nservices = ["sshd"]\n'),
        "vrfs.mgmt0.services",
        'mgmt0 is marked state = "absent", so nothing runs inside it; remove its services list',
        1,
    ),
    (
        "ssh-key-missing",
        edit('ssh_address = "192.0.2.21"', 'ssh_address = "192.0.2.21"\nssh_key = "keys/nope"'),
        "ssh_key",
        '"keys/nope" does not exist (',
        1,
    ),
    (
        "ssh-known-hosts-missing",
        edit(
            'ssh_address = "192.0.2.21"',
            'ssh_address = "192.0.2.21"\nssh_known_hosts_file = "~/no/known_hosts"',
        ),
        "ssh_known_hosts_file",
        "without it ssh would trust any key on first use",
        1,
    ),
    (
        "interfaces-not-a-table",
        lambda _: '[hosts.web01]\nssh_address = "192.0.2.21"\ninterfaces = ["eth0"]\n',
        "interfaces",
        "expected tables such as [hosts.NAME.interfaces.eth0], got an array",
        1,
    ),
]


@pytest.mark.parametrize(
    ("change", "key_path", "words", "count"),
    [case[1:] for case in ERROR_CASES],
    ids=[case[0] for case in ERROR_CASES],
)
def test_error_kind(
    tmp_path: Path, change: Callable[[str], str], key_path: str, words: str, count: int
) -> None:
    path, messages = errors_of(tmp_path, change(BASE))
    assert len(messages) == count, messages
    prefix = f"{path}: host web01: {key_path}: "
    matching = [m for m in messages if m.startswith(prefix)]
    assert matching, f"no message starts with {prefix!r}: {messages}"
    assert words in matching[0], matching[0]


def test_error_in_defaults_names_defaults(tmp_path: Path) -> None:
    path, messages = errors_of(tmp_path, "[defaults]\nssh_port = true\n" + BASE)
    assert messages == [
        f"{path}: defaults: ssh_port: expected a port number, got the boolean true "
        "(TOML true/false is not a number)"
    ]


def test_error_in_group_names_group_once(tmp_path: Path) -> None:
    text = (
        '[groups.dc1]\nssh_usr = "admin"\n'
        + BASE.replace('ssh_address = "192.0.2.21"', 'ssh_address = "192.0.2.21"\ngroups=["dc1"]')
        + '[hosts.web02]\nssh_address = "192.0.2.22"\ngroups = ["dc1"]\n'
    )
    path, messages = errors_of(tmp_path, text)
    assert messages == [f"{path}: group dc1: ssh_usr: unknown key; did you mean ssh_user?"]


def test_groups_key_is_host_level_only(tmp_path: Path) -> None:
    path, messages = errors_of(tmp_path, '[defaults]\ngroups = ["dc1"]\n' + BASE)
    assert len(messages) == 1
    assert messages[0].startswith(f"{path}: defaults: groups: ")
    assert "[hosts.NAME]" in messages[0]


def test_reserved_group_name(tmp_path: Path) -> None:
    path, messages = errors_of(tmp_path, "[groups.all]\n" + BASE)
    assert messages[0].startswith(f"{path}: group all: ")
    assert "pick another name" in messages[0]


def test_semantic_error_says_which_group_set_the_value(tmp_path: Path) -> None:
    in_group = BASE.replace(
        'ssh_address = "192.0.2.21"', 'ssh_address = "192.0.2.21"\ngroups = ["dc1"]'
    ).replace('gateway4 = "192.0.2.1"\n', "")
    text = '[groups.dc1.vrfs.mgmt0]\ngateway4 = "203.0.113.1"\n' + in_group
    path, messages = errors_of(tmp_path, text)
    assert messages == [
        f"{path}: host web01: vrfs.mgmt0.gateway4: 203.0.113.1 is outside the IPv4 subnets of "
        "mgmt0's ports (eth2: 192.0.2.0/24); a VRF gateway must be on one of its ports' "
        "segments (set in group dc1)"
    ]


def test_all_errors_in_one_pass(tmp_path: Path) -> None:
    text = (
        BASE.replace("table = 10", "table = 255")
        .replace('gateway4 = "198.51.100.1"', 'gateway4 = "203.0.113.1"')
        .replace('ssh_address = "192.0.2.21"\n', "")
    )
    path, messages = errors_of(tmp_path, text)
    assert len(messages) == 3, messages
    assert {m.split(": ")[2] for m in messages} == {
        "vrfs.mgmt0.table",
        "interfaces.eth0.gateway4",
        "ssh_address",
    }
    assert all(m.startswith(f"{path}: host web01: ") for m in messages)


def test_errors_across_hosts_and_layers_are_all_reported(tmp_path: Path) -> None:
    text = (
        '[defaults]\nbackend = "nm"\n'
        + BASE
        + '[hosts.web02]\nssh_address = "192.0.2.22"\n'
        + '[hosts.web02.vrfs.mgmt0]\ntable = 0\nports = ["eth2"]\n'
    )
    path, messages = errors_of(tmp_path, text)
    assert [m.split(": ")[1] for m in messages] == ["defaults", "host web02", "host web02"]
    assert "vrfs.mgmt0.table" in messages[1]
    assert "eth2 is not declared" in messages[2]


def test_toml_syntax_error_has_line_and_column(tmp_path: Path) -> None:
    path, messages = errors_of(tmp_path, BASE + "\n[hosts.web02]\nssh_address = \n")
    assert len(messages) == 1
    line = len(BASE.splitlines()) + 3
    column = len("ssh_address = ") + 1
    assert messages[0] == (
        f"{path}:{line}:{column}: TOML syntax error at line {line}, column {column}: Invalid value"
    )


def test_duplicate_key_is_a_toml_error(tmp_path: Path) -> None:
    path, messages = errors_of(tmp_path, BASE + '[hosts.web01]\nssh_address = "192.0.2.9"\n')
    assert messages[0].startswith(f"{path}:")
    assert "TOML syntax error" in messages[0]


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(FleetError) as caught:
        load_fleet(missing)
    assert caught.value.messages == (
        f"{missing}: no such file; write a fleet file there (see fleet.example.toml)",
    )


def test_not_utf8_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "fleet.toml"
    path.write_bytes(b'[hosts.a]\nssh_address = "\xc3\xa9\xff"\n')
    with pytest.raises(FleetError) as caught:
        load_fleet(path)
    assert caught.value.messages == (
        f"{path}:2:17: byte 0xff at line 2, column 17 is not UTF-8; TOML files must be UTF-8 "
        "text (save the file as UTF-8)",
    )


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "fleet.toml"
    path.write_bytes(b"\xef\xbb\xbf" + BASE.encode())
    assert [h.name for h in load_fleet(path).hosts] == ["web01"]


def test_link_local_gateways_are_accepted(tmp_path: Path) -> None:
    text = (
        BASE.replace('gateway6 = "2001:db8:1::1"', 'gateway6 = "fe80::1"')
        .replace('gateway6 = "2001:db8:2::1"', 'gateway6 = "fe80::2"')
        .replace(
            'routes = [{ to = "203.0.113.0/24", via = "192.0.2.254" }]',
            'routes = [{ to = "2001:db8:9::/48", via = "fe80::3" }]',
        )
    )
    (spec,) = load_fleet(write(tmp_path, text)).hosts
    assert spec.main_default_interface is not None
    assert spec.main_default_interface.gateway6 == IPv6Address("fe80::1")
    vrf = spec.vrfs[0]
    assert vrf.gateway6 == IPv6Address("fe80::2")
    assert vrf.routes[0].via == IPv6Address("fe80::3")
    # The device they need is the VRF's one IPv6 port.
    port = spec.nexthop_port(vrf, vrf.routes[0].via)
    assert port is not None and port.name == "eth2"


def test_two_hosts_on_one_address_and_port(tmp_path: Path) -> None:
    twin = '[hosts.web02]\nssh_address = "192.0.2.21"\n'
    path, messages = errors_of(tmp_path, BASE + twin)
    assert messages == [
        f"{path}: host web02: ssh_address: 192.0.2.21 port 22 (22: ssh_port is not set) is also "
        "where host web01 is reached; both entries would converge the same machine. Give each "
        "host its own ssh_address or ssh_port"
    ]
    # Same address, other ports: two machines behind one address (the lab's case).
    apart = BASE + twin + "ssh_port = 2202\n"
    assert [h.name for h in load_fleet(write(tmp_path, apart)).hosts] == ["web01", "web02"]


def test_no_hosts(tmp_path: Path) -> None:
    path, messages = errors_of(tmp_path, '[defaults]\nssh_user = "root"\n')
    assert messages == [
        f"{path}: top level: hosts: no hosts defined; add a [hosts.NAME] table per host"
    ]


def test_unknown_top_level_table(tmp_path: Path) -> None:
    path, messages = errors_of(tmp_path, '[host.x]\nssh_address = "192.0.2.1"\n' + BASE)
    assert messages == [f"{path}: top level: host: unknown table; did you mean [hosts]?"]


def test_absent_vrf_may_share_table_and_port_with_its_replacement(tmp_path: Path) -> None:
    # Renaming a VRF: the old one is torn down, the new one takes its port and table.
    text = BASE + '[hosts.web01.vrfs.oldmgmt]\ntable = 10\nports = ["eth2"]\nstate = "absent"\n'
    spec = load_fleet(write(tmp_path, text)).hosts[0]
    assert [v.name for v in spec.present_vrfs] == ["mgmt0"]
    assert [v.name for v in spec.absent_vrfs] == ["oldmgmt"]


def test_merge_defaults_groups_host(tmp_path: Path) -> None:
    text = """\
[defaults]
ssh_user = "root"
ssh_port = 22
ssh_key = "keys/id_ed25519"
backend = "networkmanager"

[groups.dc1]
ssh_user = "admin"
ssh_port = 2201

[groups.dc1.interfaces.eth2]
ipv4 = "192.0.2.99/24"
ipv6 = "2001:db8:2::99/64"

[groups.dc1.vrfs.mgmt0]
table = 10
ports = ["eth2"]
gateway4 = "192.0.2.1"
gateway6 = "2001:db8:2::1"

[groups.edge]
ssh_port = 2202
l3mdev_accept = true

[groups.edge.vrfs.mgmt0]
table = 20

[groups.unused]

[hosts.web01]
groups = ["dc1", "edge"]
ssh_address = "192.0.2.21"

[hosts.web01.interfaces.eth2]
ipv4 = "192.0.2.21/24"

[hosts.web02]
groups = ["edge", "dc1"]
ssh_address = "192.0.2.22"
ssh_user = "ops"
backend = "network-scripts"

[hosts.web02.interfaces.eth2]
ipv4 = "192.0.2.22/24"
ipv6 = "2001:db8:2::22/64"

[hosts.web02.vrfs.mgmt0]
gateway6 = "2001:db8:2::fe"
"""
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "id_ed25519").write_text("not a real key\n")
    fleet = load_fleet(write(tmp_path, text))
    web01, web02 = fleet.hosts
    assert fleet.groups == {"dc1": ("web01", "web02"), "edge": ("web01", "web02"), "unused": ()}

    # web01: dc1 then edge, so edge's port and table win; its own eth2 address wins over
    # dc1's while dc1's ipv6 stays (tables merge key by key).
    assert web01.ssh.user == "admin"
    assert web01.ssh.port == 2202
    # Relative to the fleet file's directory, and absolute for pyinfra.
    assert web01.ssh.key == str(tmp_path / "keys" / "id_ed25519")
    assert web01.backend == "networkmanager"
    assert web01.groups == ("dc1", "edge")
    assert web01.interface("eth2") == Interface(
        name="eth2",
        ipv4=IPv4Interface("192.0.2.21/24"),
        ipv6=IPv6Interface("2001:db8:2::99/64"),
    )
    assert web01.vrfs[0].table == 20
    assert web01.vrfs[0].gateway6 == IPv6Address("2001:db8:2::1")

    # web02: edge then dc1, so dc1's port and table win; the host's own keys win over all.
    assert web02.ssh.user == "ops"
    assert web02.ssh.port == 2201
    assert web02.backend == "network-scripts"
    assert web02.vrfs[0].table == 10
    assert web02.vrfs[0].gateway4 == IPv4Address("192.0.2.1")
    assert web02.vrfs[0].gateway6 == IPv6Address("2001:db8:2::fe")
    assert fleet.group("dc1") == (web01, web02)


def test_unset_ssh_keys_stay_unset(tmp_path: Path) -> None:
    spec = load_fleet(write(tmp_path, BASE)).hosts[0]
    assert spec.ssh.user is None
    assert spec.ssh.port is None
    assert spec.ssh.strict_host_key_checking is None  # pyinfra's own accept-new applies
    assert spec.backend == "auto"
    assert spec.l3mdev_accept is True


def test_example_file_is_the_seed_host() -> None:
    fleet = load_fleet(EXAMPLE)
    assert fleet.groups == {}
    assert len(fleet.hosts) == 1
    spec = fleet.hosts[0]
    assert spec.name == "alma87"
    assert spec.ssh.address == "192.168.1.217"
    assert spec.interfaces == (
        Interface(
            name="eth0",
            ipv4=IPv4Interface("192.168.22.217/24"),
            ipv6=IPv6Interface("2001:470:fe36:face::217:1/64"),
            gateway4=IPv4Address("192.168.22.1"),
            gateway6=IPv6Address("2001:470:fe36:face::1"),
            main_default=True,
        ),
        Interface(
            name="eth1",
            ipv4=IPv4Interface("192.168.52.217/24"),
            ipv6=IPv6Interface("2001:470:fe36:cafe::217:1/64"),
        ),
        Interface(
            name="eth2",
            ipv4=IPv4Interface("192.168.1.217/24"),
            ipv6=IPv6Interface("2405:6580:aa40::217:1/64"),
        ),
    )
    assert spec.vrfs == (
        Vrf(
            name="mgmt0",
            table=10,
            ports=("eth2",),
            gateway4=IPv4Address("192.168.1.1"),
            gateway6=IPv6Address("2405:6580:aa40::1"),
            routes=(),
            state="present",
        ),
    )
    assert spec.main_default_interface == spec.interfaces[0]
    assert spec.vrf_of_port("eth2") == spec.vrfs[0]
    assert spec.l3mdev_accept is True
    assert spec.ssh.strict_host_key_checking == "accept-new"


def test_example_file_commented_host_is_valid(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Its ssh_key and ssh_known_hosts_file are in ~/.ssh: give it a home that has them.
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".ssh").mkdir()
    for name in ("id_ed25519", "known_hosts"):
        (tmp_path / ".ssh" / name).write_text("")
    text = EXAMPLE.read_text(encoding="utf-8")
    start = text.index("# [groups.")
    uncommented = text[:start] + re.sub(r"^# ?", "", text[start:], flags=re.M)
    fleet = load_fleet(write(tmp_path, uncommented))
    assert [h.name for h in fleet.hosts] == ["alma87", "web01"]
    web01 = fleet.hosts[1]
    assert set(fleet.groups) == {"dc1"}
    assert fleet.groups["dc1"] == ("web01",)
    assert [v.name for v in web01.vrfs] == ["mgmt0", "backup0"]
    assert (
        web01.vrfs[1].routes
        and web01.vrfs[1].routes[0].via in IPv4Interface("203.0.113.21/26").network
    )
    for host in web01.interfaces:
        for addr in (host.ipv4, host.ipv6):
            assert addr is None or any(
                addr.ip in ip_network(doc)
                for doc in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")
            )


def test_spec_data_round_trip(tmp_path: Path) -> None:
    spec = load_fleet(write(tmp_path, BASE)).hosts[0]
    data = spec_to_data(spec)
    assert spec_from_data(data) == spec
    assert spec_from_data(spec) is spec
    assert spec.to_json() == data
    data["vrfs"]["mgmt0"]["table"] = 255
    with pytest.raises(FleetError, match=r"host data: host web01: vrfs.mgmt0.table: 255 is"):
        spec_from_data(data)


def test_a_spec_built_in_code_is_checked_by_the_same_rules(tmp_path: Path) -> None:
    spec = load_fleet(write(tmp_path, BASE)).hosts[0]
    # Built in code, not by the fleet file: checked, and equal when it is right.
    copy = replace(spec, vrfs=tuple(replace(v) for v in spec.vrfs))
    assert copy is not spec and spec_from_data(copy) == spec
    vrf = replace(spec.vrfs[0], name="mgmt0;reboot", table=254)
    with pytest.raises(FleetError) as caught:
        spec_from_data(replace(spec, vrfs=(vrf,)), source="converge(spec=...)")
    assert caught.value.messages == (
        'converge(spec=...): host web01: vrfs."mgmt0;reboot": VRF name "mgmt0;reboot" contains '
        "';'; a device name here uses only letters, digits, '_', '.' and '-', at most 15 bytes, "
        "as real interface names do",
        'converge(spec=...): host web01: vrfs."mgmt0;reboot".table: 254 is reserved (253 '
        "default, 254 main, 255 local); use 1-252 or 256-4294967295",
    )


@pytest.mark.parametrize("name", ["web01\ntouch /tmp/x #", "web 01", "web01\x1b[2J"])
def test_a_host_name_from_data_is_one_printable_word(tmp_path: Path, name: str) -> None:
    data = spec_to_data(load_fleet(write(tmp_path, BASE)).hosts[0])
    with pytest.raises(FleetError, match=r"^host data: name: .* contains .*; a host's name is"):
        spec_from_data({**data, "name": name})
    # pyinfra's own names are fine.
    assert spec_from_data({**data, "name": "@fake/web01"}).name == "@fake/web01"


def test_host_data_has_connector_keys_only_when_given(tmp_path: Path) -> None:
    text = '[defaults]\nssh_port = 2222\nssh_strict_host_key_checking = "yes"\n' + BASE
    path = write(tmp_path, text)
    fleet = load_fleet(path)
    data = host_data(fleet.hosts[0], fleet.source)
    assert data == {
        "ssh_hostname": "192.0.2.21",
        "ssh_port": 2222,
        "ssh_strict_host_key_checking": "yes",
        # Always: a burst of handshakes to a whole fleet must not fail hosts that are fine.
        "ssh_connect_retries": 2,
        "ssh_connect_retry_min_delay": 1.0,
        "ssh_connect_retry_max_delay": 5.0,
        "mgmt_vrf_spec": fleet.hosts[0],
        "mgmt_vrf_fleet_file": str(path.resolve()),
    }


def test_inventory_groups(tmp_path: Path) -> None:
    fleet: Fleet = parse_fleet(
        "[groups.dc1]\n"
        + BASE.replace('ssh_address = "192.0.2.21"', 'ssh_address = "192.0.2.21"\ngroups=["dc1"]')
        + '[hosts.web02]\nssh_address = "192.0.2.22"\n',
        source=tmp_path / "fleet.toml",
    )
    groups = inventory_groups(fleet)
    assert list(groups) == ["mgmt_vrf_hosts", "dc1"]
    assert [name for name, _ in groups["mgmt_vrf_hosts"]] == ["web01", "web02"]
    assert [name for name, _ in groups["dc1"]] == ["web01"]
    assert groups["dc1"][0][1]["mgmt_vrf_spec"] is fleet.hosts[0]


# ---------------------------------------------------------------------------------------
# inventory.py under pyinfra

LOCAL_FLEET = """\
[defaults]
ssh_address = "127.0.0.1"
ssh_user = "nobody"
ssh_known_hosts_file = "/dev/null"
ssh_strict_host_key_checking = "yes"

[groups.lab]

[hosts.one]
groups = ["lab"]
ssh_port = 1

[hosts.two]
ssh_port = 9

[hosts.two.interfaces.eth2]
ipv4 = "192.0.2.10/24"

[hosts.two.vrfs.mgmt0]
table = 10
ports = ["eth2"]
gateway4 = "192.0.2.1"
"""


def run_pyinfra(
    args: list[str], fleet: Path | None, cwd: Path = REPO, inventory: Path = REPO / "inventory.py"
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "MGMT_VRF_FLEET"}
    env["PYTHONPATH"] = str(REPO)
    if fleet is not None:
        env["MGMT_VRF_FLEET"] = str(fleet)
    return subprocess.run(
        [sys.executable, "-m", "pyinfra", "-y", str(inventory), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_pyinfra_stops_on_broken_fleet_before_connecting(tmp_path: Path) -> None:
    fleet = write(tmp_path, LOCAL_FLEET.replace("table = 10", "table = 254"))
    result = run_pyinfra(["fact", "server.Hostname"], fleet)
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"mgmt-vrf: fleet file {fleet}: 1 problem; no host was contacted:" in result.stderr
    assert (
        f"{fleet}: host two: vrfs.mgmt0.table: 254 is reserved (253 default, 254 main, "
        "255 local); use 1-252 or 256-4294967295"
    ) in result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert "Connecting" not in result.stdout + result.stderr


def test_pyinfra_stops_on_missing_ssh_key_before_connecting(tmp_path: Path) -> None:
    fleet = write(tmp_path, LOCAL_FLEET.replace('ssh_user = "nobody"', 'ssh_key = "id_nope"'))
    result = run_pyinfra(["fact", "server.Hostname"], fleet)
    assert result.returncode == 2, result.stdout + result.stderr
    assert (
        f'{fleet}: defaults: ssh_key: "id_nope" does not exist ({tmp_path / "id_nope"}, read '
        f"from {tmp_path}); it is the private key pyinfra logs in with"
    ) in result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert "Connecting" not in result.stdout + result.stderr


def test_pyinfra_refuses_a_blank_fleet_variable(tmp_path: Path) -> None:
    # Not the lab fleet: a blank variable is a mistake, e.g. MGMT_VRF_FLEET=$UNSET_VAR.
    result = run_pyinfra(["fact", "server.Hostname"], Path("  "))
    assert result.returncode == 2
    assert "MGMT_VRF_FLEET is set but only whitespace" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_pyinfra_reports_toml_syntax_error(tmp_path: Path) -> None:
    fleet = write(tmp_path, LOCAL_FLEET + "[hosts.three\n")
    result = run_pyinfra(["fact", "server.Hostname"], fleet)
    assert result.returncode == 2
    assert "TOML syntax error at line" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_pyinfra_missing_fleet_file(tmp_path: Path) -> None:
    result = run_pyinfra(["fact", "server.Hostname"], tmp_path / "nope.toml")
    assert result.returncode == 2
    assert "no such file" in result.stderr
    assert "MGMT_VRF_FLEET points to" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_pyinfra_without_lab_fleet_says_how_to_get_one(tmp_path: Path) -> None:
    # A copy of inventory.py whose lab/run/fleet.toml certainly does not exist.
    inventory = tmp_path / "inventory.py"
    shutil.copy(REPO / "inventory.py", inventory)
    result = run_pyinfra(["fact", "server.Hostname"], None, cwd=tmp_path, inventory=inventory)
    assert result.returncode == 2
    assert "python -m lab up" in result.stderr
    assert "MGMT_VRF_FLEET" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_pyinfra_debug_inventory_shows_hosts_and_spec(tmp_path: Path) -> None:
    fleet = write(tmp_path, LOCAL_FLEET)
    result = run_pyinfra(["debug-inventory"], fleet)
    assert result.returncode == 0, result.stderr
    out = result.stdout + result.stderr
    assert "--> Groups: mgmt_vrf_hosts, lab, inventory" in out
    assert '"ssh_hostname": "127.0.0.1"' in out
    assert '"table": 10' in out  # the HostSpec printed through to_json


def test_pyinfra_inventory_keeps_hosts_on_one_address_apart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pyinfra.api import State
    from pyinfra.context import ctx_state
    from pyinfra_cli.inventory import make_inventory

    monkeypatch.setenv("MGMT_VRF_FLEET", str(write(tmp_path, LOCAL_FLEET)))
    # The CLI's own loader, as `pyinfra inventory.py ...` runs it (no connection is made).
    with ctx_state.use(State()):
        inventory = make_inventory(str(REPO / "inventory.py"))
    one = inventory.get_host("one")
    two = inventory.get_host("two")
    assert (one.data.ssh_hostname, one.data.ssh_port) == ("127.0.0.1", 1)
    assert (two.data.ssh_hostname, two.data.ssh_port) == ("127.0.0.1", 9)
    assert [h.name for h in inventory.get_group("mgmt_vrf_hosts")] == ["one", "two"]
    assert [h.name for h in inventory.get_group("lab")] == ["one"]
    spec = two.data.mgmt_vrf_spec
    assert isinstance(spec, HostSpec)
    assert spec.vrfs[0].table == 10
    assert spec_from_data(spec) == spec
    assert two.data.mgmt_vrf_fleet_file == str(tmp_path / "fleet.toml")


def test_inventory_module_exposes_groups(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MGMT_VRF_FLEET", str(write(tmp_path, LOCAL_FLEET)))
    module = runpy.run_path(str(REPO / "inventory.py"))
    assert [name for name, _ in module["mgmt_vrf_hosts"]] == ["one", "two"]
    assert [name for name, _ in module["lab"]] == ["one"]


def test_rollback_timeout_merges_like_any_key(tmp_path: Path) -> None:
    (spec,) = load_fleet(write(tmp_path, BASE)).hosts
    assert spec.rollback_timeout == 120
    (spec,) = load_fleet(write(tmp_path, "[defaults]\nrollback_timeout = 60\n" + BASE)).hosts
    assert spec.rollback_timeout == 60


def test_services_are_unit_names_in_one_vrf_each(tmp_path: Path) -> None:
    text = BASE + 'services = ["sshd", "chronyd.service", "getty@tty1"]\n'
    (spec,) = load_fleet(write(tmp_path, text)).hosts
    assert spec.vrfs[0].services == ("sshd.service", "chronyd.service", "getty@tty1.service")
    assert spec.service_vrfs == {
        "sshd.service": "mgmt0",
        "chronyd.service": "mgmt0",
        "getty@tty1.service": "mgmt0",
    }
    # Host data carries them through pyinfra's inventory and back.
    assert spec_from_data(spec_to_data(spec)) == spec
    # An absent VRF runs nothing: services listed under it are refused (the kind test).
    two = text + (
        '\n[hosts.web01.interfaces.eth3]\nipv4 = "203.0.113.21/26"\n'
        '\n[hosts.web01.vrfs.oob0]\ntable = 20\nports = ["eth3"]\nservices = ["sshd"]\n'
    )
    path, messages = errors_of(tmp_path, two)
    assert messages == [
        f"{path}: host web01: vrfs.oob0.services: sshd.service is also listed for VRF mgmt0; "
        "a service runs inside one VRF"
    ]


def test_connect_timeout_reaches_paramiko_and_round_trips(tmp_path: Path) -> None:
    text = "[defaults]\nssh_connect_timeout = 90\napply_timeout = 600\nchanges_at_once = 3\n" + BASE
    fleet = load_fleet(write(tmp_path, text))
    spec = fleet.hosts[0]
    assert spec.ssh.connect_timeout == 90 and spec.apply_timeout == 600
    assert spec.changes_at_once == 3
    data = host_data(spec, fleet.source)
    # paramiko's `timeout` covers the TCP connect and the key exchange; the banner has its own.
    assert data["ssh_paramiko_connect_kwargs"] == {"timeout": 90, "banner_timeout": 90}
    assert spec_from_data(spec_to_data(spec)) == spec
