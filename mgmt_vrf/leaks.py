"""Paths between a VRF and the rest of the host that the VRF is meant to rule out.

Three ways a host leaks, each read off the routes and rules the combined fact holds:

- a main-table route through a port of one of our VRFs (or the VRF device): programs
  outside every VRF reach the management network through it;
- a route in our VRF's table through a device outside that VRF: programs inside the VRF
  reach that network (the fleet file's routes always go through the VRF's own ports);
- a rule before the l3mdev rule (other than the local table's): it sees every VRF's
  traffic first and can route it by the main table.

Defaults are left to the plan, which deletes the strays among them. The same sentences
refuse a host before a change (preflight, and so the drift report) and roll a change back
when they appear after it (confirm's verdict).
"""

from __future__ import annotations

from .commands import to_shell
from .host_commands import DeleteRoute
from .hoststate import LOCAL_TABLE, MAIN_TABLE, HostState, RouteEntry
from .model import HostSpec

_LOCAL = ("local", str(LOCAL_TABLE))


def leaks(spec: HostSpec, state: HostState) -> list[str]:
    """One sentence per leak, each with the command that closes it."""
    ours = {vrf.name for vrf in spec.present_vrfs}
    if not ours:
        return []
    return (
        _main_routes_into_vrfs(state, ours)
        + _vrf_routes_out(state, ours)
        + _rules_before_l3mdev(state)
    )


def _vrf_of(state: HostState, dev: str | None) -> str | None:
    """The VRF a device belongs to on the host: its own name for the VRF device."""
    link = state.links.get(dev or "")
    if link is None:
        return None
    if link.is_vrf:
        return link.name
    master = state.links.get(link.master or "")
    return master.name if master is not None and master.is_vrf else None


def _through_a_dev(route: RouteEntry) -> bool:
    return route.type == "unicast" and not route.is_default and route.dev is not None


def _delete(route: RouteEntry) -> str:
    return to_shell(DeleteRoute(route).argv)


def first_prefs(state: HostState, family: int) -> tuple[int | None, int | None]:
    """Where the l3mdev rule and the main table's catch-all rule (the kernel's pref 32766)
    come first; a narrower rule for the main table is not the catch-all."""
    rules = [r for r in state.rules if r.family == family]
    l3mdev = min((r.priority for r in rules if r.l3mdev), default=None)
    main = min((r.priority for r in rules if r.table == "main" and not r.selectors), default=None)
    return l3mdev, main


def _main_routes_into_vrfs(state: HostState, ours: set[str]) -> list[str]:
    found = []
    for route in state.routes_in(MAIN_TABLE):
        vrf = _vrf_of(state, route.dev) if _through_a_dev(route) else None
        if vrf not in ours:
            continue
        where = "VRF " + vrf if route.dev == vrf else f"{route.dev}, a port of VRF {vrf}"
        found.append(
            f"the main table routes {route.dst} through {where}, so programs outside every "
            f"VRF reach the management network; delete it (`{_delete(route)}`) or put it in "
            f"table {state.links[vrf].vrf_table}"
        )
    return found


def _vrf_routes_out(state: HostState, ours: set[str]) -> list[str]:
    found = []
    for name, link in state.vrf_links.items():
        if name not in ours or link.vrf_table is None:
            continue
        for route in state.routes_in(link.vrf_table):
            if not _through_a_dev(route) or route.dev == "lo" or _vrf_of(state, route.dev):
                continue
            found.append(
                f"vrfs.{name}: table {link.vrf_table} routes {route.dst} through {route.dev}, "
                f"outside VRF {name}, so programs inside the VRF reach that network; delete "
                f"it (`{_delete(route)}`)"
            )
    return found


def _rules_before_l3mdev(state: HostState) -> list[str]:
    found = []
    for family in (4, 6):
        l3mdev, main = first_prefs(state, family)
        if l3mdev is None or (main is not None and main < l3mdev):
            continue  # no VRF yet, or preflight's own refusal: the l3mdev rule moved
        for rule in state.rules:
            if rule.family != family or rule.priority >= l3mdev or rule.l3mdev:
                continue
            if rule.table in _LOCAL:
                continue
            matches = " ".join(rule.selectors) or "from all"
            found.append(
                f"the IPv{family} rule at pref {rule.priority} ({matches} lookup "
                f"{rule.table or '?'}) "
                f"comes before the l3mdev rule at pref {l3mdev}: it sees every VRF's traffic "
                "first and can route it by another table; move it after the l3mdev rule or "
                f"delete it (`ip -{family} rule del pref {rule.priority}`)"
            )
    return found
