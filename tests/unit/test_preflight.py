"""Host state that does not fit the spec is refused, naming the host and the fleet key."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from mgmt_vrf import paths
from mgmt_vrf.hoststate import FileState, HostState, Kernel, Link, NetworkManager, Profile
from mgmt_vrf.model import Vrf
from mgmt_vrf.plan import RemoveFile, WriteFile, plan
from mgmt_vrf.preflight import host_problems
from mgmt_vrf.probe import parse_probe_output

from .builders import clean_state, converged_state, seed_spec
from .test_probe import fixture_lines, probe

NETNS = Path(__file__).resolve().parents[1] / "fixtures" / "netns"


def links_plus(state: HostState, *extra: Link) -> HostState:
    return replace(state, links={**state.links, **{link.name: link for link in extra}})


def test_clean_and_converged_hosts_pass() -> None:
    assert host_problems(seed_spec(), clean_state()) == []
    assert host_problems(seed_spec(), converged_state()) == []


def test_no_links_at_all_points_at_iproute2() -> None:
    (problem,) = host_problems(seed_spec(), HostState())
    assert problem.startswith("host alma1: ")
    assert "`ip -j link show`" in problem


def test_missing_port_names_the_vrf_key_and_lists_the_real_nics() -> None:
    state = replace(
        clean_state(), links={k: v for k, v in clean_state().links.items() if k != "eth2"}
    )
    (problem,) = host_problems(seed_spec(), state)
    assert "vrfs.mgmt0.ports: eth2 does not exist on the host (it has eth0, eth1, lo)" in problem


def test_device_with_the_vrf_name_that_is_not_a_vrf() -> None:
    state = links_plus(clean_state(), Link("mgmt0", 9, kind="bridge"))
    (problem,) = host_problems(seed_spec(), state)
    assert "vrfs.mgmt0: a bridge device named mgmt0 already exists and is not a VRF" in problem


def test_port_held_by_a_bond_is_not_stolen() -> None:
    state = links_plus(clean_state(), Link("bond0", 9, kind="bond"))
    state = links_plus(state, replace(state.links["eth2"], master="bond0"))
    (problem,) = host_problems(seed_spec(), state)
    assert "vrfs.mgmt0.ports: eth2 is a port of bond0 (bond)" in problem


def test_table_owned_by_another_vrf_on_the_host() -> None:
    state = links_plus(clean_state(), Link("blue", 9, kind="vrf", vrf_table=10, up=True))
    (problem,) = host_problems(seed_spec(), state)
    assert "vrfs.mgmt0.table: table 10 already belongs to VRF blue on the host" in problem


def test_table_of_an_absent_vrf_may_be_reused() -> None:
    spec = seed_spec()
    spec = replace(spec, vrfs=spec.vrfs + (Vrf("old0", 10, ("eth1",), state="absent"),))
    spec = replace(spec, vrfs=(replace(spec.vrfs[0], table=11), spec.vrfs[1]))
    state = links_plus(clean_state(), Link("old0", 9, kind="vrf", vrf_table=10, up=True))
    assert host_problems(spec, state) == []


def test_backends_that_are_not_installed() -> None:
    no_nm = clean_state(network_manager=NetworkManager(installed=False))
    (problem,) = host_problems(seed_spec(backend="networkmanager"), no_nm)
    assert "backend: 'networkmanager' is set but NetworkManager is not installed" in problem
    (problem,) = host_problems(seed_spec(backend="network-scripts"), clean_state())
    assert "backend: 'network-scripts' is set but the legacy network-scripts" in problem


def test_boot_unit_still_running_is_refused() -> None:
    (problem,) = host_problems(seed_spec(), replace(converged_state(), unit_busy=True))
    assert "mgmt-vrf.service (our boot-time repair) is still running after 120 s" in problem
    assert "journalctl -u mgmt-vrf.service" in problem


def test_networkmanager_reading_only_keyfiles_gets_a_keyfile_and_its_ifcfg_is_not_trusted() -> None:
    # AlmaLinux 10: no ifcfg-rh plugin. An ifcfg file there is never read, so it is neither
    # the port's profile nor a second one; the port's profile is a keyfile.
    nm = NetworkManager(installed=True, version="1.54.0", running=True, plugins=("keyfile",))
    ifcfg = paths.ifcfg("eth2")
    state = clean_state(
        network_manager=nm,
        profiles=(Profile(ifcfg, "eth2", "eth2"),),
        files={ifcfg: FileState(ifcfg, b"DEVICE=eth2\nMTU=$(reboot)\n")},
    )
    assert host_problems(seed_spec(), state) == []
    written = {c.path for c in plan(seed_spec(), state).changes if isinstance(c, WriteFile)}
    assert f"{paths.SYSTEM_CONNECTIONS}/eth2.nmconnection" in written
    assert ifcfg not in written
    removed = {c.path for c in plan(seed_spec(), state).changes if isinstance(c, RemoveFile)}
    assert ifcfg not in removed


def test_a_keyfile_that_does_not_parse_refuses_the_host_with_its_path_and_line() -> None:
    path = f"{paths.SYSTEM_CONNECTIONS}/Wired connection 1.nmconnection"
    state = clean_state(
        profiles=(Profile(path, "eth2", "Wired connection 1"),),
        files={path: FileState(path, b"[connection]\ninterface-name=eth2\nmtu 1400\n")},
    )
    (problem,) = host_problems(seed_spec(), state)
    assert problem.startswith(
        f"host alma1: vrfs.mgmt0.ports: eth2's profile cannot be edited without losing what it "
        f"says: {path}, line 3: 'mtu 1400' is not key=value."
    ), problem


def test_a_table_that_routes_and_rules_use_without_a_vrf_is_refused() -> None:
    # Real output: a namespace where table 10 is a plain policy-routing table, routes and
    # `iif eth2` rules, and no VRF (tests/fixtures/README.md, netns-full.txt).
    state = parse_probe_output(fixture_lines("netns-full.txt"))
    assert not state.vrf_links and state.routes_in(10)
    (problem,) = [p for p in host_problems(seed_spec(), state) if ".table:" in p]
    assert problem.startswith(
        "host alma1: vrfs.mgmt0.table: table 10 is already used on the host and no VRF holds it"
        " (route default via 203.0.113.1 dev eth2; route 198.51.100.0/25 via 203.0.113.1 dev "
        "eth2; "
    )
    assert "; 4 more); a VRF on it would take those routes over. Pick a table" in problem
    assert "`ip route flush table 10`, `ip rule del pref N`" in problem


def test_the_rules_count_when_the_table_has_no_route_and_our_own_guard_does_not() -> None:
    state = parse_probe_output(fixture_lines("netns-full.txt"))
    guard = [r for r in converged_state().routes if r.type == "unreachable" and r.table == 10]
    assert guard
    only_rules = replace(state, routes=(*[r for r in state.routes if r.table != 10], *guard))
    (problem,) = [p for p in host_problems(seed_spec(), only_rules) if ".table:" in p]
    assert "no VRF holds it (IPv4 rule pref " in problem and "route " not in problem.split("(")[1]
    # The guard a deleted VRF's profile leaves behind is ours: no refusal for it alone.
    no_rules = replace(only_rules, rules=tuple(r for r in state.rules if r.table != "10"))
    assert not [p for p in host_problems(seed_spec(), no_rules) if ".table:" in p]


def test_a_table_a_vrf_already_holds_is_not_in_use_by_others() -> None:
    state = converged_state()
    assert state.routes_in(10) and host_problems(seed_spec(), state) == []


def test_an_l3mdev_rule_after_the_main_tables_is_refused() -> None:
    # Real output: `ip -N -j rule show` with the l3mdev rule moved to pref 33000.
    rules = parse_probe_output(
        probe(
            *[
                (f"rule{f}", json.loads((NETNS / f"rule{f}-l3mdev-after-main.json").read_text()))
                for f in (4, 6)
            ]
        )
    ).rules
    state = replace(converged_state(), rules=rules)
    problems = host_problems(seed_spec(), state)
    assert problems == [
        f"host alma1: the IPv{f} l3mdev rule is at pref 33000, after the main table's rule at "
        "pref 32766: traffic of every VRF would be routed by the main table first. Put it back "
        f"where the kernel puts it: `ip -{f} rule add pref 1000 l3mdev protocol kernel && ip "
        f"-{f} rule del pref 33000 l3mdev`"
        for f in (4, 6)
    ]
    # A host without present VRFs has no VRF traffic to misroute.
    absent = replace(seed_spec(), vrfs=tuple(replace(v, state="absent") for v in seed_spec().vrfs))
    assert not [p for p in host_problems(absent, state) if "l3mdev" in p]


KERNEL = Path(__file__).resolve().parents[1] / "fixtures" / "kernel"


def kernel_from(case: str, *edits: tuple[str, str]) -> Kernel:
    """The probe's kernel lines as captured by tests/fixtures/kernel/capture.sh."""
    text = (KERNEL / f"modprobe-{case}.txt").read_text()
    for old, new in edits:
        assert old in text
        text = text.replace(old, new)
    return parse_probe_output(probe(("host", text))).kernel


def test_the_probe_reads_what_modprobe_would_do() -> None:
    kernel = kernel_from("install-false")
    assert kernel.vrf_module is False
    assert kernel.modprobe_alias == (0, "install /bin/false")
    assert kernel_from("blacklist").modprobe_alias == (0, "")
    status, said = kernel_from("no-vrf-kernel").modprobe_alias or (0, "")
    assert status == 1 and said.startswith("modprobe: FATAL: Module rtnl-link-vrf not found")


@pytest.mark.parametrize(
    ("case", "words"),
    [
        ("none", None),
        ("no-vrf-kernel", "this kernel has no vrf module (`modprobe -n rtnl-link-vrf` says: "),
        ("blacklist", "the vrf module is blacklisted (a `blacklist vrf` line"),
        ("install-false", "the modprobe configuration runs `/bin/false` in place of loading"),
    ],
)
def test_a_vrf_module_that_cannot_load_refuses_the_host(case: str, words: str | None) -> None:
    problems = host_problems(seed_spec(), clean_state(kernel=kernel_from(case)))
    if words is None:
        assert problems == []
        return
    (problem,) = problems
    assert problem.startswith("host alma1: vrfs.mgmt0: " + words), problem
    assert problem.endswith("run the deploy again") or "boot a kernel that has it" in problem


def test_the_module_is_asked_about_only_for_a_vrf_still_to_create() -> None:
    # The VRF exists, so the module is loaded whatever modprobe would say now.
    state = replace(converged_state(), kernel=kernel_from("no-vrf-kernel"))
    assert host_problems(seed_spec(), state) == []


def test_modules_disabled_and_no_modprobe() -> None:
    # modules_disabled=1 is typed into the capture: setting it cannot be undone until reboot.
    locked = kernel_from("none", ("vrf_module=0\n", "vrf_module=0\nmodules_disabled=1\n"))
    (problem,) = host_problems(seed_spec(), clean_state(kernel=locked))
    assert "kernel.modules_disabled = 1 forbids loading it until the host reboots" in problem
    # No modprobe at all (exit 127): nothing to go on, the change itself will tell.
    nothing = kernel_from("blacklist", ("modprobe_alias=0 ", "modprobe_alias=127 sh: modprobe"))
    assert host_problems(seed_spec(), clean_state(kernel=nothing)) == []


def test_cgroup2_socket_matching_turned_off_refuses_a_vrf_with_services() -> None:
    # Real output: lab-el8-socket-matching-off.txt (cgroup v1, a net_cls cgroup with a
    # classid, the kernel's log line; tests/fixtures/README.md says how it was made).
    state = parse_probe_output(fixture_lines("lab-el8-socket-matching-off.txt"))
    assert state.cgroup == "v1"
    assert state.kernel.socket_matching_off == (
        "cgroup: disabling cgroup2 socket matching due to net_prio or net_cls activation"
    )
    assert state.kernel.net_cgroups == {"net_cls": 2, "net_prio": 1}
    spec = seed_spec()
    served = replace(spec.vrfs[0], services=("sshd.service", "lab-web.service"))
    spec = replace(spec, vrfs=(served, *spec.vrfs[1:]))
    problems = [p for p in host_problems(spec, state) if "socket matching" in p]
    assert problems == [
        "host alma1: vrfs.mgmt0.services: the kernel has turned cgroup2 socket matching off "
        "(its log says: cgroup: disabling cgroup2 socket matching due to net_prio or net_cls "
        "activation), so ip vrf exec would start sshd.service, lab-web.service in the default "
        "VRF without any error. A net_cls or net_prio cgroup v1 controller was used (cgroups "
        "now: net_cls 2, net_prio 1) and it stays off until reboot: stop what writes "
        "net_cls.classid or net_prio.ifpriomap or joins tasks to net_prio cgroups (container "
        "runtimes on cgroup v1 do), or boot with cgroup v2 (systemd.unified_cgroup_hierarchy=1)"
        "; reboot, then run the deploy again"
    ]
    # Without services nothing runs through ip vrf exec at the deploy's behest; on cgroup v2
    # the kernel's switch does not apply (the probe does not even look there).
    assert not [p for p in host_problems(seed_spec(), state) if "socket matching" in p]
    v2 = replace(state, cgroup="v2")
    assert not [p for p in host_problems(spec, v2) if "socket matching" in p]
