"""A pyinfra host's management-VRF spec, read from its host data.

    spec = host_spec(host)

Two ways a host carries it: the project's inventory.py puts a validated HostSpec in
``mgmt_vrf_spec`` (from the fleet file); a pyinfra project of its own gives the host its
fleet-file table as ``mgmt_vrf`` (in host or group data), which is checked here by the fleet
file's own rules. The whole inventory is checked at once, so every mistake of every host is
reported together, before any host is changed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pyinfra.api.host import Host

from mgmt_vrf.fleet_file import FleetError, rollout_from_data, spec_from_data
from mgmt_vrf.model import HostSpec
from mgmt_vrf.rollout import ALL_AT_ONCE, Rollout

from .inventory_data import ROLLOUT_DATA_KEY, SPEC_DATA_KEY

TABLE_DATA_KEY = "mgmt_vrf"
SOURCE = "host data"


class HostDataError(Exception):
    """Hosts whose data gives no usable spec; `messages` has one entry per problem."""

    def __init__(self, messages: Iterable[str]) -> None:
        self.messages = tuple(messages)
        super().__init__("\n".join(self.messages))


def host_spec(host: Host) -> HostSpec:
    """The host's validated spec; HostDataError names the host and the key if there is none."""
    given = host.data.get(SPEC_DATA_KEY)
    if given is not None:
        return _checked(given)
    table = host.data.get(TABLE_DATA_KEY)
    if table is None:
        raise HostDataError(
            [
                f"{SOURCE}: host {host.name}: {TABLE_DATA_KEY}: missing; give the host its table "
                "(interfaces, vrfs, ...: the keys of a [hosts.NAME] table of the fleet file, see "
                "the README) in your inventory's host or group data, or run with this "
                "project's inventory.py, which reads a fleet file"
            ]
        )
    if not isinstance(table, Mapping):
        raise HostDataError(
            [
                f"{SOURCE}: host {host.name}: {TABLE_DATA_KEY}: expected a dict of fleet-file "
                f"keys (interfaces, vrfs, ...), got {type(table).__name__} {table!r:.60}"
            ]
        )
    return _checked(_fleet_entry(host, table))


def inventory_specs(hosts: Iterable[Host]) -> dict[str, HostSpec]:
    """Every host's spec, or HostDataError with every host's problems at once."""
    specs: dict[str, HostSpec] = {}
    problems: list[str] = []
    for host in hosts:
        try:
            specs[host.name] = host_spec(host)
        except HostDataError as exc:
            problems += exc.messages
    if problems:
        raise HostDataError(problems)
    return specs


def host_rollout(host: Host) -> Rollout:
    """The run's waves as the host's data gives them (``mgmt_vrf_rollout``: a Rollout, or a
    dict of the fleet file's [rollout] keys); none: every host at once."""
    given = host.data.get(ROLLOUT_DATA_KEY)
    if given is None:
        return ALL_AT_ONCE
    if not isinstance(given, (Rollout, Mapping)):
        raise HostDataError(
            [
                f"{SOURCE}: host {host.name}: {ROLLOUT_DATA_KEY}: expected a dict of [rollout] "
                f"keys (waves, failures_allowed), got {type(given).__name__} {given!r:.60}"
            ]
        )
    try:
        return rollout_from_data(given, source=f"{SOURCE}: host {host.name}: {ROLLOUT_DATA_KEY}")
    except FleetError as exc:
        raise HostDataError(exc.messages) from None


def inventory_rollout(hosts: Iterable[Host]) -> Rollout:
    """The one rollout of the run: every host's data must give the same (or none)."""
    first: tuple[str, Rollout] | None = None
    problems: list[str] = []
    for host in hosts:
        try:
            rollout = host_rollout(host)
        except HostDataError as exc:
            problems += exc.messages
            continue
        if first is None:
            first = (host.name, rollout)
        elif rollout != first[1]:
            problems.append(
                f"{SOURCE}: host {host.name}: {ROLLOUT_DATA_KEY}: {rollout.describe()}, but host "
                f"{first[0]} has {first[1].describe()}; a run has one rollout: give every host "
                "the same (group data of all hosts, or the fleet file's [rollout])"
            )
    if problems:
        raise HostDataError(problems)
    return first[1] if first else ALL_AT_ONCE


def _fleet_entry(host: Host, table: Mapping[str, Any]) -> dict[str, Any]:
    # The connection is pyinfra's (ssh_hostname, ssh_port of the host's data); the spec
    # still needs the address, for the check that the change keeps it reachable.
    entry = {key: value for key, value in table.items() if key != "name"}
    entry.setdefault("ssh_address", host.data.get("ssh_hostname") or host.name)
    port = host.data.get("ssh_port")
    if port is not None:
        entry.setdefault("ssh_port", port)
    entry["name"] = host.name
    return entry


def _checked(data: HostSpec | Mapping[str, Any]) -> HostSpec:
    try:
        return spec_from_data(data, source=SOURCE)
    except FleetError as exc:
        raise HostDataError(exc.messages) from None
