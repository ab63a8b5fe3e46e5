"""A slow host never rolls back a good change; a hung apply still rolls back, by its bound.

Each host lists a service of its own, lab-slow, whose start takes longer than its
rollback_timeout (the apply restarts it inside the VRF): a busy host, a slow `nmcli --wait`
or a service slow to restart all look like this to the rollback. Every host is reset first
and again at the end.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lab.pytest_fixture import Lab
from mgmt_vrf import paths

from .deploy import converge, fact, log_stamps, results, with_host_keys
from .services import vrf_of

# The slow hosts' rollback_timeout, shorter than the default to spare the lab 40 s: what is
# proven is the same, since every window is counted the same way. Not shorter: three hosts
# confirming at once on a starved lab VM have taken more than 40 s after their applies
# ended. SLOW_START is longer: a deadline counted from the start of the apply (as it once
# was) rolls every host back.
SLOW_ROLLBACK_TIMEOUT = 80
SLOW_START = SLOW_ROLLBACK_TIMEOUT + 15
SLOW_UNIT_PATH = "/etc/systemd/system/lab-slow.service"
# /run/lab-slow makes the next starts slow; /run/lab-hang makes the next one never end.
_PRE = (
    "if [ -e /run/lab-hang ]; then rm -f /run/lab-hang; exec sleep 100000; fi; "
    f"if [ -e /run/lab-slow ]; then exec sleep {SLOW_START}; fi"
)
SLOW_UNIT = f"""[Unit]
Description=A service slow to start (lab)

[Service]
ExecStartPre=/bin/sh -c '{_PRE}'
ExecStart=/bin/sleep infinity
TimeoutStartSec=infinity

[Install]
WantedBy=multi-user.target
"""
HUNG_APPLY_TIMEOUT, HUNG_ROLLBACK_TIMEOUT = 30, 15


def install_slow(lab: Lab, host: str) -> None:
    """lab-slow installed, enabled and running (quick to start until a flag says otherwise)."""
    lab.check(
        host,
        f"cat > {SLOW_UNIT_PATH} <<'EOF'\n{SLOW_UNIT}EOF\n"
        f"ln -sf {SLOW_UNIT_PATH} /etc/systemd/system/multi-user.target.wants/lab-slow.service"
        " && systemctl daemon-reload && systemctl start lab-slow.service",
    )


def slow_fleet(fleet: Path, hosts: list[str], out: Path, **keys: int) -> Path:
    """The lab's fleet with lab-slow listed for each host's mgmt0, and any extra host keys."""
    text = fleet.read_text()
    for host in hosts:
        head = f'[hosts.{host}.vrfs.mgmt0]\ntable = 10\nports = ["eth2"]\n'
        assert head in text
        text = text.replace(head, head + 'services = ["lab-slow"]\n')
        text = with_host_keys(text, host, **keys)
    out.write_text(text)
    return out


@dataclass
class SlowRun:
    hosts: list[str]
    run: subprocess.CompletedProcess[str]
    logs: dict[str, str]  # each host's run log


@pytest.fixture(scope="module")
def slow(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlowRun]:
    hosts = lab.hosts[:3]
    lab.reset(*hosts)
    for host in hosts:
        install_slow(lab, host)
        lab.check(host, "touch /run/lab-slow")
    out = tmp_path_factory.mktemp("slow") / "fleet.toml"
    fleet = slow_fleet(lab.fleet_file, hosts, out, rollback_timeout=SLOW_ROLLBACK_TIMEOUT)
    # Every host at once.
    run = converge(fleet, hosts)
    logs = {host: lab.check(host, f"cat {paths.RUN_LOG}") for host in hosts}
    yield SlowRun(hosts, run, logs)
    lab.reset(*hosts)


def test_slow_applies_all_at_once_are_all_confirmed(lab: Lab, slow: SlowRun) -> None:
    out = slow.run.stdout + slow.run.stderr
    assert slow.run.returncode == 0, out[-4000:]
    assert results(slow.run) == (len(slow.hosts), 0, 0), out[-4000:]
    assert "ROLLED BACK" not in out
    for host in slow.hosts:
        assert f"[{host}] mgmt-vrf: confirmed over a new ssh connection" in out
        log = slow.logs[host]
        stamps = log_stamps(log)
        # The apply alone took longer than rollback_timeout, and nothing rolled back.
        took = (stamps["apply done"] - stamps["apply started"]).total_seconds()
        assert took > SLOW_ROLLBACK_TIMEOUT, log
        assert "rollback started" not in log, log
        assert lab.ssh(host, f"test -e {paths.CONFIRMED}").returncode == 0
        assert "mgmt-vrf-rollback" not in lab.check(host, "systemctl list-timers --all")
        # The slow service is the change's own: it now runs inside the VRF.
        assert vrf_of(lab, host, "lab-slow.service") == "mgmt0"


def test_the_host_said_when_its_rollback_was_due(slow: SlowRun) -> None:
    # rollback_timeout from the apply's end, by the host's clock, as the log says.
    for host in slow.hosts:
        stamps = log_stamps(slow.logs[host])
        due = re.search(r"mgmt-vrf: rollback due (\S+) unless confirmed", slow.logs[host])
        assert due, slow.logs[host]
        window = log_stamps(f"mgmt-vrf: rollback done {due.group(1)}")["rollback done"]
        seconds = (window - stamps["apply done"]).total_seconds()
        assert seconds == pytest.approx(SLOW_ROLLBACK_TIMEOUT, abs=3)


@pytest.fixture
def hung(lab: Lab, slow: SlowRun, tmp_path: Path) -> tuple[str, Any, Path]:
    host = slow.hosts[0]
    lab.reset(host)
    install_slow(lab, host)
    fleet = slow_fleet(
        lab.fleet_file,
        [host],
        tmp_path / "fleet.toml",
        apply_timeout=HUNG_APPLY_TIMEOUT,
        rollback_timeout=HUNG_ROLLBACK_TIMEOUT,
    )
    before = fact(fleet, host, "VrfHostState")
    # The module's fixture resets every host at its end.
    return host, before, fleet


def test_a_hung_apply_rolls_back_by_the_hard_bound(lab: Lab, hung: tuple[str, Any, Path]) -> None:
    host, before, fleet = hung
    lab.check(host, "touch /run/lab-hang")
    run = converge(fleet, [host])
    out = run.stdout + run.stderr
    assert run.returncode != 0, out[-4000:]
    assert f"[{host}] mgmt-vrf: ROLLED BACK (apply hung): the change was still running" in out, out[
        -4000:
    ]
    assert "Fix the fleet file" not in out
    log = lab.check(host, f"cat {paths.RUN_LOG}")
    stamps = log_stamps(log)
    assert "apply done" not in stamps, log
    assert "the apply was still running; stopping it" in log
    # Counted from the arming: on a busy host the apply's own first line comes seconds later.
    bound = (stamps["rollback started"] - stamps["rollback armed"]).total_seconds()
    hard = HUNG_APPLY_TIMEOUT + HUNG_ROLLBACK_TIMEOUT
    assert hard - 1 <= bound <= hard + 10, log
    # Back exactly as before, the service outside the VRF and running again.
    assert fact(fleet, host, "VrfHostState") == before
    assert lab.check(host, "systemctl is-active lab-slow.service").strip() == "active"
    assert vrf_of(lab, host, "lab-slow.service") == ""
