"""A VRF whose IPv6 gateway is link-local (fe80::1, as at many hosting providers), on the lab.

The router's side of the management link gets fe80::1 for this module. The deploy must put
`default via fe80::1 dev eth2` in table 10 (a link-local next hop means nothing without its
device), traffic inside the VRF must reach an off-link address through it, a second run
must change nothing, and after a reboot the same route must be back (built by NetworkManager
from the profile, or, on a host without it, by our boot script).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from lab import topology
from lab.pytest_fixture import Lab

from .deploy import MGMT_GW6, boot_unit_log, converge, results

LINK_LOCAL_GW = "fe80::1"
FAR = topology.ROUTER_FAR6  # on the router's loopback: reached only through a gateway


def _route6(lab: Lab, host: str, what: str) -> list[dict[str, object]]:
    routes: list[dict[str, object]] = lab.json(host, f"ip -j -6 route show table 10 {what}")
    return [r for r in routes if r.get("type", "unicast") == "unicast"]


def _assert_through_link_local(lab: Lab, host: str) -> None:
    """Inside the VRF, off-link traffic leaves through fe80::1 on eth2, and comes back."""
    route = lab.check(host, f"ip -6 route get {FAR} vrf mgmt0")
    assert f"via {LINK_LOCAL_GW} dev eth2 table 10" in route, route
    before = lab.counters(host)["mgmt"]["rx_packets"]
    assert lab.ssh(host, f"ip vrf exec mgmt0 ping -6 -c3 -W3 {FAR}").returncode == 0
    assert lab.counters(host)["mgmt"]["rx_packets"] - before >= 3


def _gateway_on_router(lab: Lab, host: str, verb: str) -> None:
    r = lab.gw(host, f"ip -6 addr {verb} {LINK_LOCAL_GW}/64 dev {topology.MGMT.gw_if} nodad")
    assert r.returncode == 0 or verb == "del", r.stderr


@pytest.fixture(scope="module")
def host(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    host = lab.hosts[0]
    lab.reset(host)
    _gateway_on_router(lab, host, "replace")
    text = lab.fleet_file.read_text()
    vrf = f"[hosts.{host}.vrfs.mgmt0]\n"
    assert vrf in text and f'gateway6 = "{MGMT_GW6}"' in text.split(vrf, 1)[1]
    head, tail = text.split(vrf, 1)
    tail = tail.replace(f'gateway6 = "{MGMT_GW6}"', f'gateway6 = "{LINK_LOCAL_GW}"', 1)
    route = f'routes = [{{ to = "{FAR}/128", via = "{LINK_LOCAL_GW}" }}]\n'
    fleet = tmp_path_factory.mktemp("fleet") / "fleet.toml"
    fleet.write_text(head + vrf + route + tail)
    yield host, fleet
    lab.reset(host)
    _gateway_on_router(lab, host, "del")


def test_link_local_gateway_converges_and_carries_traffic(lab: Lab, host: tuple[str, Path]) -> None:
    name, fleet = host
    run = converge(fleet, [name])
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]

    (default,) = _route6(lab, name, "default")
    assert (default["gateway"], default["dev"]) == (LINK_LOCAL_GW, "eth2")
    (far,) = _route6(lab, name, FAR)
    assert (far["gateway"], far["dev"]) == (LINK_LOCAL_GW, "eth2")
    _assert_through_link_local(lab, name)

    again = converge(fleet, [name])
    assert again.returncode == 0, (again.stdout + again.stderr)[-4000:]
    assert results(again) == (0, 0, 1), again.stdout[-3000:]  # no change


def test_boot_script_builds_the_link_local_route_after_a_reboot(
    lab: Lab, host: tuple[str, Path]
) -> None:
    name, _fleet = host
    lab.reboot(name)
    # The reboot recreates the links, the router's side too: its gateway address comes back.
    _gateway_on_router(lab, name, "replace")
    log = boot_unit_log(lab, name)
    if lab.networkmanager(name):
        # NetworkManager built it from the port's profile; our boot unit found it in place.
        assert "mgmt-vrf: nothing to repair" in log, log
    else:
        # Without NetworkManager nothing reads the route files at boot: our boot unit built it.
        assert f"table 10 lacks default via {LINK_LOCAL_GW}" in log, log
    (default,) = _route6(lab, name, "default")
    assert (default["gateway"], default["dev"]) == (LINK_LOCAL_GW, "eth2")
    _assert_through_link_local(lab, name)
    # Run again by hand, the boot script finds every piece in place, this route included.
    assert "mgmt-vrf: nothing to repair" in lab.check(name, "/usr/local/sbin/mgmt-vrf-converge")
