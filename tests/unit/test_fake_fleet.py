"""A 20-host fleet in the blog's broken state, through the real pyinfra CLI on @fake hosts.

Each simulated host answers the combined fact with output recorded on a real lab host in
the blog's broken state (tests/fixtures/probe/lab-broken.txt). The dry run must list, per
host, exactly the commands and file diffs that fix it; a real run executes them and a
second plan from a converged host would be empty (tests/unit/test_plan.py).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, cast

ROOT = Path(__file__).resolve().parents[2]
BROKEN = ROOT / "tests" / "fixtures" / "probe" / "lab-broken.txt"
CONVERGED = ROOT / "tests" / "fixtures" / "probe" / "lab-converged.txt"
HOSTS = [f"alma{i:02d}" for i in range(1, 21)]


def _fleet_toml(defaults: str = "", tables: str = "") -> str:
    parts = [f'{tables}[defaults]\nssh_user = "root"\n{defaults}']
    parts.append(
        """
[groups.lab]
[groups.lab.interfaces.eth0]
ipv4 = "198.51.100.10/25"
gateway4 = "198.51.100.1"
ipv6 = "2001:db8:100::10/64"
gateway6 = "2001:db8:100::1"
main_default = true

[groups.lab.interfaces.eth1]
ipv4 = "192.0.2.10/25"
ipv6 = "2001:db8:52::10/64"

[groups.lab.interfaces.eth2]
ipv4 = "203.0.113.10/25"
ipv6 = "2001:db8:1::10/64"

[groups.lab.vrfs.mgmt0]
table = 10
ports = ["eth2"]
gateway4 = "203.0.113.1"
gateway6 = "2001:db8:1::1"
"""
    )
    for name in HOSTS:
        parts.append(f'\n[hosts.{name}]\ngroups = ["lab"]\nssh_address = "{name}.invalid"\n')
    return "".join(parts)


def _pyinfra(
    tmp_path: Path,
    *args: str,
    defaults: str = "",
    tables: str = "",
    deploy: str = "deploy.py",
    **env_vars: str,
) -> subprocess.CompletedProcess[str]:
    fleet = tmp_path / "fleet.toml"
    fleet.write_text(_fleet_toml(defaults, tables))
    env = {
        **os.environ,
        "FAKE_FLEET": str(fleet),
        "FAKE_PROBE_OUTPUT": str(BROKEN),
        "FAKE_AFTER_OUTPUT": str(CONVERGED),
        "MGMT_VRF_RUN_RECORDS": str(tmp_path / "runs"),
        **env_vars,
    }
    return subprocess.run(
        [sys.executable, "-m", "pyinfra", "tests/fake_fleet/inventory.py", deploy, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


# The recorded host already had tcp_l3mdev_accept=1, so that sysctl is not in the plan.
EXPECTED_COMMANDS = [
    "$ sysctl -q -w net.ipv4.udp_l3mdev_accept=1",
    "$ sysctl -q -w net/ipv6/conf/eth2/keep_addr_on_down=1",
    "$ ip -4 rule add pref 1000 l3mdev protocol kernel",
    "$ ip -6 rule add pref 1000 l3mdev protocol kernel",
    "$ ip link add dev mgmt0 type vrf table 10",
    "$ ip link set dev mgmt0 up",
    "$ ip -4 route replace unreachable default metric 4278198272 table 10",
    "$ ip -6 route replace unreachable default metric 4278198272 table 10",
    "$ ip link set dev eth2 master mgmt0",
    "$ ip link set dev eth2 up",
    "$ ip -4 addr replace 203.0.113.10/25 dev eth2",
    "$ ip -6 addr replace 2001:db8:1::10/64 dev eth2",
    "$ ip -4 route replace default via 203.0.113.1 table 10",
    "$ ip -6 route replace default via 2001:db8:1::1 table 10",
]


def _host_lines(output: str, host: str) -> list[str]:
    prefix = re.compile(rf"^\s*\[@fake/{re.escape(host)}\]\s+")
    return [prefix.sub("", line) for line in output.splitlines() if prefix.match(line)]


def test_dry_run_prints_each_hosts_repair(tmp_path: Path) -> None:
    result = _pyinfra(tmp_path, "--dry")
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    for host in HOSTS:
        lines = [line.split("    # ")[0].strip() for line in _host_lines(output, host)]
        commands = [line for line in lines if line.startswith("$ ")]
        # The stray main-table defaults through eth2 (the blog's "delete default twice")
        # are removed one by one, exactly as recorded on the broken lab host.
        strays = [c for c in commands if " route del default " in c]
        assert strays and all("dev eth2" in c and "table main" in c for c in strays), commands
        assert [
            c for c in commands if c not in strays and "mkdir" not in c and "ln -sfn" not in c
        ] == (EXPECTED_COMMANDS), f"{host}: {commands}"
        # The diff of the VRF keyfile and of the port's one profile are shown.
        assert "+type=vrf" in lines and "+VRF=mgmt0" in lines, lines
        # The blog's second profile for eth2 is removed, with a backup.
        assert any(
            line.startswith("remove /etc/sysconfig/network-scripts/ifcfg-vrf.eth2")
            for line in lines
        ), lines


def test_real_run_on_fake_hosts_changes_every_host(tmp_path: Path) -> None:
    result = _pyinfra(tmp_path, "-y")
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert re.search(r"Converge management VRFs\s+20\s+20\s+-\s+-", output), output[-2000:]
    # Under -y pyinfra skips the prepare phase; the plan is still printed for every host,
    # and every host's change is confirmed from a new connection.
    for host in HOSTS:
        lines = "\n".join(_host_lines(output, host))
        assert "$ ip link add dev mgmt0 type vrf table 10" in lines
        assert "rollback due 120 s after the apply ends (at the latest 420 s" in lines
        assert "confirmed over a new ssh connection, rollback disarmed" in lines
        # One line per change: files by their size, their diffs only with --diff or --dry.
        assert "create /usr/local/sbin/mgmt-vrf-exec (mode 0755, +84 -0 lines) # " in lines
        assert "+type=vrf" not in lines and "(each file's diff: run with --diff" in lines
        assert len(_host_lines(output, host)) < 40


def test_diff_shows_each_files_diff_in_a_real_run(tmp_path: Path) -> None:
    result = _pyinfra(tmp_path, "-y", "--diff", "--limit", f"@fake/{HOSTS[0]}")
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line.strip() for line in _host_lines(result.stdout + result.stderr, HOSTS[0])]
    assert "+type=vrf" in lines and "+VRF=mgmt0" in lines and "-IPV6_AUTOCONF=yes" in lines
    assert "create /usr/local/sbin/mgmt-vrf-exec (mode 0755) # " in "\n".join(lines)
    assert not [line for line in lines if "run with --diff" in line]


def test_hosts_past_changes_at_once_wait_for_a_slot_and_all_converge(tmp_path: Path) -> None:
    result = _pyinfra(tmp_path, "-y", defaults="changes_at_once = 3\n")
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert re.search(r"Converge management VRFs\s+20\s+20\s+-\s+-", output), output[-2000:]
    waited = [host for host in HOSTS if "waiting to start" in "\n".join(_host_lines(output, host))]
    # pyinfra starts every host at once: all but the first three wait their turn.
    assert len(waited) == len(HOSTS) - 3, output[-3000:]
    assert "waiting to start: 3 hosts are changing (changes_at_once = 3)" in output
    for host in HOSTS:
        assert "confirmed over a new ssh connection" in "\n".join(_host_lines(output, host))


def _record(tmp_path: Path) -> dict[str, Any]:
    records = sorted((tmp_path / "runs").glob("*.json"))
    assert len(records) == 1, records
    return cast(dict[str, Any], json.loads(records[0].read_text()))


def _outcomes(record: dict[str, Any]) -> dict[str, tuple[str, int | None]]:
    return {e["host"].removeprefix("@fake/"): (e["outcome"], e["wave"]) for e in record["hosts"]}


def test_waves_stop_at_the_first_rollback_and_leave_the_rest_untouched(tmp_path: Path) -> None:
    # alma01 is the canary, alma02 alone in wave 2 rolls back: nobody after it starts.
    rollout = "[rollout]\nwaves = [1, 1, 3]\n"
    result = _pyinfra(tmp_path, "-y", tables=rollout, FAKE_CUT_HOSTS="alma02")
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    outcomes = _outcomes(_record(tmp_path))
    assert outcomes["alma01"] == ("confirmed", 1)
    assert outcomes["alma02"] == ("rolled back", 2)
    assert outcomes["alma03"] == ("not started", 3) and outcomes["alma06"] == ("not started", 4)
    assert {o for host, (o, _) in outcomes.items() if host not in ("alma01", "alma02")} == {
        "not started"
    }
    for host in HOSTS[2:]:
        lines = "\n".join(_host_lines(output, host))
        assert (
            "not started, the host is untouched: the rollout stopped (@fake/alma02 rolled back "
            in (lines)
        ), lines
        assert "mgmt-vrf-start" not in lines and "confirmed over" not in lines
    assert (
        "[@fake/alma02] mgmt-vrf: in wave 2 (waves = [1, 1, 3], failures_allowed = 0): "
        "waiting for the waves before it to confirm" in output
    )
    assert "the rollout stopped: @fake/alma02 rolled back in wave 2. " in output
    assert "record: " + str(tmp_path / "runs") in output


def test_a_second_run_resumes_in_waves_with_the_hosts_left(tmp_path: Path) -> None:
    # The run above, fixed: alma01 has nothing left to do; the others go in waves, the
    # canary first again.
    rollout = '[rollout]\nwaves = [1, "25%"]\n'
    result = _pyinfra(tmp_path, "-y", tables=rollout, FAKE_CONVERGED_HOSTS="alma01")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    record = _record(tmp_path)
    assert record["stopped"] is None and record["rollout"]["waves"] == [1, "25%"]
    outcomes = _outcomes(record)
    assert outcomes["alma01"] == ("unchanged", None)
    assert outcomes["alma02"] == ("confirmed", 1)
    # 25% of the run's 20 hosts: waves of 5 after the canary.
    assert [outcomes[h][1] for h in HOSTS[2:8]] == [2, 2, 2, 2, 2, 3]
    assert {o for o, _ in list(outcomes.values())[1:]} == {"confirmed"}
    # Every change began only after the wave before it had ended.
    ended = {e["host"]: e["ended"] for e in record["hosts"]}
    started = {e["host"]: e["started"] for e in record["hosts"]}
    assert started["@fake/alma03"] >= ended["@fake/alma02"]


def test_a_bad_rollout_is_refused_before_any_host_is_contacted(tmp_path: Path) -> None:
    rollout = '[rollout]\nwaves = [0, "150%"]\nfailure_allowed = 1\n'
    result = _pyinfra(tmp_path, "-y", tables=rollout)
    assert result.returncode != 0
    fleet = tmp_path / "fleet.toml"
    assert f"{fleet}: rollout: waves: entry 1: 0 is outside 1..1000 hosts" in result.stderr
    assert (
        f"{fleet}: rollout: failure_allowed: unknown key; did you mean failures_allowed?"
        in result.stderr
    )
    assert not (tmp_path / "runs").exists()


# alma03's spec, built in code, fails the fleet file's checks; the others are good.
ONE_BAD_SPEC_DEPLOY = """
from dataclasses import replace

from pyinfra import host

from mgmt_vrf.pyinfra.hostspec import host_rollout, host_spec
from mgmt_vrf.pyinfra.operations import converge

spec = host_spec(host)
if host.name.endswith("alma03"):
    spec = replace(spec, vrfs=(replace(spec.vrfs[0], table=254),))
converge(name="Management VRF", spec=spec, rollout=host_rollout(host))
"""


def test_a_host_that_fails_before_planning_counts_and_holds_nobody_up(tmp_path: Path) -> None:
    # Its failure is a failure of the rollout (failures_allowed = 0): the hosts that would
    # wait for its plan are told the rollout stopped, instead of waiting for ever.
    deploy = tmp_path / "one_bad.py"
    deploy.write_text(ONE_BAD_SPEC_DEPLOY)
    rollout = "[rollout]\nwaves = [1, 1]\n"
    result = _pyinfra(tmp_path, "-y", tables=rollout, deploy=str(deploy))
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "Traceback" not in output, output[-3000:]
    record = _record(tmp_path)
    outcomes = _outcomes(record)
    assert outcomes["alma03"][0] == "failed"
    assert record["stopped"] == (
        "1 host failed before changing (last: @fake/alma03), more than failures_allowed = 0"
    )
    assert {o for o, _ in outcomes.values()} <= {"confirmed", "failed", "not started"}
    assert outcomes["alma20"][0] == "not started"


def test_broken_fixture_is_a_real_lab_capture() -> None:
    text = BROKEN.read_text()
    assert text.rstrip().endswith("##mgmt-vrf## end")
    assert "ifcfg-vrf.eth2" in text


# A deploy of the user's own that builds the spec in code, with two mistakes in it.
CODE_BUILT_DEPLOY = """
from dataclasses import replace

from pyinfra import host

from mgmt_vrf.pyinfra.hostspec import host_spec
from mgmt_vrf.pyinfra.operations import converge

spec = host_spec(host)
vrf = replace(spec.vrfs[0], name="mgmt0;reboot", table=254)
converge(name="Management VRF", spec=replace(spec, vrfs=(vrf,)))
"""


def test_a_spec_built_in_code_is_checked_by_the_fleet_files_rules(tmp_path: Path) -> None:
    deploy = tmp_path / "code_deploy.py"
    deploy.write_text(CODE_BUILT_DEPLOY)
    fleet = tmp_path / "fleet.toml"
    fleet.write_text(_fleet_toml())
    env = {**os.environ, "FAKE_FLEET": str(fleet), "FAKE_PROBE_OUTPUT": str(BROKEN)}
    result = subprocess.run(
        [sys.executable, "-m", "pyinfra", "tests/fake_fleet/inventory.py", str(deploy), "--dry"]
        + ["--limit", f"@fake/{HOSTS[0]}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "Traceback" not in output, output[-3000:]
    assert "the spec does not pass the fleet file's checks, nothing was changed" in output
    assert (
        f'converge(spec=...): host {HOSTS[0]}: vrfs."mgmt0;reboot": VRF name "mgmt0;reboot" '
        "contains ';'"
    ) in output, output[-3000:]
    assert f'host {HOSTS[0]}: vrfs."mgmt0;reboot".table: 254 is reserved' in output
    assert "mgmt-vrf plan" not in output
