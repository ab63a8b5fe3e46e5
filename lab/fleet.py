"""Writes what other tools read about a running lab: fleet.toml and hosts.json."""

from __future__ import annotations

import json
from pathlib import Path

from lab import keys
from lab import topology as t
from lab.paths import host_networkmanager


def _q(value: str) -> str:
    return json.dumps(value)


CONNECT_TIMEOUT = 90


def fleet_toml(run: Path, hosts: int) -> str:
    out = [
        "# Written by `python -m lab up` for the running lab; regenerated on every `up`.",
        "[defaults]",
        'ssh_user = "root"',
        f"ssh_key = {_q(str(keys.client_key(run)))}",
        f"ssh_known_hosts_file = {_q(str(keys.known_hosts(run)))}",
        # Handshakes queue on the emulated VM: 50 hosts at once take about a minute.
        f"ssh_connect_timeout = {CONNECT_TIMEOUT}",
        "",
    ]
    s, a, m = t.SERVICE, t.ACCESS, t.MGMT
    for index in range(1, hosts + 1):
        name = t.host_name(index)
        out += [
            f"[hosts.{name}]",
            'ssh_address = "127.0.0.1"',
            f"ssh_port = {t.host_port(index)}",
            "",
            f"[hosts.{name}.interfaces.eth0]",
            f"ipv4 = {_q(s.host4_cidr)}",
            f"gateway4 = {_q(s.gw4)}",
            f"ipv6 = {_q(s.host6_cidr)}",
            f"gateway6 = {_q(s.gw6)}",
            "main_default = true",
            "",
            f"[hosts.{name}.interfaces.eth1]",
            f"ipv4 = {_q(a.host4_cidr)}",
            f"ipv6 = {_q(a.host6_cidr)}",
            "",
            f"[hosts.{name}.interfaces.eth2]",
            f"ipv4 = {_q(m.host4_cidr)}",
            f"ipv6 = {_q(m.host6_cidr)}",
            "",
            f"[hosts.{name}.vrfs.{t.VRF_NAME}]",
            f"table = {t.VRF_TABLE}",
            'ports = ["eth2"]',
            f"gateway4 = {_q(m.gw4)}",
            f"gateway6 = {_q(m.gw6)}",
            "",
        ]
    return "\n".join(out)


def hosts_json(run: Path, hosts: int) -> dict[str, object]:
    segments = {
        seg.host_if: {
            "role": seg.role,
            "ipv4": seg.host4_cidr,
            "ipv6": seg.host6_cidr,
            "gateway4": seg.gw4,
            "gateway6": seg.gw6,
            "gateway_if": seg.gw_if,
        }
        for seg in t.SEGMENTS
    }
    vm = json.loads((run / "vm.json").read_text())
    builds = [str(b["version"]) for b in vm.get("networkmanager") or []]
    nm = vm.get("network") == "networkmanager" and builds
    return {
        "ssh_user": "root",
        "init": vm.get("init", "runner"),
        "ssh_key": str(keys.client_key(run)),
        "ssh_known_hosts_file": str(keys.known_hosts(run)),
        "control_port": t.control_port(),
        "controller_address": t.CONTROLLER4,
        "gateway_tcp_port": t.GATEWAY_TCP_PORT,
        "router_uplink4": t.UPLINK_ROUTER4,
        "router_far6": t.ROUTER_FAR6,
        "vrf": {"name": t.VRF_NAME, "table": t.VRF_TABLE, "ports": ["eth2"]},
        "hosts": {
            t.host_name(i): {
                "ssh_address": "127.0.0.1",
                "ssh_port": t.host_port(i),
                "router_netns": t.router_ns(t.host_name(i)),
                "interfaces": segments,
                # The NetworkManager version it runs; null: none (the lab's own script).
                "networkmanager": host_networkmanager(builds, i) if nm else None,
            }
            for i in range(1, hosts + 1)
        },
    }


def write(run: Path, hosts: int) -> None:
    (run / "fleet.toml").write_text(fleet_toml(run, hosts))
    (run / "hosts.json").write_text(json.dumps(hosts_json(run, hosts), indent=2) + "\n")
