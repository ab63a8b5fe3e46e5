"""The drift report on the 20 simulated hosts of the blog's broken state (tests/fake_fleet)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from mgmt_vrf.rollout import Rollout, Waves, write_record

from .test_fake_fleet import BROKEN, HOSTS, ROOT, _fleet_toml

# What the recorded broken host differs in, in plan order. tcp_l3mdev_accept was already 1.
EXPECTED = [
    "net.ipv4.udp_l3mdev_accept is not 1",
    "net.ipv6.conf.eth2.keep_addr_on_down is not 1",
    "mgmt0.nmconnection missing",
    "ifcfg-eth2 edited: IPV6_AUTOCONF, IPV6ADDR, BOOTPROTO, VRF",
    "90-mgmt-vrf.conf missing",
    "mgmt-vrf-converge missing",
    "mgmt-vrf.service missing",
    "mgmt-vrf-exec missing",
    "ifcfg-vrf.eth2 present: second profile for eth2: NetworkManager would activate only one",
    "route-vrf.eth2 present: belongs to the removed profile ifcfg-vrf.eth2",
    "route6-vrf.eth2 present: belongs to the removed profile ifcfg-vrf.eth2",
    "mgmt-vrf.service is not enabled at boot",
    "no IPv4 l3mdev rule: VRF-bound sockets would use the main table",
    "no IPv6 l3mdev rule: VRF-bound sockets would use the main table",
    "create VRF mgmt0 with table 10: missing, or on another table",
    "VRF mgmt0 is not up",
    "table 10 lacks the IPv4 unreachable default at metric 4278198272: lookups would fall "
    "through to the main table",
    "table 10 lacks the IPv6 unreachable default at metric 4278198272: lookups would fall "
    "through to the main table",
    "extra IPv4 default route in main: default via 203.0.113.1 dev eth2 metric 102",
    "extra IPv6 default route in main: default via 2001:db8:1::1 dev eth2 metric 102",
    "eth2 is not in VRF mgmt0",
    "eth2 is not up in VRF mgmt0",
    "eth2 lacks address 203.0.113.10/25 in VRF mgmt0",
    "eth2 lacks address 2001:db8:1::10/64 in VRF mgmt0",
    "table 10 lacks default via 203.0.113.1",
    "table 10 lacks default via 2001:db8:1::1",
]


def _report(tmp_path: Path, *args: str, **env_vars: str) -> subprocess.CompletedProcess[str]:
    fleet = tmp_path / "fleet.toml"
    fleet.write_text(_fleet_toml())
    env = {**os.environ, "FAKE_FLEET": str(fleet), "FAKE_PROBE_OUTPUT": str(BROKEN), **env_vars}
    return subprocess.run(
        [sys.executable, "-m", "mgmt_vrf_report", "--inventory", "tests/fake_fleet/inventory.py"]
        + list(args),
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_every_fake_host_is_drifted_with_its_differences(tmp_path: Path) -> None:
    result = _report(tmp_path, "--json")
    assert result.returncode == 1, result.stderr[-3000:]
    data = json.loads(result.stdout)
    assert [h["host"] for h in data["hosts"]] == [f"@fake/{h}" for h in HOSTS]
    for host in data["hosts"]:
        assert host["status"] == "drifted", host
        assert host["differences"] == EXPECTED, host["host"]
    assert data["totals"]["drifted"] == 20 and data["exit_code"] == 1


def test_text_report_one_line_per_host_then_totals(tmp_path: Path) -> None:
    result = _report(tmp_path, "--limit", "@fake/alma0*")
    assert result.returncode == 1, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert len(lines) == 10, lines
    assert all(" drifted: net.ipv4.udp_l3mdev_accept is not 1; " in line for line in lines[:-1])
    assert lines[-1] == "9 hosts: 0 converged, 9 drifted, 0 unreachable, 0 refused"


def test_the_report_shows_the_last_run_of_its_fleet_file(tmp_path: Path) -> None:
    fleet = tmp_path / "fleet.toml"
    waves = Waves([f"@fake/{h}" for h in HOSTS[:3]], Rollout(waves=(1,)))
    for host in waves.hosts:
        waves.planned(host, 4)
    waves.started(waves.hosts[0])
    waves.finished(waves.hosts[0], confirmed=False, detail="ROLLED BACK (no path): ...")
    for host in waves.hosts[1:]:
        waves.never_started(host)
    runs = tmp_path / "runs"
    write_record(runs / "20261207T160000Z-1.json", waves.record(str(fleet.resolve())))
    write_record(runs / "20261207T170000Z-1.json", {"fleet_file": "/other.toml", "hosts": []})
    result = _report(tmp_path, "--limit", "@fake/alma0[12]", MGMT_VRF_RUN_RECORDS=str(runs))
    lines = result.stdout.splitlines()
    assert lines[3].startswith("last run ")
    assert lines[3].endswith(
        ": 1 rolled back, 2 not started; stopped: @fake/alma01 rolled back in wave 1 "
        f"(record: {runs / '20261207T160000Z-1.json'})"
    )
    # Only the hosts the report was asked about.
    assert lines[4:] == [
        "  @fake/alma01: rolled back (wave 1): ROLLED BACK (no path): ...",
        "  @fake/alma02: not started (wave 2): @fake/alma01 rolled back in wave 1",
    ]
    data = json.loads(_report(tmp_path, "--json", MGMT_VRF_RUN_RECORDS=str(runs)).stdout)
    assert data["last_run"]["stopped"] == "@fake/alma01 rolled back in wave 1"


def test_an_unknown_limit_is_an_error(tmp_path: Path) -> None:
    result = _report(tmp_path, "--limit", "nosuchhost")
    assert result.returncode == 2
    assert "--limit nosuchhost: no host or group" in result.stderr


def test_a_broken_fleet_file_is_an_error_before_any_host(tmp_path: Path) -> None:
    fleet = tmp_path / "fleet.toml"
    fleet.write_text('[hosts.a]\nssh_address = "a.invalid"\n[hosts.a.vrfs.m]\ntable = 254\n')
    result = subprocess.run(
        [sys.executable, "-m", "mgmt_vrf_report"],
        cwd=ROOT,
        env={**os.environ, "MGMT_VRF_FLEET": str(fleet)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "no host was contacted" in result.stderr
    assert "vrfs.m.table: 254 is reserved" in result.stderr


RETRY_DRIVER = """
import json, sys
import mgmt_vrf.pyinfra.report as report
from mgmt_vrf import drift

tries = {}
real = report.check_host

def flaky(state, host):
    tries[host.name] = tries.get(host.name, 0) + 1
    # One host's first handshake fails, another host never answers.
    if host.name == HOSTS[0] and tries[host.name] == 1 or host.name == HOSTS[1]:
        return drift.unreachable(host.name, "no ssh connection: SSH error (No existing session)")
    return real(state, host)

report.check_host = flaky
reports, _ = report.run("tests/fake_fleet/inventory.py", [], parallel=5)
print(json.dumps({"tries": tries, "status": {r.host: r.status for r in reports}}))
"""


def test_a_failed_handshake_is_tried_again_before_unreachable(tmp_path: Path) -> None:
    fleet = tmp_path / "fleet.toml"
    fleet.write_text(_fleet_toml())
    env = {**os.environ, "FAKE_FLEET": str(fleet), "FAKE_PROBE_OUTPUT": str(BROKEN)}
    names = [f"@fake/{h}" for h in HOSTS[:3]]
    driver = f"HOSTS = {names[:2]!r}\n" + RETRY_DRIVER
    run = subprocess.run(
        [sys.executable, "-c", driver],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.splitlines()[-1])
    assert result["tries"][names[0]] == 2 and result["tries"][names[1]] == 2
    assert result["tries"][names[2]] == 1
    assert result["status"][names[0]] == "drifted"  # the second try read it
    assert result["status"][names[1]] == "unreachable"
