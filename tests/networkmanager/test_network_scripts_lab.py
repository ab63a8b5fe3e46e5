"""The network-scripts backend, on the host of this lab that runs no NetworkManager.

AlmaLinux 8 still ships the legacy network-scripts; where an operator disables NetworkManager,
ifup reads the ifcfg files at boot. The lab's own script stands in for them (it brings up the
addresses and reads no VRF), so after a reboot only our boot unit can rebuild the VRF. From the
blog's broken files: converge, traffic through the VRF, reboot, a run with no change, absent.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.pytest_fixture import Lab
from mgmt_vrf import paths
from tests.e2e.deploy import assert_converged, converge, fact, results


@pytest.fixture(scope="module")
def host(lab: Lab) -> Iterator[str]:
    without = [h for h in lab.hosts if lab.networkmanager(h) is None]
    assert without, (
        "no host of this lab runs without NetworkManager: add 'none' to LAB_NM "
        f"(the lab runs {[lab.networkmanager(h) for h in lab.hosts]})"
    )
    host = without[0]
    lab.seed_broken(host)
    yield host
    lab.reset(host)


def test_host_without_networkmanager_converges_from_the_blogs_files(lab: Lab, host: str) -> None:
    assert lab.ssh(host, "systemctl is-active NetworkManager.service").returncode != 0
    assert lab.ssh(host, f"test -e {paths.ifcfg('vrf.eth2')}").returncode == 0
    run = converge(lab.fleet_file, [host])
    assert results(run) == (1, 0, 0), (run.stdout + run.stderr)[-4000:]
    assert_converged(lab, lab.fleet_file, host)
    assert lab.ssh(host, f"test -e {paths.ifcfg('vrf.eth2')}").returncode == 1
    run = converge(lab.fleet_file, [host])
    assert results(run) == (0, 0, 1), (run.stdout + run.stderr)[-4000:]


def test_boot_unit_alone_rebuilds_the_vrf_after_a_reboot(lab: Lab, host: str) -> None:
    lab.reboot(host)
    run = converge(lab.fleet_file, [host])
    assert results(run) == (0, 0, 1), (run.stdout + run.stderr)[-4000:]
    log = lab.check(host, f"journalctl -b -u {paths.UNIT_NAME} --no-pager -o cat")
    # Nothing else builds a VRF on this host: the boot run found it missing and built it.
    assert "mgmt-vrf: nothing to repair" not in log, log
    assert "mgmt-vrf: nothing to repair" in lab.check(host, paths.CONVERGE_SCRIPT)
    assert_converged(lab, lab.fleet_file, host)


def test_absent_leaves_no_vrf_and_survives_a_reboot(lab: Lab, host: str, tmp_path: Path) -> None:
    absent = tmp_path / "fleet.toml"
    section = f"[hosts.{host}.vrfs.mgmt0]\n"
    text = lab.fleet_file.read_text()
    assert section in text
    absent.write_text(text.replace(section, f'{section}state = "absent"\n'))
    run = converge(absent, [host])
    assert results(run) == (1, 0, 0), (run.stdout + run.stderr)[-4000:]
    assert fact(absent, host, "VrfDevices") == {}
    assert "VRF=" not in lab.check(host, f"cat {paths.ifcfg('eth2')}")
    lab.reboot(host)
    assert fact(absent, host, "VrfDevices") == {}
    assert "master" not in lab.check(host, "ip -d link show eth2")
    assert results(converge(absent, [host])) == (0, 0, 1)
