"""Main-table defaults on this machine's real kernel, in a scratch network namespace.

The plan and the boot script both remove defaults that do not go through the service
interface (the blog's duplicate defaults through eth2). A multipath default is an operator's
design, not such a leftover: both must leave it alone, and neither may delete the service
default while looking for strays.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from mgmt_vrf.plan import RunCommand, plan
from mgmt_vrf.probe import parse_probe_output, probe_command
from mgmt_vrf.rollback import rollback_script
from mgmt_vrf.steps import Step, present_steps

from .builders import SERVICE_GW4, seed_spec

NS = "mvt-defaults"
MULTIPATH = "default metric 50 nexthop via 198.51.100.1 dev eth0 nexthop via 203.0.113.1 dev eth2"
SETUP = [
    "link add eth0 type veth peer name peer0",
    "link add eth2 type veth peer name peer2",
    *(f"link set {dev} up" for dev in ("eth0", "peer0", "eth2", "peer2")),
    "addr add 198.51.100.10/24 dev eth0",
    "addr add 203.0.113.10/24 dev eth2",
    f"route add default via {SERVICE_GW4} dev eth0 metric 100",
    f"route add {MULTIPATH}",
    # The blog's leftover: a default through the management port.
    "route add default via 203.0.113.1 dev eth2 metric 200",
]


def ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "-n", NS, *args], capture_output=True, text=True, timeout=30)


def in_ns(script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", NS, "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
    )


def defaults() -> str:
    return ip("-4", "route", "show", "table", "main", "exact", "0.0.0.0/0").stdout


@pytest.fixture
def host() -> Iterator[None]:
    subprocess.run(["ip", "netns", "del", NS], capture_output=True)
    assert subprocess.run(["ip", "netns", "add", NS]).returncode == 0
    try:
        for line in SETUP:
            r = ip(*line.split())
            assert r.returncode == 0, (line, r.stderr)
        yield
    finally:
        subprocess.run(["ip", "netns", "del", NS], capture_output=True)


def _stray_step(family: int) -> Step:
    (step,) = [
        s
        for s in present_steps(seed_spec())
        if s.what == f"extra IPv{family} default route in main"
    ]
    return step


def test_plan_deletes_the_leftover_and_keeps_multipath_and_service_defaults(host: None) -> None:
    probe = in_ns(probe_command([], []))
    assert probe.returncode == 0, probe.stderr
    state = parse_probe_output(probe.stdout.splitlines())
    deletes = [
        c.argv
        for c in plan(seed_spec(), state).changes
        if isinstance(c, RunCommand) and c.argv[2:4] == ("route", "del")
    ]
    assert deletes == [
        ("ip", "-4", "route", "del", "default", "via", "203.0.113.1", "dev", "eth2",
         "metric", "200", "table", "main"),
    ]  # fmt: skip
    for argv in deletes:
        assert ip(*argv[1:]).returncode == 0
    left = defaults()
    assert "metric 200" not in left
    assert f"default via {SERVICE_GW4} dev eth0 metric 100" in left
    assert "nexthop via 203.0.113.1 dev eth2" in left


def test_boot_script_check_and_repair_keep_multipath_and_service_defaults(host: None) -> None:
    step = _stray_step(4)
    assert step.shell_check is not None
    assert in_ns(step.shell_check).returncode != 0  # the leftover is seen
    for line in step.repair_lines():
        in_ns(line)
    assert in_ns(step.shell_check).returncode == 0, defaults()
    left = defaults()
    assert "metric 200" not in left
    assert f"default via {SERVICE_GW4} dev eth0 metric 100" in left
    assert "nexthop via 203.0.113.1 dev eth2" in left


def test_rollback_puts_back_exactly_the_main_defaults_and_leaves_multipath(host: None) -> None:
    probe = in_ns(probe_command([], []))
    before = parse_probe_output(probe.stdout.splitlines())
    snapshot = defaults()
    spec = seed_spec()
    script = rollback_script(spec, before, plan(spec, before))
    lines = [
        line
        for line in script.splitlines()
        if line.startswith("ip -o -4 route show table main")
        or (line.startswith("ip -4 route add") and " table 254" in line)
    ]
    assert len(lines) == 3, lines  # delete the single-path ones, add back the two there were
    # What a change could have done: the stray deleted, another default added.
    assert (
        ip(
            "route", "del", "default", "via", "203.0.113.1", "dev", "eth2", "metric", "200"
        ).returncode
        == 0
    )
    assert (
        ip("route", "add", "default", "via", SERVICE_GW4, "dev", "eth0", "metric", "300").returncode
        == 0
    )
    # And one through a port whose link is down: `ip route show` says "linkdown".
    assert ip("link", "set", "peer2", "down").returncode == 0
    assert (
        ip(
            "route", "add", "default", "via", "203.0.113.1", "dev", "eth2", "metric", "400"
        ).returncode
        == 0
    )
    assert "linkdown" in defaults()
    for line in lines:
        r = in_ns(line)
        assert r.returncode == 0, (line, r.stderr)
    assert ip("link", "set", "peer2", "up").returncode == 0
    assert defaults() == snapshot


def test_boot_script_removes_a_stray_even_when_its_link_is_down(host: None) -> None:
    # `ip route show` then prints "linkdown", a word `ip route del` refuses.
    assert ip("link", "set", "peer2", "down").returncode == 0
    assert "linkdown" in defaults()
    step = _stray_step(4)
    for line in step.repair_lines():
        in_ns(line)
    assert "metric 200" not in defaults()
    assert in_ns(step.shell_check).returncode == 0


def test_a_multipath_default_through_the_service_gateway_counts_as_the_service_default(
    host: None,
) -> None:
    assert (
        ip("route", "del", "default", "via", SERVICE_GW4, "dev", "eth0", "metric", "100").returncode
        == 0
    )
    probe = in_ns(probe_command([], []))
    state = parse_probe_output(probe.stdout.splitlines())
    commands = [c.shell for c in plan(seed_spec(), state).changes if isinstance(c, RunCommand)]
    assert not any(f"replace default via {SERVICE_GW4}" in c for c in commands), commands
    (check,) = [
        s.shell_check
        for s in present_steps(seed_spec())
        if s.what == f"main table lacks default via {SERVICE_GW4} dev eth0"
    ]
    assert in_ns(check).returncode == 0  # the boot script agrees
