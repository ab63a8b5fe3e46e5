"""Paths between a VRF and the rest of the host: refused before a change, rolled back after."""

from __future__ import annotations

from dataclasses import replace

import pytest

from mgmt_vrf.apply import RunStatus
from mgmt_vrf.confirm import verdict
from mgmt_vrf.hoststate import RouteEntry
from mgmt_vrf.leaks import leaks
from mgmt_vrf.preflight import host_problems
from mgmt_vrf.probe import parse_probe_output

from .builders import converged_state, seed_spec
from .test_probe import fixture_lines

LEAKS = [
    "the main table routes 192.0.2.200/32 through eth2, a port of VRF mgmt0, so programs "
    "outside every VRF reach the management network; delete it (`ip -4 route del "
    "192.0.2.200/32 dev eth2 table main`) or put it in table 10",
    "vrfs.mgmt0: table 10 routes 198.51.100.128/25 through eth0, outside VRF mgmt0, so "
    "programs inside the VRF reach that network; delete it (`ip -4 route del "
    "198.51.100.128/25 dev eth0 table 10`)",
    *(
        f"the IPv{f} rule at pref 500 (to {net} lookup main) comes before the l3mdev rule at "
        "pref 1000: it sees every VRF's traffic first and can route it by another table; "
        f"move it after the l3mdev rule or delete it (`ip -{f} rule del pref 500`)"
        for f, net in ((4, "198.51.100.0/24"), (6, "2001:db8:100::/64"))
    ),
]


def test_each_leak_on_a_real_host_is_refused_with_the_command_that_closes_it() -> None:
    # Real output: a converged lab host with one leak of each kind, which the kernel's own
    # `ip route get` confirmed (tests/fixtures/README.md, lab-leaks.txt).
    state = parse_probe_output(fixture_lines("lab-leaks.txt"))
    assert host_problems(seed_spec(), state) == [f"host alma1: {leak}" for leak in LEAKS]


@pytest.mark.parametrize(
    "name",
    [
        "lab-converged.txt",
        "lab-el8-converged.txt",
        "lab-services-v1.txt",
        "lab-services-v2.txt",
        "lab-vrf.txt",
        "lab-broken.txt",
    ],
)
def test_real_hosts_without_a_leak_have_none(name: str) -> None:
    assert leaks(seed_spec(), parse_probe_output(fixture_lines(name))) == []


def test_a_host_without_present_vrfs_has_nothing_to_leak() -> None:
    spec = seed_spec()
    spec = replace(spec, vrfs=tuple(replace(v, state="absent") for v in spec.vrfs))
    assert leaks(spec, parse_probe_output(fixture_lines("lab-leaks.txt"))) == []


def test_a_leak_that_comes_with_the_change_rolls_it_back() -> None:
    done = RunStatus(
        apply="done", armed=True, confirmed=False, rolling_back=False, rolled_back=False
    )
    after = converged_state()
    assert verdict(done, seed_spec(), after) is None
    leak = RouteEntry(4, 10, "198.51.100.128/25", dev="eth0")
    reason = verdict(done, seed_spec(), replace(after, routes=(*after.routes, leak)))
    assert reason == (
        "after the change, vrfs.mgmt0: table 10 routes 198.51.100.128/25 through eth0, outside "
        "VRF mgmt0, so programs inside the VRF reach that network; delete it (`ip -4 route del "
        "198.51.100.128/25 dev eth0 table 10`)"
    )
