from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pyinfra.api import FactBase
from pyinfra.api.exceptions import FactProcessError
from pyinfra_cli.prints import jsonify
from pyinfra_cli.util import json_encode
from pyinfra_testing.facts import make_fact_tests

from facts.vrf import RouteTable, VrfDevices, VrfHostState
from mgmt_vrf.hoststate import HostState
from mgmt_vrf.model import UNREACHABLE_METRIC
from mgmt_vrf.probe import links_command, probe_command, route_table_command

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
FACT_FIXTURES = FIXTURES / "facts"

# pyinfra-testing: each JSON file holds the fact's args, the exact command, real output and
# the expected result.
TestVrfDevices = make_fact_tests("facts", "vrf.VrfDevices", FACT_FIXTURES / "vrf.VrfDevices")
TestRouteTable = make_fact_tests("facts", "vrf.RouteTable", FACT_FIXTURES / "vrf.RouteTable")


def probe_lines(name: str) -> list[str]:
    return (FIXTURES / "probe" / name).read_text().splitlines()


def test_fact_names() -> None:
    assert VrfHostState.name == "facts.vrf.VrfHostState"
    assert VrfDevices.name == "facts.vrf.VrfDevices"
    assert RouteTable.name == "facts.vrf.RouteTable"


def test_host_state_command_is_the_probe() -> None:
    fact = VrfHostState()
    assert fact.command() == probe_command()
    assert fact.command(paths=["/etc/a", "/etc/b"], ports=["eth2"]) == probe_command(
        ["/etc/a", "/etc/b"], ["eth2"]
    )


def test_host_state_takes_a_single_cli_string() -> None:
    # `pyinfra ... fact facts.vrf.VrfHostState paths=/etc/x ports=eth2` passes plain strings.
    assert VrfHostState().command(paths="/etc/x", ports="eth2") == probe_command(
        ["/etc/x"], ["eth2"]
    )


def test_small_fact_commands() -> None:
    assert VrfDevices().command() == links_command()
    assert RouteTable().command() == route_table_command(10)
    assert RouteTable().command(table="main", family=6) == route_table_command("main", 6)


def test_host_state_process() -> None:
    state = VrfHostState().process(probe_lines("netns-full.txt"))
    assert isinstance(state, HostState)
    unreachable = [r for r in state.routes_in(10) if r.type == "unreachable"]
    assert {r.family for r in unreachable} == {4, 6}
    assert {r.metric for r in unreachable} == {UNREACHABLE_METRIC}


def test_unusable_output_is_a_fact_process_error() -> None:
    # pyinfra marks the host failed on FactProcessError; anything else would end the run.
    with pytest.raises(FactProcessError, match="cut short"):
        VrfHostState().process(probe_lines("netns-full.txt")[:10])
    with pytest.raises(FactProcessError, match="not output of the probe"):
        VrfDevices().process(["garbage"])


def test_defaults() -> None:
    assert VrfDevices.default() == {}
    assert RouteTable.default() == []


def test_host_state_serialises_like_the_cli() -> None:
    # pyinfra_cli prints fact results with json_encode, which uses to_json().
    state = VrfHostState().process(probe_lines("netns-full.txt"))
    text = jsonify({"facts.vrf.VrfHostState": {"host": state}}, default=json_encode)
    data = json.loads(text)["facts.vrf.VrfHostState"]["host"]
    assert data["links"]["eth3"]["master"] == "br9"
    assert data["iproute2_version"] == "6.1.0"
    assert {"exists": False, "size": None, "sha256": None} in data["files"].values()


def test_vrf_devices_from_lab() -> None:
    path = FIXTURES / "probe" / "lab-vrf.txt"
    if not path.exists():
        pytest.skip("lab-vrf.txt not captured")
    assert VrfDevices().process(path.read_text().splitlines()) == {
        "mgmt0": {"table": 10, "up": True, "ports": ["eth2"]}
    }


def test_cli_fact_json_on_local_host() -> None:
    # End to end through pyinfra's own CLI and @local connector on this machine.
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pyinfra",
            "@local",
            "fact",
            "facts.vrf.VrfHostState",
            "ports=lo",
            "facts.vrf.RouteTable",
            "table=main",
            "--json",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    state = data["facts.vrf.VrfHostState (ports=lo)"]["@local"]
    assert "lo" in state["links"]
    assert "net.ipv6.conf.lo.keep_addr_on_down" in state["sysctls"]
    routes = data["facts.vrf.RouteTable (table=main)"]["@local"]
    assert all(r["table"] == 254 for r in routes)


def test_cli_fact_with_a_bad_argument_says_why_without_a_traceback() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pyinfra", "@local", "fact", "facts.vrf.RouteTable", "table=mgmt"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    out = result.stdout + result.stderr
    assert "facts.vrf.RouteTable: not a routing table" in out and "'mgmt'" in out
    assert "Traceback" not in out


@pytest.mark.parametrize(
    ("fact", "kwargs"),
    [(RouteTable, {"table": "mgmt; touch /tmp/pwned"}), (VrfHostState, {"paths": "rel'ative"})],
)
def test_refused_arguments_run_nothing_but_a_message(
    fact: type[FactBase[Any]], kwargs: dict[str, str]
) -> None:
    command = fact().command(**kwargs)
    result = subprocess.run(["sh", "-c", str(command)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert result.stdout == "" and fact.name in result.stderr
