"""Names inside a VRF: its nameservers in the fleet file, the resolv.conf they render, the
wrapper that mounts it, the path unit that keeps it mounted, and what the plan does."""

from __future__ import annotations

import os
import subprocess
from dataclasses import replace
from ipaddress import ip_address
from pathlib import Path

import pytest

from mgmt_vrf import paths, render
from mgmt_vrf.fleet_file import FleetError, parse_fleet, spec_from_data, spec_to_data
from mgmt_vrf.hoststate import FileState, HostState, UnitState
from mgmt_vrf.model import HostSpec
from mgmt_vrf.plan import RemoveFile, WriteFile, desired_files, plan
from mgmt_vrf.rollback import rollback_script
from mgmt_vrf.services import unit_problems

from .builders import converged_state, seed_spec, summary
from .test_services import host, sshd

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "dns"
PATH_UNIT = "mgmt-vrf-resolv.path"

FLEET = """
[hosts.h1]
ssh_address = "192.0.2.10"
[hosts.h1.interfaces.eth0]
ipv4 = "198.51.100.10/25"
gateway4 = "198.51.100.1"
main_default = true
[hosts.h1.interfaces.eth2]
ipv4 = "203.0.113.10/25"
ipv6 = "2001:db8:1::10/64"
[hosts.h1.vrfs.mgmt0]
table = 10
ports = ["eth2"]
gateway4 = "203.0.113.1"
"""


def dns_spec(*services: str, search: tuple[str, ...] = ("mgmt.example.net",)) -> HostSpec:
    spec = seed_spec()
    vrf = replace(
        spec.vrfs[0],
        services=services,
        nameservers=(ip_address("203.0.113.53"), ip_address("2001:db8:1::53")),
        search=search,
    )
    return replace(spec, vrfs=(vrf,))


def app(**changes: object):  # type: ignore[no-untyped-def]
    return sshd(name="app.service", id="app.service", fragment_path="/etc/app.service", **changes)


APP_UNIT = "[Service]\nExecStart=/usr/bin/app --serve\n"


def applied(state: HostState, spec: HostSpec) -> HostState:
    """The state once the plan's file changes are made."""
    files = dict(state.files)
    for change in plan(spec, state).changes:
        if isinstance(change, WriteFile):
            files[change.path] = FileState(change.path, change.content.encode())
        elif isinstance(change, RemoveFile):
            files.pop(change.path, None)
    return replace(state, files=files)


# --- the fleet file --------------------------------------------------------------------------


def test_nameservers_and_search_reach_the_spec_and_survive_host_data() -> None:
    text = (
        FLEET + 'nameservers = ["203.0.113.53", "2001:db8:1::53"]\nsearch = ["Mgmt.Example.NET."]\n'
    )
    (spec,) = parse_fleet(text).hosts
    vrf = spec.vrfs[0]
    assert vrf.nameservers == (ip_address("203.0.113.53"), ip_address("2001:db8:1::53"))
    assert vrf.search == ("mgmt.example.net",)
    data = spec_to_data(spec)
    assert data["vrfs"]["mgmt0"]["nameservers"] == ["203.0.113.53", "2001:db8:1::53"]
    assert spec_from_data(data) == spec


NS = "vrfs.mgmt0.nameservers: "


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (
            'nameservers = "203.0.113.53"',
            NS + 'expected an array of nameserver addresses, write nameservers = ["203.0.113.53"]',
        ),
        ("nameservers = []", NS + "is empty; list a nameserver"),
        (
            'nameservers = ["203.0.113.51", "203.0.113.52", "203.0.113.53", "203.0.113.54"]',
            NS + "lists 4 nameservers, and the resolver reads only the first 3; keep 3 at most",
        ),
        ('nameservers = ["127.0.0.1"]', NS + '"127.0.0.1" is this host itself'),
        ('nameservers = ["fe80::1"]', NS + '"fe80::1" is link-local or multicast'),
        ('nameservers = ["fe80::1%eth2"]', NS + '"fe80::1%eth2" has a zone id'),
        ('nameservers = ["203.0.113.53/32"]', NS + '"203.0.113.53/32" is not an IP address'),
        ('nameservers = ["255.255.255.255"]', NS + '"255.255.255.255" is a reserved address'),
        (
            'nameservers = ["::ffff:203.0.113.53"]',
            NS + '"::ffff:203.0.113.53" is an IPv4 address written as IPv6; write it as '
            "203.0.113.53",
        ),
        (
            "nameservers = [53]",
            NS + "item 0 is the integer 53; nameservers are addresses in quotes",
        ),
        (
            'nameservers = ["2001:db8:1::53", "2001:DB8:1:0::53"]',
            NS + "2001:db8:1::53 is listed twice",
        ),
        (
            'nameservers = ["2001:db8:ffff::53"]',
            NS + "nameserver 2001:db8:ffff::53 is not reachable inside mgmt0: no gateway6, no "
            "route to it and no port on its subnet; give mgmt0 gateway6 or a route to it",
        ),
        (
            'search = ["example.net"]',
            "vrfs.mgmt0.search: search domains need nameservers of mgmt0 to ask",
        ),
        (
            'nameservers = ["203.0.113.53"]\nsearch = ["bad..example.net"]',
            'vrfs.mgmt0.search: "bad..example.net" is not a domain name',
        ),
        ('dns = ["203.0.113.53"]', "vrfs.mgmt0.dns: unknown key; did you mean nameservers?"),
        (
            'state = "absent"\nnameservers = ["203.0.113.53"]',
            NS + 'mgmt0 is marked state = "absent"',
        ),
    ],
)
def test_each_mistake_is_named_with_host_and_key(lines: str, message: str) -> None:
    with pytest.raises(FleetError) as caught:
        parse_fleet(FLEET + lines + "\n")
    assert f"host h1: {message}" in str(caught.value), str(caught.value)


def test_a_bad_search_list_is_one_problem_not_two() -> None:
    with pytest.raises(FleetError) as caught:
        parse_fleet(FLEET + 'search = "example.net"\n')
    assert caught.value.messages == (
        "fleet.toml: host h1: vrfs.mgmt0.search: expected an array of domain names, write "
        'search = ["example.net"]',
    )


def test_a_nameserver_on_a_port_subnet_or_behind_a_route_needs_no_gateway() -> None:
    no_gw = FLEET.replace('gateway4 = "203.0.113.1"\n', "", 1)
    on_subnet = no_gw + 'nameservers = ["203.0.113.53", "2001:db8:1::53"]\n'
    assert parse_fleet(on_subnet).hosts[0].vrfs[0].nameservers
    routed = no_gw + (
        'nameservers = ["192.0.2.53"]\nroutes = [{ to = "192.0.2.0/24", via = "203.0.113.1" }]\n'
    )
    assert parse_fleet(routed).hosts[0].vrfs[0].nameservers == (ip_address("192.0.2.53"),)


# --- the files -------------------------------------------------------------------------------


# What nameservers add or change, against golden copies (golden/dns; UPDATE_GOLDEN=1 writes
# them). test_render's shellcheck of every golden script covers the wrapper.
DNS_FILES = (
    paths.resolv_conf("mgmt0"),
    paths.RESOLV_PATH_UNIT,
    paths.RESOLV_SERVICE_UNIT,
    paths.EXEC_WRAPPER,
    paths.UNIT,
)


def plan_files(spec: HostSpec) -> dict[str, tuple[str, str, str] | None]:
    return desired_files(spec, "networkmanager")


def _dns_files() -> dict[str, str]:
    files = plan_files(dns_spec("sshd.service"))
    return {path: desired[0] for path in DNS_FILES if (desired := files[path]) is not None}


@pytest.mark.parametrize("path", sorted(_dns_files()))
def test_rendered_dns_file_matches_golden(path: str) -> None:
    content = _dns_files()[path]
    golden = GOLDEN / path.lstrip("/")
    if os.environ.get("UPDATE_GOLDEN"):
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(content)
    assert golden.read_text() == content


def test_resolv_conf_is_what_the_resolver_reads() -> None:
    text = render.resolv_conf(dns_spec().vrfs[0])
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    assert lines == [
        "search mgmt.example.net",
        "nameserver 203.0.113.53",
        "nameserver 2001:db8:1::53",
    ]
    assert "search" not in render.resolv_conf(dns_spec(search=()).vrfs[0]).replace("# ", "")


def test_without_nameservers_nothing_of_this_is_rendered() -> None:
    files = plan_files(seed_spec())
    assert files[paths.resolv_conf("mgmt0")] is None
    assert files[paths.RESOLV_PATH_UNIT] is None and files[paths.RESOLV_SERVICE_UNIT] is None
    assert "--resolv" not in render.exec_wrapper(seed_spec())
    assert PATH_UNIT not in render.unit(seed_spec())


def _wrapper(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "mgmt-vrf-exec"
    script.write_text(render.exec_wrapper(dns_spec()))
    return subprocess.run(["sh", str(script), *args], capture_output=True, text=True, timeout=30)


def test_remount_with_no_vrf_on_this_machine_does_nothing(tmp_path: Path) -> None:
    run = _wrapper(tmp_path, "--remount-resolv")
    assert (run.returncode, run.stdout) == (0, "")


def test_the_second_stage_refuses_to_run_in_the_hosts_own_namespace(tmp_path: Path) -> None:
    """By hand it would mount the VRF's file over the host's /etc/resolv.conf itself."""
    ns = os.readlink("/proc/self/ns/mnt")  # the wrapper's own: what a caller by hand has
    for args in (
        ("--resolv", ns, "mgmt0", "/nonexistent", "true"),
        ("--resolv", "", "mgmt0", "/nonexistent", "true"),
        ("--resolv", "mgmt0", "/nonexistent", "true"),
    ):
        run = _wrapper(tmp_path, *args)
        assert run.returncode == 2, run
        assert "--resolv is the second stage of mgmt-vrf-exec" in run.stderr


# --- the plan --------------------------------------------------------------------------------


def _state() -> HostState:
    return host(converged_state(), sshd(), app(), files={"/etc/app.service": APP_UNIT})


def test_nameservers_write_their_files_start_the_watch_and_restart_the_vrf_services() -> None:
    spec = dns_spec("sshd.service", "app.service")
    state = applied(_state(), dns_spec())  # every file but the services' drop-ins there
    state = replace(state, files={k: v for k, v in state.files.items() if "resolv" not in k})
    done = summary(plan(spec, state))
    assert f"write {paths.resolv_conf('mgmt0')}" in done
    assert (
        f"write {paths.RESOLV_PATH_UNIT}" in done and f"write {paths.RESOLV_SERVICE_UNIT}" in done
    )
    assert done.index("systemctl daemon-reload") < done.index(f"systemctl restart {PATH_UNIT}")
    # app starts again with the VRF's resolver; sshd keeps the host's for its sessions.
    assert "systemctl restart app.service" in done
    written = [c for c in plan(spec, state).changes if isinstance(c, WriteFile)]
    modes = {c.path: c.mode for c in written}
    assert modes[paths.resolv_conf("mgmt0")] == "0644"


WATCHING = UnitState(PATH_UNIT, PATH_UNIT, load_state="loaded", active_state="active")


def test_the_second_run_changes_nothing_and_a_stopped_watch_starts_again() -> None:
    spec = dns_spec("sshd.service", "app.service")
    state = applied(_state(), spec)
    units = {
        name: replace(unit, cgroup=f"/system.slice/{name}/vrf/mgmt0")
        for name, unit in state.units.items()
    }
    assert plan(spec, replace(state, units={**units, PATH_UNIT: WATCHING})).converged
    # Failed (a start limit hit) or stopped by hand: started again, nothing else.
    failed = replace(WATCHING, active_state="failed")
    result = plan(spec, replace(state, units={**units, PATH_UNIT: failed}))
    assert summary(result) == [f"systemctl restart {PATH_UNIT}"]
    assert "it is failed, so nothing mounts the VRFs' resolv.conf again" in result.changes[0].why
    # The probe describes the watch whenever a VRF has nameservers.
    assert PATH_UNIT in paths.probe_arguments(spec)["units"]
    assert PATH_UNIT not in paths.probe_arguments(seed_spec())["units"]


def test_removing_the_nameservers_removes_their_files_and_stops_the_watch() -> None:
    spec = dns_spec("app.service")
    plain = replace(spec, vrfs=(replace(spec.vrfs[0], nameservers=(), search=()),))
    state = applied(_state(), spec)
    units = {n: replace(u, cgroup=f"/system.slice/{n}/vrf/mgmt0") for n, u in state.units.items()}
    done = summary(plan(plain, replace(state, units=units)))
    for path in (paths.resolv_conf("mgmt0"), paths.RESOLV_PATH_UNIT, paths.RESOLV_SERVICE_UNIT):
        assert f"remove {path}" in done
    assert f"systemctl stop {PATH_UNIT}" in done
    assert "systemctl restart app.service" in done


def test_a_sandbox_without_mount_namespaces_is_refused_for_a_vrf_with_nameservers() -> None:
    spec = dns_spec("app.service")
    props = {**app().properties, "RestrictNamespaces": "yes", "SystemCallFilter": "@system-service"}
    state = host(converged_state(), app(properties=props), files={"/etc/app.service": APP_UNIT})
    problems = unit_problems(spec, state)
    assert any("RestrictNamespaces= forbids mount namespaces" in p for p in problems)
    assert any("SystemCallFilter= blocks unshare, mount" in p for p in problems)
    # Allowed explicitly, or without nameservers: nothing to say.
    props = {**props, "RestrictNamespaces": "mnt net", "SystemCallFilter": "~"}
    state = host(converged_state(), app(properties=props), files={"/etc/app.service": APP_UNIT})
    assert unit_problems(spec, state) == []
    assert unit_problems(replace(spec, vrfs=(replace(spec.vrfs[0], nameservers=()),)), state) == []


def test_a_rollback_leaves_the_watch_as_it_was() -> None:
    spec = dns_spec("app.service")
    before = _state()
    script = rollback_script(spec, before, plan(spec, before))
    assert f"systemctl stop {PATH_UNIT}" in script.splitlines()
    # Watching before the nameservers were removed: watching again with the restored file.
    changed = replace(spec, vrfs=(replace(spec.vrfs[0], nameservers=(), search=()),))
    before = applied(before, spec)
    script = rollback_script(changed, before, plan(changed, before))
    assert f"systemctl restart {PATH_UNIT}" in script.splitlines()
