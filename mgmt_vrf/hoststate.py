"""What a host really has, as read by the combined fact (mgmt_vrf/pyinfra/facts.py).

These are plain values: the parser (mgmt_vrf/probe.py) fills them from command output,
the planner (mgmt_vrf/plan.py) compares them with the desired HostSpec.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from ipaddress import IPv4Interface, IPv6Interface, ip_address, ip_network
from typing import Any, Literal

MAIN_TABLE = 254
LOCAL_TABLE = 255
DEFAULT_TABLE = 253

# iproute2 prints well-known tables by name; everything else is a number.
TABLE_NAMES = {"main": MAIN_TABLE, "local": LOCAL_TABLE, "default": DEFAULT_TABLE}


@dataclass(frozen=True)
class Link:
    name: str
    ifindex: int
    kind: str | None = None  # "vrf", "veth", "dummy", ... None for plain NICs
    vrf_table: int | None = None  # for kind == "vrf"
    master: str | None = None  # name of the device this link is enslaved to
    up: bool = False  # administratively up (IFF_UP)
    addresses: tuple[IPv4Interface | IPv6Interface, ...] = ()  # scope global only

    @property
    def is_vrf(self) -> bool:
        return self.kind == "vrf"


@dataclass(frozen=True)
class RouteEntry:
    family: Literal[4, 6]
    table: int
    dst: str  # "default" or a network in CIDR form ("192.0.2.0/24", "2001:db8::1/128")
    type: str = "unicast"  # "unicast", "unreachable", "local", "broadcast", "multicast", ...
    gateway: str | None = None
    dev: str | None = None
    metric: int | None = None
    protocol: str | None = None
    # A multipath route has no gateway or device of its own: its nexthops' gateways.
    nexthop_gateways: tuple[str, ...] = ()

    @property
    def is_default(self) -> bool:
        return self.dst == "default"

    @property
    def is_multipath(self) -> bool:
        return self.type == "unicast" and self.dev is None and self.gateway is None

    def same_dst(self, dst: str) -> bool:
        """Compare destinations the way the kernel does (0.0.0.0/0 is default)."""
        return _canon_dst(self.dst, self.family) == _canon_dst(dst, self.family)

    def same_gateway(self, gateway: str | None) -> bool:
        if self.gateway is None or gateway is None:
            return self.gateway is None and gateway is None
        return ip_address(self.gateway) == ip_address(gateway)


def _canon_dst(dst: str, family: int) -> str:
    if dst == "default":
        return "0.0.0.0/0" if family == 4 else "::/0"
    return str(ip_network(dst, strict=False))


@dataclass(frozen=True)
class RuleEntry:
    family: Literal[4, 6]
    priority: int
    table: str | None = None  # "main", "local", "10", ...
    l3mdev: bool = False
    # What the rule matches on, as `ip rule` writes it ("to 198.51.100.0/24", "iif eth0");
    # empty for a rule that matches every packet.
    selectors: tuple[str, ...] = ()


@dataclass(frozen=True)
class FileState:
    path: str
    content: bytes | None  # None when the file does not exist

    @property
    def exists(self) -> bool:
        return self.content is not None

    @property
    def sha256(self) -> str | None:
        return None if self.content is None else hashlib.sha256(self.content).hexdigest()

    @property
    def text(self) -> str:
        return "" if self.content is None else self.content.decode("utf-8", "replace")


@dataclass(frozen=True)
class Profile:
    """A NetworkManager/initscripts connection profile found on the host (ifcfg or keyfile)."""

    path: str
    device: str | None  # DEVICE= / interface-name=
    name: str | None = None  # NAME= / id=
    uuid: str | None = None  # UUID= / uuid=
    vrf: str | None = None  # VRF= / master= with slave-type=vrf
    type: str | None = None  # TYPE= / type=
    table: int | None = None  # [vrf] table= of a VRF keyfile (ifcfg cannot describe a VRF)


@dataclass(frozen=True)
class NetworkManager:
    installed: bool = False
    version: str | None = None
    running: bool = False
    # Settings plugins it loads (`plugins=` of its configuration); None: not read (a
    # probe from before this field). The keyfile plugin is always loaded besides these.
    plugins: tuple[str, ...] | None = None
    # Port -> uuid of the profile it has active on that device (its run state).
    active: dict[str, str] = field(default_factory=dict)

    @property
    def reads_ifcfg(self) -> bool:
        return self.plugins is None or "ifcfg-rh" in self.plugins


@dataclass(frozen=True)
class UnitState:
    """A systemd service as `systemctl show` describes it, for services run inside a VRF."""

    name: str  # as asked for ("sshd.service"); `id` is systemd's own name for it
    id: str = ""
    load_state: str = ""  # loaded, not-found, masked, ...
    active_state: str = ""  # active, inactive, failed, activating, ...
    main_pid: int = 0
    # The main process's cgroup v2 path ("/system.slice/sshd.service/vrf/mgmt0"), which
    # is how `ip vrf identify` tells the VRF; None when there is no main process.
    cgroup: str | None = None
    fragment_path: str = ""
    dropin_paths: tuple[str, ...] = ()
    # The sandboxing settings that decide whether `ip vrf exec` can work inside the unit.
    properties: dict[str, str] = field(default_factory=dict)

    @property
    def vrf(self) -> str | None:
        """The VRF the main process runs in, as `ip vrf identify` would name it."""
        if not self.cgroup:
            return None
        head, sep, tail = self.cgroup.rpartition("/vrf/")
        return tail if sep and tail and "/" not in tail else None

    @property
    def running(self) -> bool:
        return self.active_state in ("active", "reloading")


@dataclass(frozen=True)
class Kernel:
    """What decides whether VRFs work on this kernel at all; read only where it can fail."""

    # loaded or built in (/sys/module/vrf, /proc/modules); None: not read
    vrf_module: bool | None = None
    modules_disabled: bool = False  # kernel.modules_disabled = 1: nothing more loads
    # `modprobe -n -v` (a dry run) for the alias the kernel asks for when a VRF device is
    # created, and for the module's name: (exit status, what it printed on one line)
    modprobe_alias: tuple[int, str] | None = None
    modprobe_name: tuple[int, str] | None = None
    # cgroup v1 hosts: the kernel's log line when it turned cgroup2 socket matching off
    socket_matching_off: str | None = None
    # cgroup v1 hosts: net_cls / net_prio -> how many cgroups /proc/cgroups counts
    net_cgroups: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class HostState:
    links: dict[str, Link] = field(default_factory=dict)
    routes: tuple[RouteEntry, ...] = ()
    rules: tuple[RuleEntry, ...] = ()
    # Keys are sysctl names with dots ("net.ipv4.tcp_l3mdev_accept"); absent when unreadable.
    sysctls: dict[str, str] = field(default_factory=dict)
    # Every path the plan may manage, present or not (exists == False when missing).
    files: dict[str, FileState] = field(default_factory=dict)
    # Every ifcfg-* file and NetworkManager keyfile on the host, ours or not.
    profiles: tuple[Profile, ...] = ()
    network_manager: NetworkManager = NetworkManager()
    systemd_running: bool = False
    unit_enabled: bool = False  # our boot unit is linked into multi-user.target.wants
    unit_busy: bool = False  # our boot unit was still running when the probe gave up waiting
    network_scripts_installed: bool = (
        False  # legacy initscripts (/etc/sysconfig/network-scripts/ifup-eth)
    )
    cgroup: str | None = None  # "v1", "v2" or "hybrid"
    kernel: Kernel = Kernel()
    # The services the fleet file runs in VRFs, and those our drop-ins still wrap.
    units: dict[str, UnitState] = field(default_factory=dict)
    # Their unit files and drop-ins (path -> text), to find the command each one starts.
    unit_files: dict[str, str] = field(default_factory=dict)
    os_id: str | None = None  # ID from /etc/os-release ("almalinux")
    os_version: str | None = None  # VERSION_ID ("8.7")
    iproute2_version: str | None = None
    # Oddities the parser tolerated (a section missing, an entry it could not read).
    probe_warnings: tuple[str, ...] = ()

    def routes_in(self, table: int, family: int | None = None) -> tuple[RouteEntry, ...]:
        return tuple(
            r for r in self.routes if r.table == table and (family is None or r.family == family)
        )

    @property
    def vrf_links(self) -> dict[str, Link]:
        return {name: link for name, link in self.links.items() if link.is_vrf}

    def file(self, path: str) -> FileState:
        return self.files.get(path, FileState(path, None))

    def to_json(self) -> dict[str, Any]:
        """Plain JSON values; pyinfra's CLI calls this for `fact ... --json`.

        File contents are summarised (size and sha256): they may be binary, and the full text
        belongs in a diff, not in a fact dump.
        """
        return {
            "links": {
                name: {
                    "ifindex": link.ifindex,
                    "kind": link.kind,
                    "vrf_table": link.vrf_table,
                    "master": link.master,
                    "up": link.up,
                    "addresses": [str(a) for a in link.addresses],
                }
                for name, link in self.links.items()
            },
            "routes": [asdict(r) for r in self.routes],
            "rules": [asdict(r) for r in self.rules],
            "sysctls": dict(self.sysctls),
            "files": {
                path: {
                    "exists": f.exists,
                    "size": None if f.content is None else len(f.content),
                    "sha256": f.sha256,
                }
                for path, f in self.files.items()
            },
            "profiles": [asdict(p) for p in self.profiles],
            "network_manager": asdict(self.network_manager),
            "systemd_running": self.systemd_running,
            "unit_enabled": self.unit_enabled,
            "unit_busy": self.unit_busy,
            "network_scripts_installed": self.network_scripts_installed,
            "cgroup": self.cgroup,
            "kernel": asdict(self.kernel),
            "units": {name: {**asdict(unit), "vrf": unit.vrf} for name, unit in self.units.items()},
            "os_id": self.os_id,
            "os_version": self.os_version,
            "iproute2_version": self.iproute2_version,
            "probe_warnings": list(self.probe_warnings),
        }
