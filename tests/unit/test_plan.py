"""Planner: start states -> the exact ordered changes, and nothing on a converged host."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address, IPv6Address
from typing import Literal

import pytest

from mgmt_vrf import paths
from mgmt_vrf.hoststate import MAIN_TABLE, FileState, HostState, Link, NetworkManager, RouteEntry
from mgmt_vrf.model import UNREACHABLE_METRIC, HostSpec, Vrf
from mgmt_vrf.plan import Plan, RemoveFile, RunCommand, WriteFile, desired_files, plan
from mgmt_vrf.preflight import host_problems

from .builders import (
    BLOG_VRF_PROFILE,
    ETH2_V4,
    ETH2_V6,
    MGMT_GW4,
    MGMT_GW6,
    SERVICE_GW4,
    broken_state,
    clean_state,
    converged_state,
    keyfile_of,
    seed_spec,
    summary,
    up_new,
    with_route,
)

U = str(UNREACHABLE_METRIC)


def commands(result: Plan) -> list[str]:
    return [c.shell for c in result.changes if isinstance(c, RunCommand)]


def test_converged_host_gets_an_empty_plan() -> None:
    result = plan(seed_spec(), converged_state())
    assert result.converged, summary(result)


def test_converged_host_with_static_route_gets_an_empty_plan() -> None:
    spec = with_route(seed_spec(), "192.0.2.128/25", "203.0.113.254")
    assert plan(spec, converged_state(spec)).converged


def test_clean_host_full_plan_in_safe_order() -> None:
    result = plan(seed_spec(), clean_state())
    assert summary(result) == [
        "sysctl -q -w net.ipv4.tcp_l3mdev_accept=1",
        "sysctl -q -w net.ipv4.udp_l3mdev_accept=1",
        "sysctl -q -w net/ipv6/conf/eth2/keep_addr_on_down=1",
        f"write {paths.keyfile('mgmt0')}",
        f"write {keyfile_of('eth2')}",
        f"write {paths.SYSCTL_DROPIN}",
        f"write {paths.CONVERGE_SCRIPT}",
        f"write {paths.UNIT}",
        f"write {paths.EXEC_WRAPPER}",
        "nmcli connection reload",
        "systemctl daemon-reload",
        "mkdir -p /etc/systemd/system/multi-user.target.wants",
        f"ln -sfn {paths.UNIT} {paths.UNIT_WANTS_LINK}",
        # NetworkManager runs there: it brings the port up (and its VRF with it); each of
        # our own commands then runs only if its check still fails on the host.
        up_new("eth2"),
        "ip -4 rule add pref 1000 l3mdev protocol kernel",
        "ip -6 rule add pref 1000 l3mdev protocol kernel",
        "ip link add dev mgmt0 type vrf table 10",
        "ip link set dev mgmt0 up",
        f"ip -4 route replace unreachable default metric {U} table 10",
        f"ip -6 route replace unreachable default metric {U} table 10",
        "ip link set dev eth2 master mgmt0",
        "ip link set dev eth2 up",
        f"ip -4 addr replace {ETH2_V4} dev eth2",
        f"ip -6 addr replace {ETH2_V6} dev eth2",
        f"ip -4 route replace default via {MGMT_GW4} table 10",
        f"ip -6 route replace default via {MGMT_GW6} table 10",
    ]
    network = [c for c in result.changes if isinstance(c, RunCommand) and c.argv[0] == "ip"]
    assert all(c.unless for c in network)


def test_without_networkmanager_running_our_commands_make_the_change_unguarded() -> None:
    state = clean_state()
    stopped = replace(state.network_manager, running=False)
    result = plan(seed_spec(), replace(state, network_manager=stopped))
    assert not any(c.argv[0] == "nmcli" for c in result.changes if isinstance(c, RunCommand))
    assert not any(c.unless for c in result.changes if isinstance(c, RunCommand))
    assert "ip link add dev mgmt0 type vrf table 10" in commands(result)


def test_running_networkmanager_with_only_an_edited_profile_is_not_asked_to_reactivate() -> None:
    state = converged_state()
    path = keyfile_of("eth2")
    edited = state.files[path].text.replace("method=manual", "method=auto", 1)
    state = replace(state, files={**state.files, path: FileState(path, edited.encode())})
    assert commands(plan(seed_spec(), state)) == ["nmcli connection reload"]


def test_two_vrfs_from_a_clean_host() -> None:
    spec = seed_spec()
    acc = Vrf("acc0", 20, ("eth1",), IPv4Address("192.0.2.1"), IPv6Address("2001:db8:52::1"))
    spec = replace(spec, vrfs=(*spec.vrfs, acc))
    steps = summary(plan(spec, clean_state()))
    for vrf, table, port in (("mgmt0", 10, "eth2"), ("acc0", 20, "eth1")):
        assert f"write {paths.keyfile(vrf)}" in steps
        assert f"write {keyfile_of(port)}" in steps
        assert f"sysctl -q -w net/ipv6/conf/{port}/keep_addr_on_down=1" in steps
        add = steps.index(f"ip link add dev {vrf} type vrf table {table}")
        assert add < steps.index(f"ip link set dev {port} master {vrf}")
        assert f"ip -4 route replace unreachable default metric {U} table {table}" in steps
    assert "ip -4 route replace default via 192.0.2.1 table 20" in steps
    assert "ip -6 route replace default via 2001:db8:52::1 table 20" in steps
    # One drop-in, one script and one unit serve both VRFs.
    assert steps.count(f"write {paths.SYSCTL_DROPIN}") == 1
    assert steps.count(f"write {paths.CONVERGE_SCRIPT}") == 1
    # Both ports move only after both VRFs exist and are guarded.
    last_guard = max(i for i, s in enumerate(steps) if "unreachable" in s)
    first_move = min(i for i, s in enumerate(steps) if " master " in s)
    assert last_guard < first_move


def test_blog_broken_host_drops_second_profile_and_stray_defaults() -> None:
    result = plan(seed_spec(), broken_state())
    steps = summary(result)
    assert f"remove {BLOG_VRF_PROFILE}" in steps
    assert f"remove {paths.route4('vrf.eth2')}" in steps
    assert f"remove {paths.route6('vrf.eth2')}" in steps
    # Companion files that do not exist are not touched.
    assert f"remove {paths.NETWORK_SCRIPTS}/rule-vrf.eth2" not in steps
    # The blog's "route delete default" twice, done exactly: one delete per stray route.
    assert f"ip -4 route del default via {MGMT_GW4} dev eth2 metric 102 table main" in steps
    assert f"ip -6 route del default via {MGMT_GW6} dev eth2 metric 1024 table main" in steps
    # The service defaults stay.
    assert not any(f"via {SERVICE_GW4}" in s and " del " in s for s in steps)
    # Strays go before the port moves (the kernel would drop them anyway, and then the
    # exact delete would fail), and after the VRF table is closed.
    assert steps.index("ip link set dev eth2 master mgmt0") > steps.index(
        f"ip -4 route del default via {MGMT_GW4} dev eth2 metric 102 table main"
    )
    # The edited ifcfg-eth2 is replaced with a diff from its old content.
    write = next(
        c for c in result.changes if isinstance(c, WriteFile) and c.path == paths.ifcfg("eth2")
    )
    assert write.old == "DEVICE=eth2\nIPV6_AUTOCONF=yes\n"
    assert "-IPV6_AUTOCONF=yes" in write.diff() and "+IPV6_AUTOCONF=no" in write.diff()
    assert "+VRF=mgmt0" in write.diff()


def test_removed_blog_profile_diff_shows_old_content() -> None:
    state = broken_state()
    state = replace(
        state,
        files={**state.files, BLOG_VRF_PROFILE: FileState(BLOG_VRF_PROFILE, b"VRF=mgmt0\n")},
    )
    removal = next(c for c in plan(seed_spec(), state).changes if isinstance(c, RemoveFile))
    assert removal.path == BLOG_VRF_PROFILE
    assert "-VRF=mgmt0" in removal.diff()


def test_the_short_plan_is_one_line_per_change_and_the_long_one_adds_each_diff() -> None:
    state = broken_state()
    state = replace(
        state,
        files={**state.files, BLOG_VRF_PROFILE: FileState(BLOG_VRF_PROFILE, b"VRF=mgmt0\n")},
    )
    result = plan(seed_spec(), state)
    short = result.describe(diffs=False)
    assert len(short) == len(result.changes)
    text = "\n".join(short)
    assert f"update {paths.ifcfg('eth2')} (mode 0644, +14 -1 lines) # " in text
    assert f"remove {BLOG_VRF_PROFILE} (backup in {paths.BACKUP_DIR}, +0 -1 lines) # " in text
    # A removal whose content the fact did not bring has no size to show.
    unknown = Plan("alma01", "networkmanager", (RemoveFile("/etc/x", "why"),))
    assert unknown.describe(diffs=False) == [f"remove /etc/x (backup in {paths.BACKUP_DIR}) # why"]
    long = result.describe()
    assert "    -IPV6_AUTOCONF=yes" in long and "    +VRF=mgmt0" in long
    # The same changes in the same order: the long form only adds diff lines, indented.
    heads = [line for line in long if not line.startswith("    ")]
    assert [h.split(" (")[0] for h in heads] == [s.split(" (")[0] for s in short]
    assert len(long) > 2 * len(short)


def test_wrong_table_recreates_the_vrf_and_reenslaves() -> None:
    state = converged_state()
    links = dict(state.links)
    links["mgmt0"] = replace(links["mgmt0"], vrf_table=11)
    result = plan(seed_spec(), replace(state, links=links))
    assert commands(result) == [
        "ip link del dev mgmt0",
        "ip -4 route flush table 11",
        "ip -6 route flush table 11",
        "ip link add dev mgmt0 type vrf table 10",
        "ip link set dev mgmt0 up",
        "ip link set dev eth2 master mgmt0",
        "ip link set dev eth2 up",
        f"ip -4 addr replace {ETH2_V4} dev eth2",
        f"ip -6 addr replace {ETH2_V6} dev eth2",
    ]


def test_port_enslaved_to_another_vrf_is_moved() -> None:
    state = converged_state()
    links = dict(state.links)
    links["old0"] = Link("old0", 9, kind="vrf", vrf_table=99, up=True)
    links["eth2"] = replace(links["eth2"], master="old0")
    assert commands(plan(seed_spec(), replace(state, links=links))) == [
        "ip link set dev eth2 master mgmt0",
        "ip link set dev eth2 up",
        f"ip -4 addr replace {ETH2_V4} dev eth2",
        f"ip -6 addr replace {ETH2_V6} dev eth2",
    ]


@pytest.mark.parametrize(
    ("family", "missing_gw", "expected"),
    [
        (4, MGMT_GW4, f"ip -4 route replace default via {MGMT_GW4} table 10"),
        (6, MGMT_GW6, f"ip -6 route replace default via {MGMT_GW6} table 10"),
    ],
)
def test_deleted_vrf_default_is_the_only_repair(
    family: int, missing_gw: str, expected: str
) -> None:
    state = converged_state()
    routes = tuple(
        r
        for r in state.routes
        if not (r.table == 10 and r.family == family and r.gateway == missing_gw)
    )
    assert commands(plan(seed_spec(), replace(state, routes=routes))) == [expected]


@pytest.mark.parametrize(
    ("family", "right", "wrong", "metric"),
    [(4, MGMT_GW4, "203.0.113.99", None), (6, MGMT_GW6, "2001:db8:1::99", 1024)],
)
def test_wrong_vrf_gateway_is_deleted_before_the_right_one_is_added(
    family: Literal[4, 6], right: str, wrong: str, metric: int | None
) -> None:
    state = converged_state()
    routes = tuple(r for r in state.routes if not (r.table == 10 and r.gateway == right))
    routes += (RouteEntry(family, 10, "default", gateway=wrong, dev="eth2", metric=metric),)
    at = f" metric {metric}" if metric else ""
    assert commands(plan(seed_spec(), replace(state, routes=routes))) == [
        f"ip -{family} route del default via {wrong} dev eth2{at} table 10",
        f"ip -{family} route replace default via {right} table 10",
    ]


def test_missing_unreachable_guard_is_added_in_both_families() -> None:
    state = converged_state()
    routes = tuple(r for r in state.routes if r.type != "unreachable")
    assert commands(plan(seed_spec(), replace(state, routes=routes))) == [
        f"ip -4 route replace unreachable default metric {U} table 10",
        f"ip -6 route replace unreachable default metric {U} table 10",
    ]


def test_unreachable_at_another_metric_does_not_count() -> None:
    state = converged_state()
    routes = tuple(r for r in state.routes if not (r.type == "unreachable" and r.family == 4))
    routes += (RouteEntry(4, 10, "default", type="unreachable", metric=5),)
    assert commands(plan(seed_spec(), replace(state, routes=routes))) == [
        f"ip -4 route replace unreachable default metric {U} table 10",
    ]


def test_lost_ipv6_address_after_enslaving_is_restored() -> None:
    state = converged_state()
    links = dict(state.links)
    links["eth2"] = replace(
        links["eth2"], addresses=tuple(a for a in links["eth2"].addresses if a.version == 4)
    )
    assert commands(plan(seed_spec(), replace(state, links=links))) == [
        f"ip -6 addr replace {ETH2_V6} dev eth2",
    ]


def test_l3mdev_sysctls_are_set_first() -> None:
    state = replace(converged_state(), sysctls={"net.ipv4.tcp_l3mdev_accept": "0"})
    assert commands(plan(seed_spec(), state)) == [
        "sysctl -q -w net.ipv4.tcp_l3mdev_accept=1",
        "sysctl -q -w net.ipv4.udp_l3mdev_accept=1",
        "sysctl -q -w net/ipv6/conf/eth2/keep_addr_on_down=1",
    ]


def test_l3mdev_off_when_the_fleet_says_so() -> None:
    spec = seed_spec(l3mdev_accept=False)
    state = converged_state(spec)
    assert commands(plan(spec, state))[:2] == [
        "sysctl -q -w net.ipv4.tcp_l3mdev_accept=0",
        "sysctl -q -w net.ipv4.udp_l3mdev_accept=0",
    ]


def test_missing_service_default_is_added_and_never_removed() -> None:
    state = converged_state()
    routes = tuple(r for r in state.routes if not (r.table == MAIN_TABLE and r.family == 6))
    assert commands(plan(seed_spec(), replace(state, routes=routes))) == [
        "ip -6 route replace default via 2001:db8:100::1 dev eth0 table main",
    ]


def test_edited_pushed_file_is_backed_up_and_rewritten_with_a_diff() -> None:
    state = converged_state()
    path = paths.keyfile("mgmt0")
    edited = state.files[path].text.replace("table=10", "table=12")
    state = replace(state, files={**state.files, path: FileState(path, edited.encode())})
    result = plan(seed_spec(), state)
    assert summary(result) == [f"write {path}", "nmcli connection reload"]
    change = result.changes[0]
    assert isinstance(change, WriteFile) and change.mode == "0600"
    assert "-table=12" in change.diff() and "+table=10" in change.diff()


# mgmt0 (table 10, port eth2) going away: the port released with its addresses kept, the
# device deleted, its table emptied.
TEARDOWN_MGMT0 = [
    "ip link set dev eth2 nomaster",
    f"ip -4 addr replace {ETH2_V4} dev eth2",
    f"ip -6 addr replace {ETH2_V6} dev eth2",
    "ip link del dev mgmt0",
    "ip -4 route flush table 10",
    "ip -6 route flush table 10",
]


def test_absent_vrf_is_torn_down_and_its_files_removed() -> None:
    spec = seed_spec()
    spec = replace(spec, vrfs=(replace(spec.vrfs[0], state="absent"),))
    result = plan(spec, converged_state())
    steps = summary(result)
    assert steps == [
        f"remove {paths.keyfile('mgmt0')}",
        f"write {keyfile_of('eth2')}",
        f"remove {paths.SYSCTL_DROPIN}",
        f"remove {paths.CONVERGE_SCRIPT}",
        f"remove {paths.UNIT}",
        f"remove {paths.EXEC_WRAPPER}",
        "nmcli connection reload",
        "systemctl daemon-reload",
        f"rm -f {paths.UNIT_WANTS_LINK}",
        # NetworkManager runs: the port comes up on its plain profile, NetworkManager deletes
        # the VRF whose profile went, and each teardown command checks the host first.
        up_new("eth2"),
        *TEARDOWN_MGMT0,
    ]
    plain = next(c for c in result.changes if isinstance(c, WriteFile))
    assert "master=" not in plain.content and "slave-type" not in plain.content
    assert f"address1={ETH2_V4}\n" in plain.content and "never-default=true" in plain.content
    teardown = [c for c in result.changes if isinstance(c, RunCommand) and c.argv[0] == "ip"]
    assert all(c.unless and c.unless != "true" for c in teardown)


def test_absent_vrf_already_gone_is_converged() -> None:
    spec = seed_spec()
    spec = replace(spec, vrfs=(replace(spec.vrfs[0], state="absent"),))
    first = plan(spec, converged_state())
    plain = next(c for c in first.changes if isinstance(c, WriteFile))
    state = clean_state(
        files={plain.path: FileState(plain.path, plain.content.encode())},
        sysctls={},
    )
    assert plan(spec, state).converged, summary(plan(spec, state))


def test_legacy_network_scripts_get_route_files_and_no_keyfile() -> None:
    state = clean_state(
        network_manager=NetworkManager(installed=False), network_scripts_installed=True
    )
    result = plan(seed_spec(), state)
    assert result.backend == "network-scripts"
    written = {c.path: c.content for c in result.changes if isinstance(c, WriteFile)}
    assert paths.keyfile("mgmt0") not in written
    assert f"default via {MGMT_GW4} table 10" in written[paths.route4("eth2")]
    assert f"default via {MGMT_GW6} table 10" in written[paths.route6("eth2")]
    assert "GATEWAY" not in written[paths.ifcfg("eth2")]
    assert "nmcli connection reload" not in commands(result)


def test_networkmanager_profile_carries_the_gateways() -> None:
    written = {
        c.path: c.content
        for c in plan(seed_spec(), clean_state()).changes
        if isinstance(c, WriteFile)
    }
    keyfile = written[keyfile_of("eth2")]
    assert f"address1={ETH2_V4},{MGMT_GW4}\n" in keyfile
    assert f"address1={ETH2_V6},{MGMT_GW6}\n" in keyfile
    # NetworkManager 1.40 writes these spellings; 1.46 and later controller= and port-type=.
    assert "master=mgmt0\nslave-type=vrf\n" in keyfile
    assert paths.route4("eth2") not in written


def test_static_route_lands_in_the_route_file_and_the_table() -> None:
    spec = with_route(seed_spec(), "192.0.2.128/25", "203.0.113.254")
    result = plan(spec, clean_state())
    written = {c.path: c.content for c in result.changes if isinstance(c, WriteFile)}
    keyfile = written[keyfile_of("eth2")]
    assert "route1=192.0.2.128/25,203.0.113.254\nroute1_options=table=10\n" in keyfile
    assert paths.route4("eth2") not in written
    assert "ip -4 route replace 192.0.2.128/25 via 203.0.113.254 table 10" in commands(result)


def test_unneeded_route_file_is_removed() -> None:
    state = converged_state()
    path = paths.route4("eth2")
    state = replace(state, files={**state.files, path: FileState(path, b"ADDRESS=0.0.0.0\n")})
    assert summary(plan(seed_spec(), state)) == [f"remove {path}", "nmcli connection reload"]


def test_nothing_is_reloaded_where_nothing_runs() -> None:
    state = clean_state(network_manager=NetworkManager(installed=True), systemd_running=False)
    cmds = commands(plan(seed_spec(), state))
    assert "nmcli connection reload" not in cmds and "systemctl daemon-reload" not in cmds


def test_hoststate_file_defaults_to_missing() -> None:
    assert not HostState().file("/nope").exists


def renamed(table: int = 10) -> HostSpec:
    """mgmt0 (on the host) renamed oob0: the old one marked absent, eth2 moves over."""
    spec = seed_spec()
    old = replace(spec.vrfs[0], state="absent")
    return replace(spec, vrfs=(old, replace(spec.vrfs[0], name="oob0", table=table)))


def runtime(result: Plan) -> list[str]:
    return [c for c in commands(result) if c.startswith("ip ")]


def test_renamed_vrf_on_the_same_table_gives_up_port_and_table_first() -> None:
    result = plan(renamed(), converged_state())
    assert runtime(result) == [
        "ip link set dev eth2 nomaster",
        f"ip -4 addr replace {ETH2_V4} dev eth2",
        f"ip -6 addr replace {ETH2_V6} dev eth2",
        "ip link del dev mgmt0",
        # No flush: table 10 is oob0's now. Its unreachable guards stay through the
        # change; the routes through eth2 went with the port's release and come back.
        "ip link add dev oob0 type vrf table 10",
        "ip link set dev oob0 up",
        "ip link set dev eth2 master oob0",
        # As for any port that joins a VRF: up and addressed inside it.
        "ip link set dev eth2 up",
        f"ip -4 addr replace {ETH2_V4} dev eth2",
        f"ip -6 addr replace {ETH2_V6} dev eth2",
        f"ip -4 route replace default via {MGMT_GW4} table 10",
        f"ip -6 route replace default via {MGMT_GW6} table 10",
    ]
    written = {c.path for c in result.changes if isinstance(c, WriteFile)}
    removed = {c.path for c in result.changes if isinstance(c, RemoveFile)}
    assert paths.keyfile("oob0") in written and paths.keyfile("mgmt0") in removed


def test_renamed_vrf_on_a_new_table_flushes_the_old_one_before_building() -> None:
    result = plan(renamed(table=20), converged_state())
    steps = runtime(result)
    assert steps[:6] == TEARDOWN_MGMT0
    assert steps[6:9] == [
        "ip link add dev oob0 type vrf table 20",
        "ip link set dev oob0 up",
        f"ip -4 route replace unreachable default metric {U} table 20",
    ]
    assert "ip link set dev eth2 master oob0" in steps
    assert steps.count("ip link set dev eth2 nomaster") == 1


def test_renamed_vrf_is_converged_once_done() -> None:
    spec = renamed()
    done = converged_state(replace(spec, vrfs=(spec.vrfs[1],)))
    files = {
        path: FileState(path, desired[0].encode() if desired else None)
        for path, desired in desired_files(spec, "networkmanager").items()
    }
    done = replace(done, files={**done.files, **files})
    # Nothing to tear down any more, and table 10 (oob0's) is never flushed.
    assert plan(spec, done).converged, summary(plan(spec, done))


def test_preflight_lets_a_rename_take_the_absent_vrfs_table() -> None:
    assert host_problems(renamed(), converged_state()) == []
    # Without the old VRF marked absent, the table clash is still refused.
    spec = renamed()
    clash = replace(spec, vrfs=(spec.vrfs[1],))
    assert any(
        "table 10 already belongs to VRF mgmt0" in p
        for p in host_problems(clash, converged_state())
    )


def test_preflight_refuses_a_rename_whose_old_entry_names_another_table() -> None:
    spec = renamed()
    old = replace(spec.vrfs[0], table=11, ports=("eth1",))
    spec = replace(spec, vrfs=(old, spec.vrfs[1]))
    problems = host_problems(spec, converged_state())
    assert any("vrfs.mgmt0.table: mgmt0 is marked absent but holds table 10" in p for p in problems)
