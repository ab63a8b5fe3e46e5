from __future__ import annotations

import json
import re
import shutil
import subprocess
from ipaddress import ip_interface
from pathlib import Path

import pytest

from mgmt_vrf import paths
from mgmt_vrf.commands import sh_quote
from mgmt_vrf.hoststate import MAIN_TABLE, HostState, RouteEntry
from mgmt_vrf.model import UNREACHABLE_METRIC
from mgmt_vrf.probe import (
    MARKER,
    ProbeError,
    links_command,
    parse_probe_output,
    probe_command,
    route_table_command,
)

from .shell_scripts import shellcheck

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
PROBE = FIXTURES / "probe"
NETNS = FIXTURES / "netns"
SEED = FIXTURES / "seed"


def run_local(
    command: str, cwd: Path | None = None, shell: str = "sh"
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [shell, "-c", command],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def fixture_lines(name: str) -> list[str]:
    return (PROBE / name).read_text().splitlines()


def probe(*sections: tuple[str, str | list | dict | None], end: bool = True) -> list[str]:
    """Build probe output by hand: (marker text, body) pairs, body as JSON value or raw text."""
    lines = ["", f"{MARKER} begin 1"]
    for marker, body in sections:
        lines += ["", f"{MARKER} {marker}"]
        if body is None:
            continue
        lines += body.splitlines() if isinstance(body, str) else [json.dumps(body)]
    if end:
        lines += ["", f"{MARKER} end"]
    return lines


def find(state: HostState, **fields: object) -> list[RouteEntry]:
    return [r for r in state.routes if all(getattr(r, k) == v for k, v in fields.items())]


# --- the command ---------------------------------------------------------------------------


def test_command_is_one_line_and_ends_true() -> None:
    command = probe_command(["/etc/x"], ["eth2"])
    assert "\n" not in command
    assert command.endswith("; true")
    assert command.count(f"{MARKER} begin") == 1


HOSTILE_NAMES = [
    "a b $(touch pwned)",
    "`touch pwned`",
    "semi;touch pwned",
    "quote'\"$HOME",
    "glob*",
    "-n",
]


def test_hostile_paths_stay_literal(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    files = {}
    for i, name in enumerate(HOSTILE_NAMES):
        path = tmp_path / name
        files[str(path)] = f"content {i}\n".encode()
        path.write_bytes(files[str(path)])
    empty = tmp_path / "empty file"
    empty.write_bytes(b"")
    missing = tmp_path / "missing $(touch pwned)"
    binary = tmp_path / "binary"
    binary.write_bytes(bytes(range(256)))

    paths = [*files, str(empty), str(missing), str(binary)]
    result = run_local(probe_command(paths, ["eth0"]), cwd=work)

    assert result.returncode == 0, result.stderr
    assert not list(work.iterdir()), "the command expanded something into a file"
    assert not (tmp_path / "pwned").exists()
    state = parse_probe_output(result.stdout.splitlines())
    for name, content in files.items():
        assert state.file(name).content == content
    assert state.file(str(empty)).exists and state.file(str(empty)).content == b""
    assert not state.file(str(missing)).exists
    assert str(missing) in state.files
    assert state.file(str(binary)).content == bytes(range(256))


@pytest.mark.parametrize("bad", ["relative/path", "/two\nlines"])
def test_unusable_paths_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        probe_command([bad])


@pytest.mark.parametrize("bad", ["../x", "a/b", "", "eth 2"])
def test_unusable_ports_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        probe_command([], [bad])


def test_port_names_are_quoted() -> None:
    command = probe_command([], ["e$(x)"])
    assert "'/proc/sys/net/ipv6/conf/e$(x)/keep_addr_on_down'" in command


@pytest.mark.parametrize("shell", ["sh", "dash", "bash"])
def test_sysctl_values_are_read_whole(shell: str) -> None:
    # dash's read builtin gets one byte of a /proc/sys file: 32768 would read as 3.
    command = probe_command([], ["lo"]).replace(
        "/proc/sys/net/ipv4/raw_l3mdev_accept", "/proc/sys/kernel/pid_max"
    )
    result = run_local(command, shell=shell)
    state = parse_probe_output(result.stdout.splitlines())
    expected = Path("/proc/sys/kernel/pid_max").read_text().strip()
    assert len(expected) > 1
    assert state.sysctls["kernel.pid_max"] == expected
    assert state.sysctls["net.ipv6.conf.lo.keep_addr_on_down"] in ("-1", "0", "1")


def test_sysctl_lines_old_and_new_forms() -> None:
    lines = "net.ipv4.tcp_l3mdev_accept=1\n/proc/sys/net/ipv6/conf/eth2.100/keep_addr_on_down:-1"
    state = parse_probe_output(probe(("sysctl", lines)))
    assert state.sysctls == {
        "net.ipv4.tcp_l3mdev_accept": "1",
        "net.ipv6.conf.eth2.100.keep_addr_on_down": "-1",
    }


@pytest.mark.parametrize("shell", ["sh", "dash", "bash"])
def test_command_exits_zero_here(shell: str, tmp_path: Path) -> None:
    # This machine has no NetworkManager, no systemd, no VRF and no ifcfg files: every
    # piece that can fail does, and the command must still succeed.
    if shutil.which(shell) is None:
        pytest.skip(f"{shell} not installed")
    command = probe_command(
        [str(tmp_path / "nope"), "/etc/sysconfig/network-scripts/ifcfg-eth2"],
        ["eth0", "no-such-port"],
    )
    result = run_local(command, cwd=tmp_path, shell=shell)
    assert result.returncode == 0, result.stderr
    assert result.stdout.rstrip().endswith(f"{MARKER} end")
    state = parse_probe_output(result.stdout.splitlines())
    assert "lo" in state.links
    assert state.routes_in(MAIN_TABLE)
    assert state.iproute2_version
    assert "net.ipv6.conf.no-such-port.keep_addr_on_down" not in state.sysctls
    assert "net.ipv4.raw_l3mdev_accept" in state.sysctls
    assert state.probe_warnings == ()


SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


def run_probe_with_path(path: str) -> subprocess.CompletedProcess[str]:
    """The full probe under sh with only ``path`` to find programs (stand-ins first)."""
    return subprocess.run(
        ["sh", "-c", probe_command([], [])],
        env={"PATH": path},
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def test_command_works_with_minimal_environment(tmp_path: Path) -> None:
    result = run_probe_with_path(SYSTEM_PATH)
    assert result.returncode == 0
    parse_probe_output(result.stdout.splitlines())


def test_probe_waits_for_the_boot_unit_to_finish(tmp_path: Path) -> None:
    # A stand-in systemctl: our unit is "activating" for its first two queries, then done.
    count = tmp_path / "count"
    fake = tmp_path / "systemctl"
    fake.write_text(
        "#!/bin/sh\n"
        f"n=$(cat {count} 2>/dev/null || echo 0); echo $((n + 1)) > {count}\n"
        'if [ "$n" -lt 2 ]; then echo activating; else echo active; fi\n'
    )
    fake.chmod(0o755)
    result = run_probe_with_path(f"{tmp_path}:{SYSTEM_PATH}")
    assert result.returncode == 0, result.stderr
    # Two waits and the query that ended them, which the host section then reports.
    assert count.read_text().strip() == "3"
    assert "unit_state=active" in result.stdout.splitlines()
    assert parse_probe_output(result.stdout.splitlines()).unit_busy is False


def test_one_systemctl_query_tells_both_units(tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    fake = tmp_path / "systemctl"
    fake.write_text(f'#!/bin/sh\necho "$*" >> {calls}\necho active\necho active\n')
    fake.chmod(0o755)
    result = run_probe_with_path(f"{tmp_path}:{SYSTEM_PATH}")
    assert result.returncode == 0, result.stderr
    assert calls.read_text() == "is-active mgmt-vrf.service NetworkManager.service\n"
    state = parse_probe_output(result.stdout.splitlines())
    assert state.network_manager.running and not state.unit_busy


def test_boot_unit_still_activating_is_reported() -> None:
    state = parse_probe_output(probe(("host", "systemd=1\nunit_state=activating")))
    assert state.unit_busy is True
    assert parse_probe_output(probe(("host", "unit_state=inactive"))).unit_busy is False


def test_small_commands_exit_zero_here() -> None:
    for command in (links_command(), route_table_command(10), route_table_command("main", 6)):
        result = run_local(command)
        assert result.returncode == 0, (command, result.stderr)
        parse_probe_output(result.stdout.splitlines())


@pytest.mark.parametrize("bad", ["mgmt", "10; reboot", "", True, 0, -1, 2**32])
def test_route_table_command_takes_numbers_and_known_names(bad: object) -> None:
    with pytest.raises(ValueError):
        route_table_command(bad)  # type: ignore[arg-type]


def test_route_table_command_family() -> None:
    assert "route6" not in route_table_command(10, 4)
    assert "route4" not in route_table_command(10, 6)
    with pytest.raises(ValueError):
        route_table_command(10, 5)


# --- fixtures from real runs ---------------------------------------------------------------


def test_netns_full_probe() -> None:
    state = parse_probe_output(fixture_lines("netns-full.txt"))
    assert state.probe_warnings == ()

    assert state.links["eth2"].up
    assert ip_interface("203.0.113.217/24") in state.links["eth2"].addresses
    assert ip_interface("2001:db8:aa40::217:1/64") in state.links["eth2"].addresses
    # scope link (fe80::) addresses are left out
    assert all(not a.is_link_local for a in state.links["eth2"].addresses)
    assert state.links["eth3"].master == "br9"
    assert state.links["br9"].kind == "bridge"
    assert state.links["eth0"].kind == "veth"
    assert state.vrf_links == {}

    for family, gw in ((4, "203.0.113.1"), (6, "2001:db8:aa40::1")):
        (default,) = find(state, table=10, family=family, dst="default", type="unicast")
        assert default.gateway == gw and default.dev == "eth2"
        (unreachable,) = find(state, table=10, family=family, type="unreachable")
        assert unreachable.dst == "default"
        assert unreachable.metric == UNREACHABLE_METRIC

    # Main table: the service defaults plus the blog's stray defaults through eth2.
    main4 = {(r.gateway, r.metric) for r in find(state, table=MAIN_TABLE, family=4, dst="default")}
    assert main4 == {("192.0.2.1", None), ("203.0.113.1", 102)}
    main6 = {(r.gateway, r.metric) for r in find(state, table=MAIN_TABLE, family=6, dst="default")}
    assert main6 == {("2001:db8:face::1", 1024), ("2001:db8:aa40::1", 102)}

    # Bare host destinations become /32 and /128.
    assert find(state, table=10, dst="198.51.100.200/32")
    assert find(state, table=10, dst="2001:db8:beef::1/128")
    # -N prints protocols as numbers; they come back as names.
    (connected,) = find(state, table=MAIN_TABLE, family=4, dst="192.0.2.0/24")
    assert connected.protocol == "kernel"
    # local table and derived route types are dropped.
    assert not [r for r in state.routes if r.table == 255 or r.type in ("local", "broadcast")]

    assert {(r.family, r.priority, r.table) for r in state.rules} == {
        (4, 0, "local"),
        (4, 1000, "10"),
        (4, 32766, "main"),
        (4, 32767, "default"),
        (6, 0, "local"),
        (6, 1000, "10"),
        (6, 32766, "main"),
    }
    assert not any(r.l3mdev for r in state.rules)

    assert state.sysctls["net.ipv4.tcp_l3mdev_accept"] == "0"
    assert state.sysctls["net.ipv4.raw_l3mdev_accept"] == "1"
    assert state.sysctls["net.ipv6.conf.eth2.keep_addr_on_down"] == "0"

    fixture_files = "/tmp/mgmt-vrf-fixture"
    assert state.file(f"{fixture_files}/90-mgmt-vrf.conf").text.startswith(
        "net.ipv4.tcp_l3mdev_accept = 1\n"
    )
    assert state.file(f"{fixture_files}/empty.conf").content == b""
    assert state.file(f"{fixture_files}/a b $(touch pwned)").content == b"literal\n"
    assert not state.file(f"{fixture_files}/missing.conf").exists
    assert not state.file("/etc/sysconfig/network-scripts/ifcfg-eth2").exists

    assert state.iproute2_version == "6.1.0"
    assert state.os_id == "debian"
    assert state.network_manager.installed is False
    assert state.unit_enabled is False


def test_netns_route_table_probe() -> None:
    state = parse_probe_output(fixture_lines("netns-route-table10.txt"))
    assert {r.table for r in state.routes} == {10}
    assert len(find(state, type="unreachable", metric=UNREACHABLE_METRIC)) == 2
    assert state.links == {}


def test_netns_missing_table_prints_open_bracket() -> None:
    # Real capture: iproute2 6.1 prints "[" without a newline and exits 2.
    raw = (PROBE / "netns-route-table99.txt").read_text()
    assert f"[\n{MARKER} route6 99" in raw
    state = parse_probe_output(raw.splitlines())
    assert state.routes == ()
    assert state.probe_warnings == ()


def test_netns_links_probe() -> None:
    state = parse_probe_output(fixture_lines("netns-links.txt"))
    assert set(state.links) == {"lo", "eth0", "eth1", "eth2", "eth3", "br9"}
    assert state.routes == ()


@pytest.mark.parametrize(
    ("section", "source", "table"),
    [
        ("route4", "route4-all.json", None),
        ("route6", "route6-all.json", None),
        ("route4 10", "route4-table10.json", "10"),
        ("route6 10", "route6-table10.json", "10"),
        ("route4 main", "route4-main.json", "main"),
    ],
)
def test_netns_json_without_numeric_flag(section: str, source: str, table: str | None) -> None:
    # Captured without -N: types, protocols and tables by name must read the same.
    body = (NETNS / source).read_text()
    state = parse_probe_output(probe((section, body)))
    assert state.routes
    if table == "10":
        assert {r.table for r in state.routes} == {10}
    if table is None:
        assert {r.table for r in state.routes} == {10, MAIN_TABLE}
    assert find(state, type="unreachable") or table == "main"


def test_netns_type_vrf_filter_prints_empty_objects() -> None:
    body = (NETNS / "link-type-vrf.json").read_text()
    assert json.loads(body) and all(item == {} for item in json.loads(body))
    state = parse_probe_output(probe(("link", body)))
    assert state.links == {}


def lab_fixture(name: str) -> list[str]:
    path = PROBE / name
    assert path.exists(), f"{name} is missing; tests/fixtures/README.md says how to capture it"
    return path.read_text().splitlines()


# Each state captured twice: with this machine's ip (iproute2 6.1) on the script-mode lab,
# and on the AlmaLinux 8 shaped lab with its ip, iproute 5.18.0, under NetworkManager.
IP_OF_CAPTURE = {
    "lab-clean.txt": "6.1.0",
    "lab-vrf.txt": "6.1.0",
    "lab-broken.txt": "6.1.0",
    "lab-el8-clean.txt": "5.18.0",
    "lab-el8-converged.txt": "5.18.0",
    "lab-el8-broken.txt": "5.18.0",
}


@pytest.mark.parametrize("name", sorted(IP_OF_CAPTURE))
def test_each_capture_says_which_ip_made_it(name: str) -> None:
    state = parse_probe_output(lab_fixture(name))
    assert state.iproute2_version == IP_OF_CAPTURE[name]
    assert state.probe_warnings == ()


@pytest.mark.parametrize("name", ["lab-clean.txt", "lab-el8-clean.txt"])
def test_lab_clean(name: str) -> None:
    state = parse_probe_output(lab_fixture(name))
    assert state.vrf_links == {}
    assert state.links["eth2"].master is None
    assert not [r for r in state.routes if r.table == 10]
    assert find(state, table=MAIN_TABLE, family=4, dst="default")


@pytest.mark.parametrize("name", ["lab-vrf.txt", "lab-el8-converged.txt"])
def test_lab_vrf(name: str) -> None:
    state = parse_probe_output(lab_fixture(name))
    mgmt = state.links["mgmt0"]
    assert mgmt.is_vrf and mgmt.vrf_table == 10 and mgmt.up
    assert state.links["eth2"].master == "mgmt0"
    for family in (4, 6):
        (default,) = find(state, table=10, family=family, dst="default", type="unicast")
        assert default.gateway and default.dev == "eth2"
        (unreachable,) = find(state, table=10, family=family, type="unreachable")
        assert unreachable.metric == UNREACHABLE_METRIC and unreachable.dst == "default"
        assert find(state, table=MAIN_TABLE, family=family, dst="default")
    # The first VRF adds the l3mdev rule at priority 1000 by itself.
    assert {(r.family, r.priority) for r in state.rules if r.l3mdev} == {(4, 1000), (6, 1000)}
    # Enslaving moved eth2's connected route out of main into the VRF table.
    assert not find(state, table=MAIN_TABLE, dev="eth2")
    assert not find(state, table=MAIN_TABLE, dev="eth2", protocol="kernel", family=4)
    assert find(state, table=10, dev="eth2", protocol="kernel", family=4)


@pytest.mark.parametrize("name", ["lab-broken.txt", "lab-el8-broken.txt"])
def test_lab_broken(name: str) -> None:
    # `python -m lab seed-broken`: the blog's six ifcfg files under NetworkManager. The VRF
    # profile loses to ifcfg-eth2, so there is no mgmt0 and eth2's defaults land in main.
    state = parse_probe_output(lab_fixture(name))
    assert state.probe_warnings == ()
    assert state.vrf_links == {}
    assert state.links["eth2"].master is None
    assert not state.routes_in(10)
    for family, service_gw, mgmt_gw in (
        (4, "198.51.100.1", "203.0.113.1"),
        (6, "2001:db8:100::1", "2001:db8:1::1"),
    ):
        defaults = {
            (r.gateway, r.dev, r.metric)
            for r in find(state, table=MAIN_TABLE, family=family, dst="default")
        }
        assert defaults == {(service_gw, "eth0", 100), (mgmt_gw, "eth2", 102)}
    profiles = {Path(p.path).name: p for p in state.profiles}
    assert profiles["ifcfg-vrf.eth2"].device == "eth2"
    assert profiles["ifcfg-vrf.eth2"].vrf == "mgmt0"
    assert profiles["ifcfg-eth2"].device == "eth2" and profiles["ifcfg-eth2"].vrf is None
    route_file = state.file("/etc/sysconfig/network-scripts/route-vrf.eth2")
    assert "ADDRESS=0.0.0.0" in route_file.text
    assert not state.file("/etc/sysconfig/network-scripts/route-eth2").exists
    assert (state.os_id, state.os_version) == ("almalinux", "8.7")


LAB = FIXTURES / "lab"


def test_lab_raw_json_shapes() -> None:
    vrf = json.loads((LAB / "link-type-vrf.json").read_text())
    port = json.loads((LAB / "link-eth2.json").read_text())
    rules4 = json.loads((LAB / "rule4.json").read_text())
    rules6 = json.loads((LAB / "rule6.json").read_text())
    state = parse_probe_output(
        probe(
            ("link", vrf + port),
            ("rule4", rules4),
            ("rule6", rules6),
            ("route4 10", (LAB / "route4-table10.json").read_text()),
            ("route6 10", (LAB / "route6-table10.json").read_text()),
        )
    )
    assert state.links["mgmt0"].vrf_table == 10
    assert state.links["eth2"].master == "mgmt0"
    assert state.links["eth2"].kind == "veth"
    assert [(r.family, r.priority) for r in state.rules if r.l3mdev] == [(4, 1000), (6, 1000)]
    assert len(find(state, table=10, type="unreachable", metric=UNREACHABLE_METRIC)) == 2
    assert {r.gateway for r in find(state, table=10, type="unicast", dst="default")} == {
        "203.0.113.1",
        "2001:db8:1::1",
    }


def test_lab_route_all_json_by_name() -> None:
    state = parse_probe_output(probe(("route4", (LAB / "route4-all.json").read_text())))
    assert find(state, table=10, type="unreachable", metric=UNREACHABLE_METRIC)
    assert find(state, table=MAIN_TABLE, dst="default", gateway="198.51.100.1")


# --- tolerance -----------------------------------------------------------------------------


def test_open_bracket_is_an_empty_table() -> None:
    state = parse_probe_output(probe(("route4 10", "["), ("route6 10", "[")))
    assert state.routes == ()
    assert state.probe_warnings == ()


def test_empty_objects_are_ignored() -> None:
    state = parse_probe_output(
        probe(("link", [{}]), ("route4", [{}, {}]), ("rule4", [{}]), ("addr", "[{}]"))
    )
    assert state.links == {} and state.routes == () and state.rules == ()


def test_missing_sections_are_tolerated_and_reported() -> None:
    keep = []
    skipping = False
    for line in fixture_lines("netns-full.txt"):
        if line.startswith(MARKER):
            skipping = line.split()[1] in ("route6", "rule4", "rule6")
        if not skipping:
            keep.append(line)
    state = parse_probe_output(keep)
    assert {r.family for r in state.routes} == {4}
    assert state.rules == ()
    assert any("route6" in w for w in state.probe_warnings)
    assert any("rule4" in w for w in state.probe_warnings)


def test_empty_section_is_a_warning() -> None:
    state = parse_probe_output(probe(("host", "systemd=1"), ("link", None)))
    assert state.systemd_running
    assert state.links == {}
    assert any("'link'" in w and "no output" in w for w in state.probe_warnings)


def test_no_markers_is_an_error() -> None:
    with pytest.raises(ProbeError, match="not output of the probe"):
        parse_probe_output(["sh: 1: Syntax error", ""])


def test_cut_output_is_an_error() -> None:
    lines = fixture_lines("netns-full.txt")
    cut = lines[: next(i for i, line in enumerate(lines) if line.endswith(" addr")) + 1]
    with pytest.raises(ProbeError, match="'addr'.*cut short"):
        parse_probe_output(cut)


def test_truncated_json_names_the_section() -> None:
    with pytest.raises(ProbeError, match=r"section 'route6' \(10\): output is not valid JSON"):
        parse_probe_output(probe(("route6 10", '[{"dst":"default","gateway":"2001:db')))


def test_non_list_json_names_the_section() -> None:
    with pytest.raises(ProbeError, match="section 'link': expected a JSON list"):
        parse_probe_output(probe(("link", {"ifname": "eth0"})))


def test_bad_base64_names_the_file() -> None:
    with pytest.raises(ProbeError, match=r"\(/etc/x\): content is not base64"):
        parse_probe_output(probe(("file /etc/x", "not base64 !!")))


def test_directory_in_place_of_a_file_is_an_error() -> None:
    with pytest.raises(ProbeError, match="/etc/x.*not a file"):
        parse_probe_output(probe(("notfile /etc/x", None)))


def test_iproute2_518_field_shapes() -> None:
    # Tolerance, typed by hand: shapes a host may print that no capture holds (the real
    # 5.18 output is in lab-el8-*.txt): names where 6.x -N prints numbers, a table as an
    # int, "via" instead of "gateway", a multipath route, and a table name only
    # /etc/iproute2/rt_tables knows.
    routes = [
        {"type": "unreachable", "dst": "default", "table": 10, "metric": 4278198272},
        {"dst": "0.0.0.0/0", "gateway": "192.0.2.1", "dev": "eth0", "protocol": "static"},
        {"dst": "198.51.100.0/24", "via": {"family": "inet", "host": "192.0.2.9"}, "table": "10"},
        {"dst": "203.0.113.0/24", "nexthops": [{"gateway": "192.0.2.1", "dev": "eth0"}]},
        {"dst": "203.0.113.7", "dev": "eth0", "table": "mgmt"},
        {"type": "local", "dst": "192.0.2.5", "dev": "eth0", "table": "10"},
        {"type": "broadcast", "dst": "192.0.2.255", "dev": "eth0", "table": "local"},
    ]
    state = parse_probe_output(probe(("route4", routes)))
    assert find(state, table=10, type="unreachable", metric=UNREACHABLE_METRIC, dst="default")
    (main_default,) = find(state, table=MAIN_TABLE, dst="default")
    assert main_default.gateway == "192.0.2.1" and main_default.protocol == "static"
    assert find(state, table=10, dst="198.51.100.0/24", gateway="192.0.2.9")
    assert find(state, dst="203.0.113.0/24", gateway=None)
    assert not find(state, dst="203.0.113.7/32")
    assert any("'mgmt'" in w for w in state.probe_warnings)
    assert not find(state, type="local") and not find(state, type="broadcast")


def test_rules_l3mdev_and_numeric_tables() -> None:
    rules4 = [
        {"priority": 0, "src": "all", "table": "255"},
        {"priority": 1000, "src": "all", "l3mdev": None},
        {"priority": 32765, "src": "all", "table": "local"},
        {"priority": 32766, "src": "all", "table": 254},
        {"src": "all", "table": "10"},
    ]
    state = parse_probe_output(probe(("rule4", rules4)))
    assert [(r.priority, r.table, r.l3mdev) for r in state.rules] == [
        (0, "local", False),
        (1000, None, True),
        (32765, "local", False),
        (32766, "main", False),
        (0, "10", False),
    ]


def test_vrf_link_and_ports() -> None:
    links = [
        {
            "ifindex": 6,
            "ifname": "mgmt0",
            "flags": ["NOARP", "MASTER", "UP", "LOWER_UP"],
            "linkinfo": {"info_kind": "vrf", "info_data": {"table": 10}},
        },
        {
            "ifindex": 4,
            "ifname": "eth2",
            "flags": ["BROADCAST", "MULTICAST", "SLAVE"],
            "master": "mgmt0",
            "linkinfo": {"info_slave_kind": "vrf", "info_slave_data": {"table": 10}},
        },
    ]
    addrs = [
        {
            "ifname": "eth2",
            "addr_info": [
                {"family": "inet", "local": "192.0.2.217", "prefixlen": 24, "scope": "global"},
                {"family": "inet6", "local": "fe80::1", "prefixlen": 64, "scope": "link"},
            ],
        }
    ]
    state = parse_probe_output(probe(("link", links), ("addr", addrs)))
    assert state.links["mgmt0"].vrf_table == 10 and state.links["mgmt0"].up
    assert state.links["eth2"].master == "mgmt0" and not state.links["eth2"].up
    assert state.links["eth2"].kind is None and state.links["eth2"].vrf_table is None
    assert state.links["eth2"].addresses == (ip_interface("192.0.2.217/24"),)


def test_host_section() -> None:
    host = "\n".join(
        [
            'ID="almalinux"',
            'VERSION_ID="8.7"',
            "iproute2=ip utility, iproute2-5.18.0, libbpf 0.5.0",
            "systemd=1",
            "unit_enabled=1",
            "network_scripts=0",
            "nm_installed=1",
            "nm_version=1.40.0-1.el8",
            "nm_plugins=ifcfg-rh, keyfile",
            "nm_running=1",
            "cgroup_fs=tmpfs",
            "cgroup_unified=0",
        ]
    )
    state = parse_probe_output(probe(("host", host)))
    assert (state.os_id, state.os_version) == ("almalinux", "8.7")
    assert state.iproute2_version == "5.18.0"
    assert state.systemd_running and state.unit_enabled and not state.network_scripts_installed
    assert state.network_manager.installed and state.network_manager.running
    assert state.network_manager.version == "1.40.0-1.el8"
    assert state.network_manager.plugins == ("ifcfg-rh", "keyfile")
    assert state.cgroup == "v1"


def test_plugins_not_read_by_an_older_probe_count_as_ifcfg_capable() -> None:
    state = parse_probe_output(probe(("host", "nm_installed=1\nnm_version=1.42.4")))
    assert state.network_manager.plugins is None and state.network_manager.reads_ifcfg


def test_the_probe_reads_the_plugins_networkmanager_prints() -> None:
    # `NetworkManager --print-config` of the lab's 1.42.4 with no plugins= set prints its
    # build's default as a comment: "# plugins=ifcfg-rh".
    command = probe_command()
    snippet = command[command.index('"$mv_nm" --print-config') :].split("; else", 1)[0]
    for printed, expected in (
        ("[main]\n# plugins=ifcfg-rh\n# rc-manager=auto\n", "nm_plugins=ifcfg-rh\n"),
        ("[main]\nplugins=keyfile\n[logging]\n", "nm_plugins=keyfile\n"),
        ("[main]\n# rc-manager=auto\n", ""),
    ):
        fake = f"printf '%s' {sh_quote(printed)}"
        r = subprocess.run(
            ["sh", "-c", snippet.replace('"$mv_nm" --print-config', fake)],
            capture_output=True,
            text=True,
        )
        assert r.stdout == expected, (printed, r.stderr)


@pytest.mark.parametrize(
    ("fs", "unified", "expected"),
    [("cgroup2fs", "0", "v2"), ("tmpfs", "1", "hybrid"), ("tmpfs", "0", "v1"), ("", "0", None)],
)
def test_cgroup_modes(fs: str, unified: str, expected: str | None) -> None:
    state = parse_probe_output(probe(("host", f"cgroup_fs={fs}\ncgroup_unified={unified}")))
    assert state.cgroup == expected


def test_profiles() -> None:
    state = parse_probe_output(
        probe(
            (
                "profile /etc/sysconfig/network-scripts/ifcfg-vrf.eth2",
                'TYPE=Ethernet\nNAME="vrf.eth2"\nDEVICE=eth2\nVRF=mgmt0',
            ),
            (
                "profile /etc/sysconfig/network-scripts/ifcfg-eth2",
                "TYPE=Ethernet\nNAME=eth2\nDEVICE=eth2",
            ),
            (
                "profile /etc/NetworkManager/system-connections/mgmt0.nmconnection",
                "connection.id=mgmt0\nconnection.type=vrf\nconnection.interface-name=mgmt0\nvrf.table=10",
            ),
            (
                "profile /etc/NetworkManager/system-connections/eth2.nmconnection",
                "connection.id=eth2\nconnection.type=ethernet\nconnection.interface-name=eth2\n"
                "connection.controller=mgmt0\nconnection.port-type=vrf",
            ),
        )
    )
    by_path = {p.path.rsplit("/", 1)[1]: p for p in state.profiles}
    assert by_path["ifcfg-vrf.eth2"].device == "eth2"
    assert by_path["ifcfg-vrf.eth2"].vrf == "mgmt0"
    assert by_path["ifcfg-vrf.eth2"].name == "vrf.eth2"
    assert by_path["ifcfg-eth2"].vrf is None
    assert by_path["mgmt0.nmconnection"].type == "vrf"
    assert by_path["mgmt0.nmconnection"].table == 10
    assert by_path["eth2.nmconnection"].vrf == "mgmt0"


def test_profile_summary_commands_keep_secrets_out(tmp_path: Path) -> None:
    # Run the real awk/grep filters from the command on files like the host's.
    keyfile = tmp_path / "wifi.nmconnection"
    keyfile.write_text(
        "[connection]\nid=home\ntype=wifi\ninterface-name=wlan0\n"
        "[wifi-security]\npsk=hunter2\n[vpn-secrets]\ntype=secret-type\nid=secret-id\n"
        "[vrf]\ntable=10\n[ipv4]\nroute-table=10\n"
    )
    ifcfg = tmp_path / "ifcfg-eth2"
    ifcfg.write_text("DEVICE=eth2\nWPA_PSK=hunter2\nVRF=mgmt0\n  TYPE=Ethernet\n")
    other = tmp_path / "ifcfg-eth0"
    other.write_text("DEVICE=eth0\nNAME='service side'\n")
    empty = tmp_path / "empty.nmconnection"
    empty.write_text("")
    # ifcfg-eth2 is also a file we manage: the file sections print it, the loop must not.
    command = probe_command([str(ifcfg)], [])
    # Point the profile loops at the temp directory instead of /etc.
    command = command.replace("/etc/sysconfig/network-scripts/ifcfg-*", f"{tmp_path}/ifcfg-*")
    command = command.replace(
        "/etc/NetworkManager/system-connections/*.nmconnection", f"{tmp_path}/*.nmconnection"
    )
    result = run_local(command)
    assert result.returncode == 0
    assert "hunter2" not in result.stdout and "secret" not in result.stdout
    state = parse_probe_output(result.stdout.splitlines())
    profiles = {Path(p.path).name: p for p in state.profiles}
    assert profiles["wifi.nmconnection"].device == "wlan0"
    assert profiles["wifi.nmconnection"].name == "home"
    assert profiles["wifi.nmconnection"].type == "wifi"
    assert profiles["wifi.nmconnection"].table == 10
    assert profiles["ifcfg-eth2"].vrf == "mgmt0"
    assert profiles["ifcfg-eth2"].type == "Ethernet"
    assert profiles["ifcfg-eth0"].name == "service side"
    assert profiles["ifcfg-eth0"].vrf is None
    assert result.stdout.count(f"{MARKER} file {ifcfg}\n") == 1
    assert result.stdout.count(f"{MARKER} file {other}\n") == 1
    # An empty keyfile says nothing about any device, so it has no summary.
    assert set(profiles) == {"wifi.nmconnection", "ifcfg-eth2", "ifcfg-eth0"}


def test_to_json_is_plain_json() -> None:
    state = parse_probe_output(fixture_lines("netns-full.txt"))
    data = json.loads(json.dumps(state.to_json()))
    assert data["links"]["eth2"]["addresses"][0] == "203.0.113.217/24"
    assert data["files"]["/tmp/mgmt-vrf-fixture/empty.conf"] == {
        "exists": True,
        "size": 0,
        "sha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    }


# --- the seed blog's text output -----------------------------------------------------------

_WORDS = {"via": "gateway", "dev": "dev", "proto": "protocol", "metric": "metric", "table": "table"}
_TYPES = {"local", "broadcast", "multicast", "unreachable", "blackhole", "prohibit"}


def text_route_to_json(line: str) -> dict[str, object]:
    """How `ip route show` text maps to the `ip -j route show` keys the parser reads."""
    words = line.split()
    obj: dict[str, object] = {}
    if words[0] in _TYPES:
        obj["type"] = words.pop(0)
    obj["dst"] = words.pop(0)
    for key, value in zip(words[::2], words[1::2], strict=False):
        if key in _WORDS:
            obj[_WORDS[key]] = int(value) if key == "metric" else value
    return obj


def seed_routes(name: str) -> list[dict[str, object]]:
    return [text_route_to_json(line) for line in (SEED / name).read_text().splitlines() if line]


def test_seed_blog_tables() -> None:
    state = parse_probe_output(
        probe(
            ("route4", seed_routes("ip-route-show.txt")),
            ("route6", seed_routes("ip-6-route-show.txt")),
            ("route4 10", seed_routes("ip-route-show-table-10.txt")),
            ("route6 10", seed_routes("ip-6-route-show-table-10.txt")),
        )
    )
    # Table 10 after the blog's rc.local: defaults via the mgmt gateway, nothing else that
    # is configuration (local/broadcast/multicast lines are the kernel's own).
    assert [(r.family, r.dst, r.gateway, r.dev) for r in state.routes_in(10)] == [
        (4, "default", "192.168.1.1", "eth2"),
        (6, "default", "2405:6580:aa40::1", "eth2"),
    ]
    assert find(state, table=10, family=6)[0].metric == 1024
    # The blog's main table after "delete default twice": one v4 default, the eth2 host
    # route NetworkManager added for the gateway, and no v6 default at all.
    assert [r.gateway for r in find(state, table=MAIN_TABLE, family=4, dst="default")] == [
        "192.168.22.1"
    ]
    (gw_route,) = find(state, table=MAIN_TABLE, dst="192.168.1.1/32")
    assert (gw_route.dev, gw_route.protocol, gw_route.metric) == ("eth2", "static", 102)
    assert not find(state, table=MAIN_TABLE, family=6, dst="default")


def test_seed_blog_vrf_link_text() -> None:
    text = (SEED / "ip-d-link-show-type-vrf.txt").read_text()
    # What `ip -d link show type vrf` calls "vrf table 10" is linkinfo.info_data.table in JSON.
    match = re.search(r"^\s+vrf table (\d+) ", text, re.M)
    assert match and match.group(1) == "10"
    assert re.match(r"^6: mgmt0: ", text)


def test_fixture_readme_lists_every_fixture() -> None:
    readme = (FIXTURES / "README.md").read_text()
    for path in FIXTURES.rglob("*"):
        if not path.is_file() or path.name == "README.md" or "__pycache__" in path.parts:
            continue
        if path.parent.parent.name == "facts":
            assert json.loads(path.read_text())["source"], path
        else:
            assert path.name in readme, path


def test_the_probe_command_passes_shellcheck_but_for_its_deliberate_word_splits() -> None:
    # `set -- $(...)` splits unit states and unit file paths into arguments on purpose.
    command = probe_command(
        [paths.SYSCTL_DROPIN, paths.ifcfg("eth2"), paths.keyfile("mgmt0")],
        ["eth2", "bond0.100"],
        ["sshd.service"],
    )
    complaints = [
        line for line in shellcheck({"probe.sh": command}).splitlines() if "SC2046" not in line
    ]
    assert complaints == []
