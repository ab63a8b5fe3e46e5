"""The deploy on the lab's real VRF kernel over real SSH, through the real pyinfra CLI.

From the blog's broken state and from clean hosts to a management VRF that carries the
controller's own ssh session, stays converged on a second run, shows drift in a dry run,
survives reboot and can be torn down. Every host is reset before it is used.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lab.pytest_fixture import Lab
from mgmt_vrf import paths

from .deploy import (
    MGMT_GW4,
    MGMT_GW6,
    SVC_GW4,
    SVC_GW6,
    assert_converged,
    converge,
    defaults,
    fact,
    planned_commands,
    pyinfra,
    results,
)


@pytest.fixture(scope="module")
def fleet(lab: Lab) -> Path:
    return lab.fleet_file


@pytest.fixture(scope="module")
def converged(lab: Lab, fleet: Path) -> list[str]:
    """lab1 from the blog's broken state, lab2 from a clean boot, both converged once."""
    hosts = lab.hosts[:2]
    for host in hosts:
        lab.reset(host)
    lab.seed_broken(hosts[0])
    assert len(defaults(lab, hosts[0], 4, "main")) == 2  # the blog's duplicate defaults
    run = converge(fleet, hosts)
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
    assert results(run) == (2, 0, 0)
    return hosts


def test_broken_and_clean_hosts_converge(lab: Lab, fleet: Path, converged: list[str]) -> None:
    for host in converged:
        assert_converged(lab, fleet, host)
    broken = converged[0]
    # The blog's second profile is gone, backed up outside the profile directory.
    assert lab.ssh(broken, f"test -e {paths.ifcfg('vrf.eth2')}").returncode == 1
    backups = lab.check(broken, f"find {paths.BACKUP_DIR} -type f").split()
    assert any("/ifcfg-vrf.eth2." in b for b in backups), backups
    assert any("/route-vrf.eth2." in b for b in backups), backups
    mode = lab.check(broken, f"stat -c '%a %U' {paths.keyfile('mgmt0')}").strip()
    assert mode == "600 root"


def test_second_run_changes_nothing(fleet: Path, converged: list[str]) -> None:
    run = converge(fleet, converged)
    assert run.returncode == 0, run.stderr[-3000:]
    assert results(run) == (0, 0, 2)


def test_dry_run_on_converged_hosts_lists_nothing(fleet: Path, converged: list[str]) -> None:
    run = pyinfra(fleet, "deploy.py", "--dry", hosts=converged)
    assert run.returncode == 0, run.stderr[-3000:]
    for host in converged:
        assert planned_commands(run, host) == []
    assert re.search(r"Converge management VRFs\s+-\s+-", run.stdout + run.stderr)


def test_dry_run_shows_the_repair_of_a_deleted_route(
    lab: Lab, fleet: Path, converged: list[str]
) -> None:
    host = converged[1]
    # The IPv6 default: deleting the IPv4 one would cut the controller's own ssh path.
    lab.check(host, f"ip -6 route del default via {MGMT_GW6} table 10")
    run = pyinfra(fleet, "deploy.py", "--dry", hosts=[host])
    assert run.returncode == 0, run.stderr[-3000:]
    assert planned_commands(run, host) == [f"$ ip -6 route replace default via {MGMT_GW6} table 10"]
    assert lab.check(host, "ip -6 route show table 10 default").count("via") == 0  # dry: untouched
    assert results(converge(fleet, [host])) == (1, 0, 0)
    assert defaults(lab, host, 6, "10") == [("unicast", MGMT_GW6), ("unreachable", None)]


def test_dry_run_shows_the_diff_of_an_edited_file(
    lab: Lab, fleet: Path, converged: list[str]
) -> None:
    host = converged[1]
    path = paths.ifcfg("eth2")
    lab.check(host, f"sed -i 's/^IPV6_AUTOCONF=no$/IPV6_AUTOCONF=yes/' {path}")
    run = pyinfra(fleet, "deploy.py", "--dry", hosts=[host])
    out = run.stdout + run.stderr
    lines = [line.strip() for line in out.splitlines() if f"[{host}]" in line]
    text = "\n".join(lines)
    assert f"update {path}" in text
    assert re.search(r"\]\s+-IPV6_AUTOCONF=yes$", text, re.M)
    assert re.search(r"\]\s+\+IPV6_AUTOCONF=no$", text, re.M)
    assert planned_commands(run, host) == []
    assert results(converge(fleet, [host])) == (1, 0, 0)
    assert "IPV6_AUTOCONF=no" in lab.check(host, f"cat {path}")


def test_fact_queries_through_the_cli(fleet: Path, converged: list[str]) -> None:
    host = converged[0]
    state = fact(fleet, host, "VrfHostState")
    assert state["links"]["mgmt0"]["vrf_table"] == 10
    assert state["links"]["eth2"]["master"] == "mgmt0"
    table = fact(fleet, host, "RouteTable", "table=main")
    assert {(r["family"], r["gateway"]) for r in table if r["dst"] == "default"} == {
        (4, SVC_GW4),
        (6, SVC_GW6),
    }


def test_reboot_keeps_the_vrf_without_the_controller(
    lab: Lab, fleet: Path, converged: list[str]
) -> None:
    for host in converged:
        lab.reboot(host)
    for host in converged:
        assert_converged(lab, fleet, host)
        # The lab has no NetworkManager: only our boot unit can have rebuilt the VRF. Run by
        # hand now, the same script finds nothing left to do.
        assert "mgmt-vrf: nothing to repair" in lab.check(host, paths.CONVERGE_SCRIPT)
    run = converge(fleet, converged)
    assert results(run) == (0, 0, 2)


def test_two_vrfs_on_one_host(lab: Lab, fleet: Path, tmp_path: Path) -> None:
    host = lab.hosts[2]
    lab.reset(host)
    two = tmp_path / "fleet.toml"
    two.write_text(
        fleet.read_text()
        + f"""
[hosts.{host}.vrfs.acc0]
table = 20
ports = ["eth1"]
gateway4 = "192.0.2.1"
gateway6 = "2001:db8:52::1"
"""
    )
    try:
        run = converge(two, [host])
        assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
        assert fact(two, host, "VrfDevices") == {
            "acc0": {"table": 20, "up": True, "ports": ["eth1"]},
            "mgmt0": {"table": 10, "up": True, "ports": ["eth2"]},
        }
        assert lab.ssh(host, "ip vrf exec acc0 ping -c1 -W3 192.0.2.1").returncode == 0
        assert lab.ssh(host, f"ip vrf exec mgmt0 ping -c1 -W3 {MGMT_GW4}").returncode == 0
        assert defaults(lab, host, 4, "20") == [("unicast", "192.0.2.1"), ("unreachable", None)]
        assert defaults(lab, host, 4, "main") == [("unicast", SVC_GW4)]
        assert results(converge(two, [host])) == (0, 0, 1)
    finally:
        lab.reset(host)


def test_unreachable_host_fails_the_run_and_the_others_converge(lab: Lab, fleet: Path) -> None:
    good, cut = lab.hosts[1], lab.hosts[2]
    lab.reset(good)
    lab.reset(cut)
    lab.cut(cut)
    try:
        run = converge(fleet, [good, cut], "--data", "ssh_connect_timeout=5")
        out = run.stdout + run.stderr
        assert run.returncode != 0
        assert re.search(rf"\[{cut}\].*(Could not connect|timed out|Error)", out, re.I), out[-3000:]
        assert fact(fleet, good, "VrfDevices") == {
            "mgmt0": {"table": 10, "up": True, "ports": ["eth2"]}
        }
    finally:
        lab.heal(cut)
        lab.reset(good)
        lab.reset(cut)
