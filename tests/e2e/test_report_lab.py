"""The drift report on the lab: converged, drifted three ways, one host cut off.

The report must name exactly what was changed by hand, agree with the deploy's dry run on
which hosts drifted, keep checking the other hosts while one is unreachable, and leave every
host byte-for-byte as it found it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lab.pytest_fixture import Lab
from mgmt_vrf import paths

from .deploy import MGMT_GW6, ROOT, converge, cut_host_fleet, host_lines, pyinfra, results

STRAY_GW4 = "192.0.2.1"  # the access gateway on eth1: any main default not via eth0 is stray

SNAPSHOT = (
    "find /etc /usr/local/sbin /var/lib/mgmt-vrf -type f -print0 2>/dev/null "
    "| sort -z | xargs -0 sha256sum; "
    "ip -d link; ip route show table all; ip -6 route show table all"
)


def report(fleet: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mgmt_vrf_report", *args],
        cwd=ROOT,
        env={**os.environ, "MGMT_VRF_FLEET": str(fleet)},
        capture_output=True,
        text=True,
        timeout=600,
    )


def report_json(fleet: Path) -> tuple[int, dict[str, dict[str, Any]]]:
    run = report(fleet, "--json")
    assert run.returncode in (0, 1, 2), run.stderr[-3000:]
    data = json.loads(run.stdout)
    assert data["exit_code"] == run.returncode
    return run.returncode, {h["host"]: h for h in data["hosts"]}


def dry_run_drifted(fleet: Path, hosts: list[str]) -> set[str]:
    run = pyinfra(fleet, "deploy.py", "--dry")
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    return {h for h in hosts if any("mgmt-vrf plan (" in line for line in host_lines(run, h))}


def snapshots(lab: Lab, hosts: list[str]) -> dict[str, str]:
    return {host: lab.check(host, SNAPSHOT, timeout=120) for host in hosts}


@pytest.fixture(scope="module")
def fleet(lab: Lab) -> Iterator[Path]:
    """Every lab host converged (the report covers the whole inventory); reset at the end."""
    lab.reset(*lab.hosts)
    run = converge(lab.fleet_file, lab.hosts)
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
    assert results(run) == (len(lab.hosts), 0, 0)
    yield lab.fleet_file
    lab.reset(*lab.hosts)


def test_converged_fleet_reports_converged(lab: Lab, fleet: Path) -> None:
    run = report(fleet)
    assert run.returncode == 0, run.stdout + run.stderr[-3000:]
    lines = run.stdout.splitlines()
    count = len(lab.hosts)
    assert lines[:count] == [f"{host}  converged" for host in lab.hosts]
    assert lines[count] == f"{count} hosts: {count} converged, 0 drifted, 0 unreachable, 0 refused"
    # Then the last run of this fleet file (the fixture's converge), from its record.
    assert lines[count + 1].startswith("last run "), lines
    assert dry_run_drifted(fleet, lab.hosts) == set()


def test_three_drifts_are_named_and_nothing_changes(lab: Lab, fleet: Path) -> None:
    host = lab.hosts[1]
    # Only the IPv6 default of table 10: the IPv4 one carries this very ssh session.
    lab.check(host, f"ip -6 route del default via {MGMT_GW6} table 10")
    # An operator's MTU is no drift (not a key we own); a key we own is, named.
    lab.check(host, f"echo MTU=1400 >> {paths.ifcfg('eth2')}")
    lab.check(host, f"sed -i 's/^IPV6_AUTOCONF=no$/IPV6_AUTOCONF=yes/' {paths.ifcfg('eth2')}")
    lab.check(host, f"ip route add default via {STRAY_GW4} dev eth1 metric 300")

    before = snapshots(lab, lab.hosts)
    code, by_host = report_json(fleet)
    after = snapshots(lab, lab.hosts)

    assert code == 1
    assert by_host[host]["status"] == "drifted"
    assert by_host[host]["differences"] == [
        "ifcfg-eth2 edited: IPV6_AUTOCONF",
        f"extra IPv4 default route in main: default via {STRAY_GW4} dev eth1 metric 300",
        f"table 10 lacks default via {MGMT_GW6}",
    ]
    for other in lab.hosts:
        if other != host:
            assert by_host[other]["status"] == "converged", by_host[other]
    for name in lab.hosts:
        assert before[name] == after[name], f"{name}: the report changed the host"
    # The same plan code decides: the dry run finds the same drifted hosts.
    assert dry_run_drifted(fleet, lab.hosts) == {host}


def test_unreachable_host_is_reported_while_others_are_checked(
    lab: Lab, fleet: Path, tmp_path: Path
) -> None:
    cut = lab.hosts[-1]
    lab.cut(cut)
    try:
        code, by_host = report_json(cut_host_fleet(fleet, cut, tmp_path / "fleet.toml"))
    finally:
        lab.heal(cut)
    assert code == 2
    assert by_host[cut]["status"] == "unreachable", by_host[cut]
    assert by_host[cut]["message"]
    # The host drifted by the test above is still drifted, the others converged.
    assert by_host[lab.hosts[1]]["status"] == "drifted"
    assert by_host[lab.hosts[0]]["status"] == "converged"
