"""A session-scoped pytest fixture that brings the lab up once and down at the end.

Use it from any test folder's conftest.py, with the hook that prints what explains a
failure (the lab's diagnostics, taken before the lab goes down) at the end of the run:

    from lab.pytest_fixture import lab, pytest_terminal_summary  # noqa: F401

A lab that was already running when the session started is reused and left running
(someone else may be using it). LAB_HOSTS sets the number of hosts (default 3);
LAB_KEEP=1 leaves a lab started by the session running.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from lab import client
from lab.paths import run_dir


@dataclass
class Lab:
    hosts: list[str]
    info: dict[str, Any] = field(repr=False)
    run: Path

    @property
    def fleet_file(self) -> Path:
        return self.run / "fleet.toml"

    @property
    def vm_config(self) -> dict[str, Any]:
        """How the running lab was booted: init, cgroup and network modes (vm.json)."""
        return dict(json.loads((self.run / "vm.json").read_text()))

    def networkmanager(self, host: str) -> str | None:
        """The NetworkManager version the host runs (LAB_NM); None: the lab's own script."""
        version = self.info["hosts"][host].get("networkmanager")
        return None if version is None else str(version)

    def port(self, host: str) -> int:
        return int(self.info["hosts"][host]["ssh_port"])

    def ssh(
        self, host: str, command: str, timeout: float | None = 60
    ) -> subprocess.CompletedProcess[str]:
        return client.ssh(host, command, timeout=timeout)

    def check(self, host: str, command: str, timeout: float | None = 60) -> str:
        """Runs a command on a host and returns its stdout; fails the test if it fails."""
        r = client.ssh(host, command, timeout=timeout)
        if r.returncode != 0:
            raise AssertionError(f"{host}: `{command}` exited {r.returncode}: {r.stderr.strip()}")
        return r.stdout

    def json(self, host: str, command: str) -> Any:
        return json.loads(self.check(host, command) or "null")

    def gw(
        self, host: str, command: str, timeout: float | None = 60
    ) -> subprocess.CompletedProcess[str]:
        return client.gw(host, command, timeout=timeout)

    def counters(self, host: str) -> dict[str, dict[str, int]]:
        """Byte and packet counters of the router's links by name (svc, acc, mgmt, uplink)."""
        r = client.gw(host, "ip -j -s link show")
        out: dict[str, dict[str, int]] = {}
        for link in json.loads(r.stdout):
            stats = link.get("stats64", {})
            out[link["ifname"]] = {
                "rx_bytes": stats["rx"]["bytes"],
                "tx_bytes": stats["tx"]["bytes"],
                "rx_packets": stats["rx"]["packets"],
                "tx_packets": stats["tx"]["packets"],
            }
        return out

    def new_connection(self, host: str) -> None:
        """The next command opens a new ssh session (one from after a network change)."""
        client.new_connections([host])

    def reboot(self, *hosts: str) -> None:
        """All at once: several hosts take little longer than one."""
        client.reboot(*hosts)

    def reset(self, *hosts: str) -> None:
        client.reset(*hosts)

    def cut(self, host: str, when: str | None = None, within: float = 300) -> None:
        client.cut(host, when, within)

    def wait_for(self, host: str, path: str, within: float = 300, text: str | None = None) -> None:
        client.wait_for(host, path, within, text)

    def inside(self, host: str, command: str) -> str:
        """stdout of a command run on the host from the VM (no ssh: a cut host answers)."""
        r = client.inside(host, command)
        assert r.returncode == 0, (
            f"{host} (from the VM): {command}: exit {r.returncode}: {r.stderr}"
        )
        return r.stdout

    def heal(self, host: str) -> None:
        client.heal(host)

    def seed_broken(self, *hosts: str) -> None:
        client.seed_broken(*hosts)

    def status(self) -> dict[str, Any]:
        return client.status()

    def diagnostics(self) -> str:
        return client.diagnostics()


DIAGNOSTICS: list[str] = []


@pytest.fixture(scope="session")
def lab(request: pytest.FixtureRequest) -> Iterator[Lab]:
    wanted = int(os.environ.get("LAB_HOSTS", "3"))
    reused = client.running()
    try:
        client.up(wanted)
    except Exception:
        _diagnose()
        raise
    run = run_dir()
    info = json.loads((run / "hosts.json").read_text())
    try:
        yield Lab(hosts=sorted(info["hosts"], key=lambda n: int(n[3:])), info=info, run=run)
    finally:
        if request.session.testsfailed:
            _diagnose()
        if not reused and os.environ.get("LAB_KEEP") != "1":
            client.down()


def _diagnose() -> None:
    try:
        DIAGNOSTICS.append(client.diagnostics())
    except Exception as e:  # noqa: BLE001 - the failure being explained matters more
        DIAGNOSTICS.append(f"lab diagnostics failed: {type(e).__name__}: {e}")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    # Each test folder's conftest imports this hook; the first call prints and empties.
    while DIAGNOSTICS:
        terminalreporter.section("lab diagnostics (taken before the lab went down)")
        terminalreporter.write_line(DIAGNOSTICS.pop(0))
