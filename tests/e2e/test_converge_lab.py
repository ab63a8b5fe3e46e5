"""The deploy on the lab's real VRF kernel over real SSH, through the real pyinfra CLI.

From the blog's broken state and from clean hosts to a management VRF that carries the
controller's own ssh session, stays converged on a second run, shows drift in a dry run,
survives reboot and can be torn down. Every host is reset before it is used.
"""

from __future__ import annotations

import math
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lab import client
from lab.pytest_fixture import Lab
from mgmt_vrf import confirm, paths

from .deploy import (
    MGMT_GW4,
    MGMT_GW6,
    SVC_GW4,
    SVC_GW6,
    TEST_ROLLBACK_TIMEOUT,
    assert_converged,
    converge,
    converge_in_background,
    cut_host_fleet,
    defaults,
    fact,
    facts,
    log_stamps,
    planned_commands,
    pyinfra,
    results,
    rollback_delay,
    with_host_keys,
    wrong_gateway_fleet,
)


@pytest.fixture(scope="module")
def fleet(lab: Lab) -> Path:
    return lab.fleet_file


@dataclass
class FirstRun:
    hosts: list[str]  # the two hosts with a good spec
    wrong: str  # the host whose management gateway is wrong in `fleet`
    fleet: Path
    run: subprocess.CompletedProcess[str]
    before: dict[str, Any]  # the wrong host's combined fact before the run
    counts: dict[str, int]  # ssh sessions each host received during the run
    apply_seconds: dict[str, float]  # from the arming to the apply's end, by each good host


@pytest.fixture(scope="module")
def first(lab: Lab, fleet: Path, tmp_path_factory: pytest.TempPathFactory) -> FirstRun:
    """One run over three hosts: lab1 from the blog's broken state and lab2 from a clean boot
    converge; lab3, also broken, has a management gateway that cuts ssh and rolls back."""
    hosts, wrong = lab.hosts[:2], lab.hosts[2]
    lab.reset(*lab.hosts[:3])
    lab.seed_broken(hosts[0], wrong)
    for host in (hosts[0], wrong):
        assert len(defaults(lab, host, 4, "main")) == 2  # the blog's duplicate defaults
    mixed = wrong_gateway_fleet(fleet, wrong, tmp_path_factory.mktemp("fleet") / "fleet.toml")
    before = fact(mixed, wrong, "VrfHostState")
    client.command_counts(reset=True)
    run = converge(mixed, [*hosts, wrong])
    counts = client.command_counts()
    took = {}
    for host in hosts:
        stamps = log_stamps(lab.check(host, f"cat {paths.RUN_LOG}"))
        took[host] = (stamps["apply done"] - stamps["rollback armed"]).total_seconds()
    return FirstRun(hosts, wrong, mixed, run, before, counts, took)


@pytest.fixture(scope="module")
def converged(first: FirstRun) -> list[str]:
    return first.hosts


def test_good_hosts_converge_while_one_rolls_back(lab: Lab, first: FirstRun) -> None:
    out = first.run.stdout + first.run.stderr
    assert first.run.returncode != 0, out[-4000:]
    assert results(first.run) == (2, 1, 0), out[-4000:]
    for host in first.hosts:
        assert f"[{host}] mgmt-vrf: confirmed over a new ssh connection" in out
        # Confirmed: the rollback timer is gone and the run says so on the host.
        assert "mgmt-vrf-rollback" not in lab.check(host, "systemctl list-timers --all")
        assert lab.ssh(host, f"test -e {paths.CONFIRMED}").returncode == 0
    assert re.search(
        rf"\[{first.wrong}\] mgmt-vrf: ROLLED BACK \(no path\): the change ended, but no new "
        rf"ssh connection could be opened within {TEST_ROLLBACK_TIMEOUT} s after it ended",
        out,
    ), out[-4000:]


def test_rolled_back_host_is_exactly_as_before_and_reachable(lab: Lab, first: FirstRun) -> None:
    host = first.wrong
    assert lab.check(host, "echo back").strip() == "back"
    assert fact(first.fleet, host, "VrfHostState") == first.before
    # The blog's state is back: its second profile, and eth2's defaults in the main table.
    assert lab.ssh(host, f"test -e {paths.ifcfg('vrf.eth2')}").returncode == 0
    assert len(defaults(lab, host, 4, "main")) == 2
    # rollback_timeout after the apply ended, by the host's own clock.
    log = lab.check(host, f"cat {paths.RUN_LOG}")
    # Not before (its whole window), and late only by the timer's and a busy host's slack.
    assert TEST_ROLLBACK_TIMEOUT - 1 <= rollback_delay(log) <= TEST_ROLLBACK_TIMEOUT + 10, log
    assert "mgmt-vrf-rollback" not in lab.check(host, "systemctl list-timers --all")
    # The change had moved sshd into the VRF (where no new connection could reach it); the
    # rollback removed its drop-in and restarted it in the default VRF.
    assert "systemctl restart sshd.service" in lab.check(host, f"cat {paths.ROLLBACK_SCRIPT}")
    assert lab.ssh(host, f"test -e {paths.dropin('sshd.service')}").returncode == 1
    pid = lab.check(host, "systemctl show -p MainPID --value sshd.service").strip()
    assert lab.check(host, f"ip vrf identify {pid}").strip() == ""
    assert lab.check(host, "systemctl is-active sshd.service").strip() == "active"


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


def test_first_run_costs_at_most_six_commands_per_host(first: FirstRun) -> None:
    # Counted by each host's sshd: probe, start, wait, verify, confirm, and one spare: a
    # wait cut by the change it waits for. A wait lasts at most WAIT_SLICE, so an apply
    # slower than that (a starved CI machine: 45 s) costs one more wait per slice, by
    # design. The rolled-back host reconnects more, also by design.
    for host in first.hosts:
        slices = max(1, math.ceil(first.apply_seconds[host] / confirm.WAIT_SLICE))
        assert first.counts[host] <= 5 + slices, (host, first.apply_seconds, client.sessions())


def test_second_run_changes_nothing(fleet: Path, converged: list[str]) -> None:
    client.command_counts(reset=True)
    run = converge(fleet, converged)
    seen = client.sessions()
    assert run.returncode == 0, run.stderr[-3000:]
    assert results(run) == (0, 0, 2)
    # One combined probe per host and nothing else (the sessions say what came instead).
    assert [len(seen[host]) for host in converged] == [1, 1], seen


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
    # NetworkManager reads the restored file only when told to; without it, nothing to run.
    reload = ["$ nmcli connection reload"] if lab.networkmanager(host) else []
    assert planned_commands(run, host) == reload
    assert results(converge(fleet, [host])) == (1, 0, 0)
    assert "IPV6_AUTOCONF=no" in lab.check(host, f"cat {path}")


def test_fact_queries_through_the_cli(fleet: Path, converged: list[str]) -> None:
    host = converged[0]
    state, table = facts(fleet, host, ("VrfHostState",), ("RouteTable", "table=main"))
    assert state["links"]["mgmt0"]["vrf_table"] == 10
    assert state["links"]["eth2"]["master"] == "mgmt0"
    assert {(r["family"], r["gateway"]) for r in table if r["dst"] == "default"} == {
        (4, SVC_GW4),
        (6, SVC_GW6),
    }


def test_a_table_others_route_with_and_a_late_l3mdev_rule_are_refused_before_any_change(
    lab: Lab, fleet: Path, converged: list[str], tmp_path: Path
) -> None:
    host = converged[0]
    # The fleet file moves mgmt0 onto table 20, which carries someone else's policy routing.
    head = f"[hosts.{host}.vrfs.mgmt0]\ntable = 10\n"
    assert head in fleet.read_text()
    moved = tmp_path / "fleet.toml"
    moved.write_text(fleet.read_text().replace(head, head.replace("10", "20")))
    # The l3mdev rule moved for IPv6 only: the controller's ssh comes in over IPv4, via mgmt0.
    lab.check(
        host,
        f"ip route add 192.0.2.128/25 via {SVC_GW4} dev eth0 table 20 && "
        "ip rule add pref 2000 from 192.0.2.99 lookup 20 && "
        "ip -6 rule add pref 33000 l3mdev protocol kernel && ip -6 rule del pref 1000 l3mdev",
    )
    try:
        run = converge(moved, [host])
        out = run.stdout + run.stderr
        assert run.returncode != 0, out[-4000:]
        assert "host state does not fit the fleet file, nothing was changed" in out
        assert (
            f"host {host}: vrfs.mgmt0.table: table 20 is already used on the host and no VRF "
            f"holds it (route 192.0.2.128/25 via {SVC_GW4} dev eth0; IPv4 rule pref 2000); "
        ) in out, out[-4000:]
        assert (
            f"host {host}: the IPv6 l3mdev rule is at pref 33000, after the main table's rule "
            "at pref 32766: "
        ) in out
        assert fact(fleet, host, "VrfDevices") == {
            "mgmt0": {"table": 10, "up": True, "ports": ["eth2"]}
        }
        assert "192.0.2.128/25" in lab.check(host, "ip route show table 20")
    finally:
        lab.check(
            host,
            "ip -6 rule add pref 1000 l3mdev protocol kernel; ip -6 rule del pref 33000 l3mdev; "
            "ip rule del pref 2000; ip route flush table 20",
        )
    assert results(converge(fleet, [host])) == (0, 0, 1)


def test_reboot_keeps_the_vrf_without_the_controller(
    lab: Lab, fleet: Path, converged: list[str]
) -> None:
    for host in converged:
        lab.reboot(host)
    # Straight after boot: the deploy waits for our boot unit instead of racing it.
    run = converge(fleet, converged)
    assert results(run) == (0, 0, 2), (run.stdout + run.stderr)[-6000:]
    # The traffic proof once (the no-change run above already read both hosts).
    assert_converged(lab, fleet, converged[0])
    for host in converged:
        # Whoever rebuilt the VRF at boot (NetworkManager from the profiles, or our boot unit
        # where NetworkManager is not running), the boot script run by hand finds it whole.
        assert "mgmt-vrf: nothing to repair" in lab.check(host, paths.CONVERGE_SCRIPT)


def test_state_absent_tears_the_vrf_down(
    lab: Lab, fleet: Path, converged: list[str], tmp_path: Path
) -> None:
    host = converged[1]
    absent = tmp_path / "fleet.toml"
    text = fleet.read_text().replace(
        f"[hosts.{host}.vrfs.mgmt0]\n", f'[hosts.{host}.vrfs.mgmt0]\nstate = "absent"\n'
    )
    assert text != fleet.read_text()
    absent.write_text(text)
    # The controller's session came in through the VRF: the teardown ends it, yet the run
    # confirms from a new connection and reports success.
    run = converge(absent, [host])
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
    assert results(run) == (1, 0, 0)
    assert fact(absent, host, "VrfDevices") == {}
    assert "master" not in lab.check(host, "ip -d link show eth2")
    assert defaults(lab, host, 4, "main") == [("unicast", SVC_GW4)]
    assert defaults(lab, host, 6, "main") == [("unicast", SVC_GW6)]
    assert "203.0.113.0/25 dev eth2" in lab.check(host, "ip route show table main")
    for path in (paths.keyfile("mgmt0"), paths.CONVERGE_SCRIPT, paths.UNIT, paths.SYSCTL_DROPIN):
        assert lab.ssh(host, f"test -e {path}").returncode == 1, path
    assert "VRF=" not in lab.check(host, f"cat {paths.ifcfg('eth2')}")
    assert lab.check(host, f"find {paths.BACKUP_DIR} -type f | wc -l").strip() != "0"
    assert results(converge(absent, [host])) == (0, 0, 1)
    lab.reboot(host)
    assert fact(absent, host, "VrfDevices") == {}
    assert results(converge(absent, [host])) == (0, 0, 1)


def vrf_entry(host: str, name: str, table: int, port: str, gateway4: str, gateway6: str) -> str:
    """A fleet-file VRF section for one host, to append to the lab's fleet file."""
    return f"""
[hosts.{host}.vrfs.{name}]
table = {table}
ports = ["{port}"]
gateway4 = "{gateway4}"
gateway6 = "{gateway6}"
"""


def test_two_vrfs_survive_reboot_and_one_is_renamed(lab: Lab, fleet: Path, tmp_path: Path) -> None:
    host = lab.hosts[2]
    lab.reset(host)
    two = tmp_path / "fleet.toml"
    two.write_text(
        fleet.read_text() + vrf_entry(host, "acc0", 20, "eth1", "192.0.2.1", "2001:db8:52::1")
    )
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
    # Two VRFs take the boot unit longer than sshd takes to answer: the deploy right
    # after boot waits for the unit, then finds nothing to do.
    lab.reboot(host)
    assert results(converge(two, [host])) == (0, 0, 1)
    assert lab.ssh(host, "ip vrf exec acc0 ping -c1 -W3 192.0.2.1").returncode == 0

    # Rename the management VRF in place: mgmt0 marked absent, oob0 takes its port and
    # table. The controller's own session comes in through that port.
    renamed = tmp_path / "renamed.toml"
    renamed.write_text(
        two.read_text().replace(
            f"[hosts.{host}.vrfs.mgmt0]\n", f'[hosts.{host}.vrfs.mgmt0]\nstate = "absent"\n'
        )
        + vrf_entry(host, "oob0", 10, "eth2", MGMT_GW4, MGMT_GW6)
    )
    run = converge(renamed, [host])
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
    assert results(run) == (1, 0, 0)
    assert fact(renamed, host, "VrfDevices") == {
        "acc0": {"table": 20, "up": True, "ports": ["eth1"]},
        "oob0": {"table": 10, "up": True, "ports": ["eth2"]},
    }
    assert defaults(lab, host, 4, "10") == [("unicast", MGMT_GW4), ("unreachable", None)]
    assert lab.ssh(host, f"ip vrf exec oob0 ping -c1 -W3 {MGMT_GW4}").returncode == 0
    assert results(converge(renamed, [host])) == (0, 0, 1)


def test_unreachable_host_fails_the_run_and_the_others_converge(
    lab: Lab, fleet: Path, tmp_path: Path
) -> None:
    good, cut = lab.hosts[1], lab.hosts[2]
    lab.reset(good, cut)
    lab.cut(cut)
    try:
        run = converge(cut_host_fleet(fleet, cut, tmp_path / "fleet.toml"), [good, cut])
        out = run.stdout + run.stderr
        assert run.returncode != 0
        assert re.search(rf"\[{cut}\].*(Could not connect|timed out|Error)", out, re.I), out[-3000:]
        assert fact(fleet, good, "VrfDevices") == {
            "mgmt0": {"table": 10, "up": True, "ports": ["eth2"]}
        }
    finally:
        lab.heal(cut)


def test_cut_during_the_change_rolls_the_host_back(lab: Lab, fleet: Path, tmp_path: Path) -> None:
    host = lab.hosts[2]
    lab.reset(host)
    short = tmp_path / "fleet.toml"
    short.write_text(
        with_host_keys(fleet.read_text(), host, rollback_timeout=TEST_ROLLBACK_TIMEOUT)
    )
    before = fact(short, host, "VrfHostState")
    run = converge_in_background(short, [host])
    try:
        # Cut the controller's path the moment the rollback is armed: the apply has just
        # started and waits 2 s before its first change, as does the controller.
        lab.cut(host, when=paths.ARMED, within=120)
        assert run.poll() is None
        # The window opens when the apply ends (seconds on the lab), then lasts
        # rollback_timeout; the rollback itself takes seconds more. Heal only after it has
        # finished, as the host itself records (read from the VM: the host is cut).
        lab.wait_for(host, paths.ROLLBACK_STATUS, within=TEST_ROLLBACK_TIMEOUT + 240)
        lab.heal(host)
        out, _ = run.communicate(timeout=600)
        assert run.returncode != 0, out[-4000:]
        assert re.search(rf"\[{host}\] mgmt-vrf: ROLLED BACK \(", out), out[-4000:]
        assert fact(short, host, "VrfHostState") == before
    finally:
        if run.poll() is None:
            run.kill()
        lab.heal(host)
