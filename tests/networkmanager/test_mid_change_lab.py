"""A host rebooted, or its NetworkManager restarted, in the middle of a change.

The controller's path is cut the moment the rollback is armed, so the change stays
unconfirmed for as long as the test needs; the test then acts on the host from inside the
lab VM (not over ssh) and heals the path, and the controller finishes its run.
- A reboot after the apply, before any confirmation: the timers die with the host, and the
  boot unit finds the change unconfirmed and rolls it back: the host's facts are those read
  before the run, and the controller says the host rolled back.
- A NetworkManager restart after the apply: the change survives it (NetworkManager reads
  the new profiles back from disk) and is confirmed.
A reboot after the confirmation keeps the new state: test_networkmanager_lab.py
(`test_our_deploy_then_a_reboot_leave_networkmanager_owning_the_vrf`) and the script-mode
suite (`test_reboot_keeps_the_vrf_without_the_controller`).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.pytest_fixture import Lab
from mgmt_vrf import paths
from tests.e2e.deploy import (
    CUT_CONNECT_TIMEOUT,
    assert_converged,
    converge_in_background,
    fact,
    with_host_keys,
)

from .test_networkmanager_lab import nmcli

# Longer than the whole test: if anything rolls this change back, it is the boot unit,
# not the host's timer.
LONG_WINDOW = 900


@pytest.fixture(scope="module")
def host(lab: Lab) -> str:
    assert lab.vm_config.get("network") == "networkmanager", "needs LAB_NETWORK=networkmanager"
    name = lab.hosts[0]
    lab.reset(name)
    return name


def fleet(lab: Lab, host: str, out: Path, **keys: int) -> Path:
    """The lab's fleet, quick to give up a connection to the host while it is cut."""
    text = lab.fleet_file.read_text()
    out.write_text(with_host_keys(text, host, ssh_connect_timeout=CUT_CONNECT_TIMEOUT, **keys))
    return out


@pytest.fixture
def cut_when_armed(lab: Lab, host: str) -> Iterator[list[subprocess.Popen[str]]]:
    """Runs begun by the test; each cut off the moment its rollback is armed. Whatever
    happens, the path is healed and the run ended."""
    runs: list[subprocess.Popen[str]] = []
    yield runs
    lab.heal(host)
    for run in runs:
        if run.poll() is None:
            run.kill()


def start_cut(lab: Lab, host: str, fleet: Path, runs: list[subprocess.Popen[str]]) -> None:
    """A converge of the host, cut once armed; back when the apply has ended, not confirmed."""
    runs.append(converge_in_background(fleet, [host]))
    lab.cut(host, when=paths.ARMED, within=180)
    # The status goes from "running" to "done" (or "failed: ...") as the apply ends.
    lab.wait_for(host, paths.APPLY_STATUS, within=240, text="done")
    assert lab.inside(host, f"cat {paths.APPLY_STATUS}").strip() == "done"
    # The change is live: NetworkManager put eth2 into the VRF.
    ports = json.loads(lab.inside(host, "ip -j link show master mgmt0"))
    assert [port["ifname"] for port in ports] == ["eth2"]
    assert lab.inside(host, f"test -e {paths.ARMED} && echo armed").strip() == "armed"


def finish(lab: Lab, host: str, run: subprocess.Popen[str], within: float) -> str:
    lab.heal(host)
    out, _ = run.communicate(timeout=within)
    return out


def test_a_reboot_before_the_confirmation_rolls_the_change_back_at_boot(
    lab: Lab, host: str, tmp_path: Path, cut_when_armed: list[subprocess.Popen[str]]
) -> None:
    long = fleet(lab, host, tmp_path / "fleet.toml", rollback_timeout=LONG_WINDOW)
    before = fact(long, host, "VrfHostState")
    start_cut(lab, host, long, cut_when_armed)

    lab.reboot(host)
    # The boot unit rolls back; read from the VM while the host is still cut off.
    lab.wait_for(host, paths.ROLLBACK_STATUS, within=240)
    unit = lab.inside(host, "journalctl -b -o cat --no-pager -u mgmt-vrf.service")
    assert "the last change was never confirmed: rolling it back" in unit, unit
    out = finish(lab, host, cut_when_armed[0], within=600)

    assert cut_when_armed[0].returncode != 0, out[-4000:]
    said = f"[{host}] mgmt-vrf: ROLLED BACK (rolled back before its deadline): the host has"
    assert said in out, out[-4000:]
    assert "not exactly as before" not in out, out[-4000:]
    assert fact(long, host, "VrfHostState") == before
    assert lab.json(host, "ip -j link show type vrf") == []
    assert "mgmt0" not in {row[0] for row in nmcli(lab, host, "-f NAME connection show")}
    # Nothing of the run is left armed for a later boot.
    assert lab.ssh(host, f"test -e {paths.ARMED}").returncode != 0


def test_a_networkmanager_restart_during_the_change_keeps_it_and_it_is_confirmed(
    lab: Lab, host: str, tmp_path: Path, cut_when_armed: list[subprocess.Popen[str]]
) -> None:
    default = fleet(lab, host, tmp_path / "fleet.toml")
    start_cut(lab, host, default, cut_when_armed)

    lab.inside(host, "systemctl restart NetworkManager.service && nm-online -s -q -t 60")
    journal = lab.inside(host, "journalctl -b -o cat --no-pager -u NetworkManager.service")
    starts = [line for line in journal.splitlines() if "NetworkManager (version" in line]
    assert len(starts) >= 2, starts
    out = finish(lab, host, cut_when_armed[0], within=600)

    assert cut_when_armed[0].returncode == 0, out[-4000:]
    assert f"[{host}] mgmt-vrf: confirmed over a new ssh connection" in out, out[-4000:]
    devices = {row[0]: row[1:] for row in nmcli(lab, host, "-f DEVICE,STATE,CONNECTION device")}
    assert devices["mgmt0"] == ["connected", "mgmt0"]
    assert devices["eth2"] == ["connected", "eth2"]
    lab.new_connection(host)
    assert_converged(lab, default, host)
