"""Helpers for the lab tests of services inside the VRF: a TCP service of the host's own
(lab-web, HTTP on port 8080), a fleet file that lists services, and how to ask where a
service runs and whether it answers."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from lab.pytest_fixture import Lab

from .deploy import converge

WEB_PORT = 8080
WEB_UNIT_PATH = "/etc/systemd/system/lab-web.service"
WEB_UNIT = f"""[Unit]
Description=A TCP service of the host's own (lab)
After=network.target

[Service]
RuntimeDirectory=lab-web
ExecStart=/usr/bin/python3 -m http.server --bind :: --directory /run/lab-web {WEB_PORT}

[Install]
WantedBy=multi-user.target
"""
ETH2_6 = "2001:db8:1::10"
SERVICES = ("sshd.service", "lab-web.service")


def services_fleet(fleet: Path, host: str, services: list[str] | None, out: Path) -> Path:
    """The lab's fleet file with a services list for the host's mgmt0.

    The rollback window stays the default: every change here is meant to be confirmed, and
    on a starved lab VM a confirmation has taken more than 30 s after the apply ended."""
    text = fleet.read_text()
    head = f'[hosts.{host}.vrfs.mgmt0]\ntable = 10\nports = ["eth2"]\n'
    assert head in text
    if services is not None:
        text = text.replace(head, head + f"services = {json.dumps(services)}\n")
    out.write_text(text)
    return out


def install_web(lab: Lab, host: str) -> None:
    """lab-web enabled and running on the host (kept as it is when already there)."""
    lab.check(
        host,
        f"[ -e {WEB_UNIT_PATH} ] || {{ cat > {WEB_UNIT_PATH} <<'EOF'\n{WEB_UNIT}EOF\n"
        f"ln -s {WEB_UNIT_PATH} /etc/systemd/system/multi-user.target.wants/lab-web.service"
        " && systemctl daemon-reload && systemctl start lab-web.service; }",
    )


def serve(lab: Lab, host: str, out: Path) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """Converges the host with sshd and lab-web listed for mgmt0: (fleet, the run)."""
    install_web(lab, host)
    fleet = services_fleet(lab.fleet_file, host, ["sshd", "lab-web"], out)
    run = converge(fleet, [host])
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
    return fleet, run


def vrf_of(lab: Lab, host: str, unit: str) -> str:
    """What `ip vrf identify` says of the unit's main process ("" outside every VRF)."""
    pid = lab.check(host, f"systemctl show -p MainPID --value {unit}").strip()
    assert pid not in ("", "0"), f"{unit} has no main process on {host}"
    return lab.check(host, f"ip vrf identify {pid}").strip()


def web_answers(lab: Lab, host: str, address: str) -> bool:
    """Whether lab-web answers HTTP from the host's router."""
    url = f"http://[{address}]:{WEB_PORT}/" if ":" in address else f"http://{address}:{WEB_PORT}/"
    curl = "curl -s -o /dev/null -m 5 -w '%{http_code}'"
    return lab.gw(host, f"{curl} {url}").stdout == "200"


def wait_listening(lab: Lab, host: str) -> None:
    # python's start under emulation takes seconds; the unit is "active" before it listens.
    lab.check(
        host,
        f"for i in $(seq 60); do ss -Htln sport = :{WEB_PORT} | grep -q . && exit 0; "
        "sleep 1; done; exit 1",
        timeout=90,
    )
