"""The commands a plan runs on a host, one class per kind, each rendering its own argv.

A consumer asks a command what it is (a route it deletes, a unit it restarts, whether it
changes the kernel's live state) instead of reading its argv: the rollback, the drift
report, the restarts and the apply's `ip -batch` all go by these classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from .commands import Argv
from .hoststate import MAIN_TABLE, RouteEntry

_FLAGS = {4: "-4", 6: "-6"}


class HostCommand:
    """What every kind answers, without anyone parsing its argv."""

    # It changes the kernel's live network state: the rollback must restore that state.
    changes_runtime: ClassVar[bool] = False
    # It only carries out a file change the plan lists anyway (a reload, an activation):
    # the drift report names the file, not this.
    follows_a_file: ClassVar[bool] = False

    @property
    def argv(self) -> Argv:
        raise NotImplementedError

    def ip(self) -> Ip | None:
        """The command as a plain `ip` command, for `ip -batch`; None when it is not one."""
        return None


@dataclass(frozen=True)
class Ip(HostCommand):
    """`ip [-4|-6] WORDS`: a link set up or into a VRF, an address, a route, a rule, a flush."""

    words: tuple[str, ...]
    family: int | None = None

    changes_runtime: ClassVar[bool] = True

    @property
    def argv(self) -> Argv:
        flag = (_FLAGS[self.family],) if self.family else ()
        return ("ip", *flag, *self.words)

    def ip(self) -> Ip:
        return self


@dataclass(frozen=True)
class CreateVrf(HostCommand):
    name: str
    table: int

    changes_runtime: ClassVar[bool] = True

    @property
    def argv(self) -> Argv:
        return self.ip().argv

    def ip(self) -> Ip:
        return Ip(("link", "add", "dev", self.name, "type", "vrf", "table", str(self.table)))


def route_match_words(route: RouteEntry) -> tuple[str, ...]:
    """The words that single out one route: destination, gateway, device, metric."""
    words = [route.dst]
    if route.gateway:
        words += ["via", route.gateway]
    if route.dev:
        words += ["dev", route.dev]
    if route.metric is not None:
        words += ["metric", str(route.metric)]
    return tuple(words)


@dataclass(frozen=True)
class DeleteRoute(HostCommand):
    """The exact delete of one route the fact found."""

    route: RouteEntry

    changes_runtime: ClassVar[bool] = True

    @property
    def shown(self) -> str:
        """The route as `ip route` prints it, without its table."""
        return " ".join(route_match_words(self.route))

    @property
    def argv(self) -> Argv:
        return self.ip().argv

    def ip(self) -> Ip:
        table = "main" if self.route.table == MAIN_TABLE else str(self.route.table)
        return Ip(
            ("route", "del", *route_match_words(self.route), "table", table), self.route.family
        )


@dataclass(frozen=True)
class Sysctl(HostCommand):
    key: str  # as sysctl(8) takes it: dotted, or with "/" where a device name holds dots
    value: str

    changes_runtime: ClassVar[bool] = True

    @property
    def argv(self) -> Argv:
        return ("sysctl", "-q", "-w", f"{self.key}={self.value}")


@dataclass(frozen=True)
class RestartUnit(HostCommand):
    unit: str

    @property
    def argv(self) -> Argv:
        return ("systemctl", "restart", self.unit)


@dataclass(frozen=True)
class Reload(HostCommand):
    """NetworkManager rereads its profiles, or systemd its units."""

    daemon: Literal["NetworkManager", "systemd"]

    follows_a_file: ClassVar[bool] = True

    @property
    def argv(self) -> Argv:
        if self.daemon == "NetworkManager":
            return ("nmcli", "connection", "reload")
        return ("systemctl", "daemon-reload")


@dataclass(frozen=True)
class ActivateProfile(HostCommand):
    """`nmcli connection up` of a port's own profile, named by uuid where it has one."""

    port: str
    handle: tuple[str, str]  # ("uuid", "...") or ("id", "...")

    follows_a_file: ClassVar[bool] = True

    @property
    def argv(self) -> Argv:
        return ("nmcli", "--wait", "90", "connection", "up", *self.handle)


@dataclass(frozen=True)
class Run(HostCommand):
    """Any other command (the boot unit's wants link): its argv as written."""

    words: Argv

    @property
    def argv(self) -> Argv:
        return self.words
