"""The typed commands render the argv the plan always ran, and answer what consumers ask."""

from __future__ import annotations

from dataclasses import replace

import pytest

from mgmt_vrf.host_commands import (
    ActivateProfile,
    CreateVrf,
    DeleteRoute,
    HostCommand,
    Ip,
    Reload,
    RestartUnit,
    Run,
    Sysctl,
)
from mgmt_vrf.hoststate import MAIN_TABLE, HostState, RouteEntry
from mgmt_vrf.plan import RunCommand, plan

from .builders import broken_state, clean_state, seed_spec

STRAY = RouteEntry(
    family=4, table=MAIN_TABLE, dst="default", gateway="203.0.113.1", dev="eth2", metric=102
)


@pytest.mark.parametrize(
    ("command", "argv"),
    [
        (Ip(("link", "set", "dev", "eth2", "up")), ("ip", "link", "set", "dev", "eth2", "up")),
        (Ip(("route", "flush", "table", "10"), 6), ("ip", "-6", "route", "flush", "table", "10")),
        (
            CreateVrf("mgmt0", 10),
            ("ip", "link", "add", "dev", "mgmt0", "type", "vrf", "table", "10"),
        ),
        (
            DeleteRoute(STRAY),
            ("ip", "-4", "route", "del", "default", "via", "203.0.113.1")
            + ("dev", "eth2", "metric", "102", "table", "main"),
        ),
        (
            DeleteRoute(replace(STRAY, table=10, dev=None, metric=None)),
            ("ip", "-4", "route", "del", "default", "via", "203.0.113.1", "table", "10"),
        ),
        (
            Sysctl("net/ipv6/conf/eth0.100/keep_addr_on_down", "1"),
            ("sysctl", "-q", "-w", "net/ipv6/conf/eth0.100/keep_addr_on_down=1"),
        ),
        (RestartUnit("sshd.service"), ("systemctl", "restart", "sshd.service")),
        (Reload("NetworkManager"), ("nmcli", "connection", "reload")),
        (Reload("systemd"), ("systemctl", "daemon-reload")),
        (
            ActivateProfile("eth2", ("uuid", "2b3c")),
            ("nmcli", "--wait", "90", "connection", "up", "uuid", "2b3c"),
        ),
        (Run(("mkdir", "-p", "/etc/x")), ("mkdir", "-p", "/etc/x")),
    ],
)
def test_each_kind_renders_its_argv(command: HostCommand, argv: tuple[str, ...]) -> None:
    assert command.argv == argv
    ip = command.ip()
    # Every kind that runs `ip` says so, as the same command: the apply batches it.
    assert (ip is not None) == (argv[0] == "ip")
    assert ip is None or ip.argv == argv


def test_what_the_rollback_and_the_drift_report_ask() -> None:
    runtime = [Ip(("link", "set", "dev", "eth2", "up")), CreateVrf("mgmt0", 10)]
    runtime += [DeleteRoute(STRAY), Sysctl("net.ipv4.tcp_l3mdev_accept", "1")]
    assert all(c.changes_runtime and not c.follows_a_file for c in runtime)
    follow_ups = [Reload("NetworkManager"), Reload("systemd"), ActivateProfile("eth2", ("id", "x"))]
    assert all(c.follows_a_file and not c.changes_runtime for c in follow_ups)
    others = [RestartUnit("sshd.service"), Run(("rm", "-f", "/etc/x"))]
    assert not any(c.changes_runtime or c.follows_a_file for c in others)
    assert DeleteRoute(STRAY).shown == "default via 203.0.113.1 dev eth2 metric 102"


@pytest.mark.parametrize("state", [broken_state(), clean_state()], ids=["broken", "clean"])
def test_the_plan_runs_no_typed_kind_as_a_plain_command(state: HostState) -> None:
    # A `Run` is for what no consumer asks about; an ip, sysctl, nmcli or systemctl command
    # written as one would slip past the rollback, the drift report or the batching.
    changes = plan(seed_spec(), state).changes
    commands = [c.command for c in changes if isinstance(c, RunCommand)]
    assert commands
    plain = [c.argv for c in commands if isinstance(c, Run)]
    assert not [argv for argv in plain if argv[0] in ("ip", "sysctl", "nmcli", "systemctl")]
