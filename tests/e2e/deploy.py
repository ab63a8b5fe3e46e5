"""Running the real pyinfra CLI against the lab, and reading hosts the way a user would."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from lab import client
from lab.errors import LabError
from lab.pytest_fixture import Lab

ROOT = Path(__file__).resolve().parents[2]

SVC_GW4, SVC_GW6 = "198.51.100.1", "2001:db8:100::1"
MGMT_GW4, MGMT_GW6 = "203.0.113.1", "2001:db8:1::1"
ETH0_4, ETH2_4 = "198.51.100.10", "203.0.113.10"
UNREACHABLE = 4278198272

WRONG_GW4 = "203.0.113.99"
TEST_ROLLBACK_TIMEOUT = 30


def with_host_keys(text: str, host: str, **keys: int) -> str:
    """A fleet file's text with top-level keys added to one host's table."""
    head = f"[hosts.{host}]\n"
    assert head in text, f"{host} has no table of its own in the fleet file"
    return text.replace(head, head + "".join(f"{key} = {value}\n" for key, value in keys.items()))


# The lab's fleet waits up to 90 s for a handshake (50 emulated hosts at once are slow to
# answer); a host the test cuts off is given up on quickly instead.
CUT_CONNECT_TIMEOUT = 5


def cut_host_fleet(fleet: Path, host: str, out: Path) -> Path:
    """The fleet file with a short ssh_connect_timeout for the host a test cuts off."""
    out.write_text(with_host_keys(fleet.read_text(), host, ssh_connect_timeout=CUT_CONNECT_TIMEOUT))
    return out


def wrong_gateway_fleet(fleet: Path, host: str, out: Path) -> Path:
    """A management gateway that cuts ssh, with sshd listed to run inside the VRF: the
    rollback must also put sshd back as it was."""
    text = fleet.read_text()
    good = f'[hosts.{host}.vrfs.mgmt0]\ntable = 10\nports = ["eth2"]\ngateway4 = "{MGMT_GW4}"'
    assert good in text
    wrong = good.replace(MGMT_GW4, WRONG_GW4).replace(
        'ports = ["eth2"]\n', 'ports = ["eth2"]\nservices = ["sshd"]\n'
    )
    text = text.replace(good, wrong)
    out.write_text(with_host_keys(text, host, rollback_timeout=TEST_ROLLBACK_TIMEOUT))
    return out


def pyinfra(
    fleet: Path, *args: str, hosts: list[str] | None = None, timeout: float = 900
) -> subprocess.CompletedProcess[str]:
    limits = [arg for host in hosts or [] for arg in ("--limit", host)]
    env = {**os.environ, "MGMT_VRF_FLEET": str(fleet)}
    try:
        return subprocess.run(
            [sys.executable, "-m", "pyinfra", "inventory.py", *args, *limits],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    finally:
        # The run may have changed the hosts' network: the harness reconnects after it.
        with contextlib.suppress(LabError):  # a lab that is gone has nothing to close
            client.new_connections(hosts)


def converge_in_background(fleet: Path, hosts: list[str]) -> subprocess.Popen[str]:
    limits = [arg for host in hosts for arg in ("--limit", host)]
    return subprocess.Popen(
        [sys.executable, "-m", "pyinfra", "inventory.py", "deploy.py", "-y", *limits],
        cwd=ROOT,
        env={**os.environ, "MGMT_VRF_FLEET": str(fleet)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def converge(fleet: Path, hosts: list[str], *extra: str) -> subprocess.CompletedProcess[str]:
    return pyinfra(fleet, "deploy.py", "-y", *extra, hosts=hosts)


def results(run: subprocess.CompletedProcess[str]) -> tuple[int, int, int]:
    """(success, error, no change) from pyinfra's results table."""
    out = run.stdout + run.stderr
    m = re.search(r"Converge management VRFs\s+(\d+)\s+(\S+)\s+(\S+)\s+(\S+)", out)
    assert m, out[-3000:]
    return tuple(0 if v == "-" else int(v) for v in m.groups()[1:])  # type: ignore[return-value]


def host_lines(run: subprocess.CompletedProcess[str], host: str) -> list[str]:
    prefix = re.compile(rf"^\s*\[{re.escape(host)}\]\s?")
    out = run.stdout + run.stderr
    return [prefix.sub("", line) for line in out.splitlines() if prefix.match(line)]


def planned_commands(run: subprocess.CompletedProcess[str], host: str) -> list[str]:
    return [
        line.strip().split("    # ")[0]
        for line in host_lines(run, host)
        if line.strip().startswith("$ ")
    ]


def facts(fleet: Path, host: str, *queries: tuple[str, ...]) -> list[Any]:
    """Several facts in one pyinfra run (one start, one connection): each query is the
    fact's name and its arguments, ("RouteTable", "table=10")."""
    words = [w for name, *args in queries for w in (f"facts.vrf.{name}", *args)]
    run = pyinfra(fleet, "fact", *words, "--json", hosts=[host], timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    # Keyed by name and arguments (`facts.vrf.RouteTable (table=10)`), in the order asked;
    # a fact that failed is left out, so the count is checked.
    by_fact = list(json.loads(run.stdout).values())
    assert len(by_fact) == len(queries), run.stderr[-3000:]
    return [by_host[host] for by_host in by_fact]


def fact(fleet: Path, host: str, name: str, *args: str) -> Any:
    (value,) = facts(fleet, host, (name, *args))
    return value


def defaults(lab: Lab, host: str, family: int, table: str) -> list[tuple[str, str | None]]:
    routes = lab.json(host, f"ip -j -{family} route show table {table} default") or []
    return [(r.get("type", "unicast"), r.get("gateway")) for r in routes]


def ssh_banner(lab: Lab, host: str, address: str) -> str:
    """What sshd says first on a TCP connection from the host's router. Read-only (-u):
    an early EOF from our side can make sshd hang up before its banner."""
    return lab.gw(host, f"timeout 5 socat -u TCP:{address}:22,connect-timeout=3 -").stdout


def assert_converged(lab: Lab, fleet: Path, host: str) -> None:
    """Facts and traffic both say: management through the VRF, services through main."""
    devices, routes = facts(fleet, host, ("VrfDevices",), ("RouteTable", "table=10"))
    assert devices == {"mgmt0": {"table": 10, "up": True, "ports": ["eth2"]}}
    table10 = {(r["family"], r["type"], r["gateway"]) for r in routes}
    assert {(4, "unicast", MGMT_GW4), (6, "unicast", MGMT_GW6)} <= table10
    assert {(4, "unreachable", None), (6, "unreachable", None)} <= table10

    assert defaults(lab, host, 4, "10") == [("unicast", MGMT_GW4), ("unreachable", None)]
    assert defaults(lab, host, 6, "10") == [("unicast", MGMT_GW6), ("unreachable", None)]
    assert defaults(lab, host, 4, "main") == [("unicast", SVC_GW4)]
    assert defaults(lab, host, 6, "main") == [("unicast", SVC_GW6)]
    sysctls = lab.check(host, "sysctl -n net.ipv4.tcp_l3mdev_accept net.ipv4.udp_l3mdev_accept")
    assert sysctls.split() == ["1", "1"]

    # The management gateway reaches eth2 (ping, and TCP: sshd's banner comes back).
    assert lab.gw(host, f"ping -c2 -W3 {ETH2_4}").returncode == 0
    assert "SSH-2.0" in ssh_banner(lab, host, ETH2_4)
    # The service gateway reaches eth0.
    assert lab.gw(host, f"ping -c2 -W3 {ETH0_4}").returncode == 0
    assert "SSH-2.0" in ssh_banner(lab, host, ETH0_4)

    # Our own ssh session comes from off-link through the management gateway: its answers
    # now leave through eth2 (the router receives them on its mgmt link), not eth0.
    before = lab.counters(host)
    lab.check(host, "head -c 300000 /dev/urandom | base64")
    after = lab.counters(host)
    assert after["mgmt"]["rx_bytes"] - before["mgmt"]["rx_bytes"] > 300000
    assert after["svc"]["rx_bytes"] - before["svc"]["rx_bytes"] < 50000

    # Programs reach the management gateway inside the VRF, and not from the default VRF.
    assert lab.ssh(host, f"ip vrf exec mgmt0 ping -c1 -W3 {MGMT_GW4}").returncode == 0
    assert lab.ssh(host, f"ip vrf exec mgmt0 ping -6 -c1 -W3 {MGMT_GW6}").returncode == 0
    assert lab.ssh(host, f"ping -c1 -W2 {MGMT_GW4}").returncode != 0


def log_stamps(log: str) -> dict[str, datetime]:
    """The times the run log gives each step (rollback armed, apply started/done, rollback
    started/done)."""
    found = re.findall(r"mgmt-vrf: ((?:apply|rollback) (?:armed|started|done)) ([^\s,]+)", log)
    return {what: datetime.fromisoformat(stamp) for what, stamp in found}


def rollback_delay(log: str) -> float:
    """Seconds from the apply's end to the rollback's start, by the host's clock."""
    stamps = log_stamps(log)
    return (stamps["rollback started"] - stamps["apply done"]).total_seconds()


def boot_unit_log(lab: Lab, host: str) -> str:
    """What mgmt-vrf.service logged in this boot, once its boot run has finished: read
    straight after a reboot, it may still be running (seen: only its "Starting" line)."""
    state = lab.check(
        host,
        "for i in $(seq 180); do s=$(systemctl is-active mgmt-vrf.service); "
        '[ "$s" = activating ] || break; sleep 1; done; echo "$s"',
        timeout=240,
    )
    log = lab.check(host, "journalctl -b -u mgmt-vrf.service --no-pager -o cat")
    assert state.strip() == "active", log
    return log
