"""Facts about VRFs, routing tables and the files the deploy manages.

All of them are thin adapters over mgmt_vrf.probe, which builds the remote command and parses
its output; every command exits 0, so a host without a VRF (or without NetworkManager) is a
normal answer rather than a failed host.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from pyinfra.api import FactBase
from pyinfra.api.exceptions import FactProcessError
from typing_extensions import override

from mgmt_vrf.commands import sh_quote
from mgmt_vrf.hoststate import HostState
from mgmt_vrf.probe import (
    ProbeError,
    links_command,
    parse_probe_output,
    probe_command,
    route_table_command,
)


def _as_list(value: str | Sequence[str] | None) -> list[str]:
    # From the CLI a single value arrives as a plain string (`paths=/etc/x`).
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


def _refusal(fact: str, error: ValueError) -> str:
    # An exception raised here would reach the user as a greenlet traceback: pyinfra gives
    # facts no way to refuse their arguments. A command that only prints why and fails shows
    # the message as the host's fact error instead; it changes nothing there.
    return f"printf '%s\\n' {sh_quote(f'{fact}: {error}')} >&2; exit 2"


def _parse(output: list[str]) -> HostState:
    try:
        return parse_probe_output(output)
    except ProbeError as e:
        # pyinfra turns FactProcessError into a failed host with this message; any other
        # exception would abort the whole run.
        raise FactProcessError(str(e)) from e


class VrfHostState(FactBase[HostState]):
    """
    Returns everything the management VRF plan needs, read in one remote command: links
    (VRF devices, their tables, ports and masters), global addresses, every routing table
    (IPv4 and IPv6, without the local table), ip rules, the l3mdev sysctls and each port's
    ``keep_addr_on_down``, the content of the given files, every ifcfg/keyfile profile,
    NetworkManager, systemd, cgroup and OS details. The result is a
    ``mgmt_vrf.hoststate.HostState``; ``--json`` prints it through ``HostState.to_json``.

    .. code:: python

        HostState(
            links={"mgmt0": Link(name="mgmt0", ifindex=5, kind="vrf", vrf_table=10, up=True),
                   "eth2": Link(name="eth2", ifindex=4, master="mgmt0", up=True,
                                addresses=(IPv4Interface("203.0.113.217/24"),))},
            routes=(RouteEntry(family=4, table=10, dst="default", gateway="203.0.113.1",
                               dev="eth2"),
                    RouteEntry(family=4, table=10, dst="default", type="unreachable",
                               metric=4278198272), ...),
            sysctls={"net.ipv4.tcp_l3mdev_accept": "1", ...},
            files={"/etc/sysctl.d/90-mgmt-vrf.conf": FileState(..., content=None)},
            units={"sshd.service": UnitState(name="sshd.service", active_state="active",
                                             main_pid=812, cgroup="/vrf/mgmt0", ...)},
            network_manager=NetworkManager(installed=True, version="1.40.16-1.el8",
                                           running=True),
            os_id="almalinux", os_version="8.7", iproute2_version="5.18.0", ...
        )

    + paths: files whose content (or absence) to read, e.g. ``mgmt_vrf.paths.managed_paths(spec)``
    + ports: interfaces whose ``net.ipv6.conf.<port>.keep_addr_on_down`` to read
    + units: services to describe (``systemctl show``, unit files, the VRF of the main
      process), besides every unit our drop-in already wraps
    """

    @override
    def command(
        self, paths: Sequence[str] = (), ports: Sequence[str] = (), units: Sequence[str] = ()
    ) -> str:
        try:
            return probe_command(_as_list(paths), _as_list(ports), _as_list(units))
        except ValueError as e:
            return _refusal(self.name, e)

    @override
    def process(self, output: list[str]) -> HostState:
        return _parse(output)


class VrfDevices(FactBase[dict[str, dict[str, Any]]]):
    """
    Returns the VRF devices of the host with their table, admin state and enslaved ports.

    .. code:: python

        {
            "mgmt0": {"table": 10, "up": True, "ports": ["eth2"]},
        }
    """

    @override
    @staticmethod
    def default() -> dict[str, dict[str, Any]]:
        return {}

    @override
    def command(self) -> str:
        return links_command()

    @override
    def process(self, output: list[str]) -> dict[str, dict[str, Any]]:
        state = _parse(output)
        return {
            name: {
                "table": link.vrf_table,
                "up": link.up,
                "ports": sorted(p.name for p in state.links.values() if p.master == name),
            }
            for name, link in state.vrf_links.items()
        }


class RouteTable(FactBase[list[dict[str, Any]]]):
    """
    Returns the routes of one routing table (both families unless ``family`` is given),
    without the kernel's local/broadcast/multicast entries. A table that does not exist is
    an empty list.

    .. code:: python

        [
            {"family": 4, "table": 10, "dst": "default", "type": "unicast",
             "gateway": "203.0.113.1", "dev": "eth2", "metric": None, "protocol": None},
            {"family": 4, "table": 10, "dst": "default", "type": "unreachable",
             "gateway": None, "dev": None, "metric": 4278198272, "protocol": None},
            {"family": 6, "table": 10, "dst": "default", "type": "unicast",
             "gateway": "2001:db8:aa40::1", "dev": "eth2", "metric": 1024, "protocol": None},
        ]

    + table: table number, or ``main``/``local``/``default``
    + family: ``4``, ``6`` or ``None`` for both
    """

    @override
    @staticmethod
    def default() -> list[dict[str, Any]]:
        return []

    @override
    def command(self, table: int | str = 10, family: int | None = None) -> str:
        try:
            return route_table_command(table, family)
        except ValueError as e:
            return _refusal(self.name, e)

    @override
    def process(self, output: list[str]) -> list[dict[str, Any]]:
        return [asdict(route) for route in _parse(output).routes]
