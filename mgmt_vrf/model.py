"""The desired state of one host, as validated from the fleet file."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
)
from typing import Literal

Backend = Literal["auto", "networkmanager", "network-scripts"]
State = Literal["present", "absent"]

# The lowest priority a route can have: the `unreachable default` we add to each VRF
# table sits here, so any real default route wins and lookups never fall through to main.
UNREACHABLE_METRIC = 4278198272

# Seconds a host waits for the controller to confirm a change over a new ssh connection
# before it restores its previous state by itself.
DEFAULT_ROLLBACK_TIMEOUT = 120
MIN_ROLLBACK_TIMEOUT = 15
MAX_ROLLBACK_TIMEOUT = 3600
# How long the apply itself may run before the host rolls back anyway: the confirmation
# window (rollback_timeout) starts only when the apply ends, and this bounds a hung one.
DEFAULT_APPLY_TIMEOUT = 300
MIN_APPLY_TIMEOUT = 30
MAX_APPLY_TIMEOUT = 3600
# How many hosts of a run may be between the start of their change and its confirmation at
# once. Each armed host's window is a race against its deadline: with every host of a large
# fleet applying together, the applies and the confirming connections slow each other down
# (the controller's CPU and the hosts'), and good changes roll back for lateness. Hosts past
# the bound wait, unarmed and unchanged, for a slot.
DEFAULT_CHANGES_AT_ONCE = 10
MAX_CHANGES_AT_ONCE = 1000


@dataclass(frozen=True)
class Interface:
    """A NIC as the fleet file describes it."""

    name: str
    ipv4: IPv4Interface | None = None
    ipv6: IPv6Interface | None = None
    gateway4: IPv4Address | None = None
    gateway6: IPv6Address | None = None
    # True for the interface whose gateways are the main table's default routes.
    main_default: bool = False


def nexthop_port(via: IPv4Address | IPv6Address, ports: Sequence[Interface]) -> Interface | None:
    """The port a next hop is reached through: the one whose subnet holds it, or, for an
    IPv6 link-local address (on every link, so in no subnet), the only port with an IPv6
    address. None when no port, or more than one, could be meant."""
    if isinstance(via, IPv6Address) and via.is_link_local:
        with_v6 = [port for port in ports if port.ipv6 is not None]
        return with_v6[0] if len(with_v6) == 1 else None
    for port in ports:
        own = port.ipv4 if via.version == 4 else port.ipv6
        if own is not None and via in own.network:
            return port
    return None


def needs_dev(via: IPv4Address | IPv6Address) -> bool:
    """A link-local next hop means nothing without its device: routes through it name it."""
    return isinstance(via, IPv6Address) and via.is_link_local


@dataclass(frozen=True)
class Route:
    """A static route inside a VRF table."""

    to: IPv4Network | IPv6Network
    via: IPv4Address | IPv6Address

    @property
    def family(self) -> int:
        return self.to.version


@dataclass(frozen=True)
class Vrf:
    """A VRF device, its routing table and the ports enslaved to it."""

    name: str
    table: int
    ports: tuple[str, ...]
    gateway4: IPv4Address | None = None
    gateway6: IPv6Address | None = None
    routes: tuple[Route, ...] = ()
    state: State = "present"
    # systemd services (full unit names, "sshd.service") started inside this VRF.
    services: tuple[str, ...] = ()
    # The resolver of the programs inside this VRF (its services, mgmt-vrf-exec); empty: the
    # host's own /etc/resolv.conf.
    nameservers: tuple[IPv4Address | IPv6Address, ...] = ()
    search: tuple[str, ...] = ()

    @property
    def present(self) -> bool:
        return self.state == "present"


@dataclass(frozen=True)
class Ssh:
    address: str
    user: str | None = None
    port: int | None = None
    key: str | None = None
    known_hosts_file: str | None = None
    # pyinfra's own default (accept-new) keeps host-key checking on; "no" is never our default.
    strict_host_key_checking: str | None = None
    # Seconds for the TCP connect and the ssh handshake (pyinfra's default when None).
    connect_timeout: int | None = None


@dataclass(frozen=True)
class HostSpec:
    """Everything the deploy needs to converge one host."""

    name: str
    ssh: Ssh
    interfaces: tuple[Interface, ...] = ()
    vrfs: tuple[Vrf, ...] = ()
    groups: tuple[str, ...] = ()
    backend: Backend = "auto"
    # tcp/udp_l3mdev_accept=1 lets a global sshd answer through a VRF port too: no lockout.
    l3mdev_accept: bool = True
    rollback_timeout: int = DEFAULT_ROLLBACK_TIMEOUT
    apply_timeout: int = DEFAULT_APPLY_TIMEOUT
    # This host starts its change only while fewer than this many hosts are changing.
    changes_at_once: int = DEFAULT_CHANGES_AT_ONCE
    extra: dict[str, object] = field(default_factory=dict, compare=False)

    def interface(self, name: str) -> Interface | None:
        for iface in self.interfaces:
            if iface.name == name:
                return iface
        return None

    @property
    def present_vrfs(self) -> tuple[Vrf, ...]:
        return tuple(v for v in self.vrfs if v.present)

    @property
    def resolved_vrfs(self) -> tuple[Vrf, ...]:
        """The present VRFs with nameservers of their own (a resolv.conf of their own)."""
        return tuple(v for v in self.present_vrfs if v.nameservers)

    @property
    def absent_vrfs(self) -> tuple[Vrf, ...]:
        return tuple(v for v in self.vrfs if not v.present)

    def ports_of(self, vrf: Vrf) -> tuple[Interface, ...]:
        return tuple(iface for name in vrf.ports if (iface := self.interface(name)) is not None)

    def nexthop_port(self, vrf: Vrf, via: IPv4Address | IPv6Address) -> Interface | None:
        return nexthop_port(via, self.ports_of(vrf))

    def vrf_of_port(self, port: str) -> Vrf | None:
        for vrf in self.present_vrfs:
            if port in vrf.ports:
                return vrf
        return None

    @property
    def service_vrfs(self) -> dict[str, str]:
        """Unit name -> VRF, for the services the present VRFs run."""
        return {unit: vrf.name for vrf in self.present_vrfs for unit in vrf.services}

    @property
    def main_default_interface(self) -> Interface | None:
        for iface in self.interfaces:
            if iface.main_default:
                return iface
        return None

    def to_json(self) -> dict[str, object]:
        """Fleet-file shaped dict; `pyinfra ... debug-inventory` prints host data through it."""
        # Imported here: fleet_file imports this module, and owns the serialised shape.
        from .fleet_file import spec_to_data

        return spec_to_data(self)
