"""Which connection profile is a VRF port's own, in which format, and how it is activated.

The deploy edits the port's own profile in place rather than writing one of its own: the
operator's keys (MTU, firewalld zone, DNS, ethtool options, 802.1x) live there. NetworkManager
activates one profile per device; the one it has active now is the port's own, else the only
one there is, else a new one. Every other profile for the device is a second profile, backed
up and removed, since NetworkManager would pick between them unpredictably.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import Literal

from . import paths
from .hoststate import HostState, Profile
from .profile_text import Ifcfg, Keyfile
from .render import stable_uuid

Format = Literal["ifcfg", "keyfile"]


@dataclass(frozen=True)
class PortProfile:
    port: str
    path: str  # where the edited profile is written
    format: Format
    # The host's text the edit starts from (the chosen profile's); None for a new profile.
    current: str | None
    # The profile's own identity for `nmcli connection up`: ("uuid", U) or ("id", NAME).
    handle: tuple[str, str]

    def parsed(self) -> Ifcfg | Keyfile | None:
        """The current text parsed; raises ProfileSyntaxError for one we cannot read."""
        if self.current is None:
            return None
        reader = Ifcfg if self.format == "ifcfg" else Keyfile
        return reader.parse(self.path, self.current)


def new_format(backend: str) -> Format:
    """ifcfg only for the legacy network-scripts: wherever NetworkManager runs a new profile
    is a keyfile, the format every release reads (AlmaLinux 10 reads nothing else, and 9
    deprecates ifcfg)."""
    return "ifcfg" if backend == "network-scripts" else "keyfile"


def new_port_uuid(port: str) -> str:
    return stable_uuid(f"port:{port}")


def new_keyfile_path(port: str, state: HostState | None) -> str:
    """``PORT.nmconnection``, unless a file of another device has that name."""
    taken = {p.path for p in state.profiles} if state is not None else set()
    path = f"{paths.SYSTEM_CONNECTIONS}/{port}.nmconnection"
    return path if path not in taken else f"{paths.SYSTEM_CONNECTIONS}/{port}-mgmt-vrf.nmconnection"


def _format(profile: Profile) -> Format:
    return "keyfile" if profile.path.endswith(".nmconnection") else "ifcfg"


def readable_formats(backend: str, state: HostState) -> tuple[Format, ...]:
    """The formats the host's profile reader reads: network-scripts read only ifcfg, a
    NetworkManager without ifcfg-rh (AlmaLinux 10) only keyfiles."""
    if backend == "network-scripts":
        return ("ifcfg",)
    if not state.network_manager.reads_ifcfg:
        return ("keyfile",)
    return ("ifcfg", "keyfile")


def candidates(state: HostState, port: str, backend: str) -> list[Profile]:
    """The host's profiles for the port that its reader reads, in path order."""
    active = state.network_manager.active.get(port)
    formats = readable_formats(backend, state)
    # An ifcfg file may leave DEVICE= out (matched by HWADDR=): ifcfg-PORT is still the port's.
    found = [
        p
        for p in state.profiles
        if (
            p.device == port
            or (active is not None and p.uuid == active)
            or (p.device is None and p.path == paths.ifcfg(port))
        )
        and _format(p) in formats
    ]
    return sorted(found, key=lambda p: p.path)


def _pick(state: HostState, port: str, found: list[Profile]) -> Profile | None:
    """The active profile, else the only one; within ifcfg, ifcfg-PORT is the one this
    tool has always edited (the blog's host has two for eth2, and either may be active)."""
    active = state.network_manager.active.get(port)
    on = next((p for p in found if active is not None and p.uuid == active), None)
    ifcfg_port = next((p for p in found if p.path == paths.ifcfg(port)), None)
    if on is not None:
        return ifcfg_port if ifcfg_port is not None and _format(on) == "ifcfg" else on
    if len(found) <= 1:
        return found[0] if found else None
    # Several and none active (NetworkManager not running): the one this tool has always
    # edited, then a keyfile named after the port, then the first by path.
    keyfile_port = f"{paths.SYSTEM_CONNECTIONS}/{port}.nmconnection"
    return ifcfg_port or next((p for p in found if p.path == keyfile_port), found[0])


def port_profile(state: HostState | None, port: str, backend: str) -> PortProfile:
    """The port's own profile on this host (a new one when it has none)."""
    chosen = None if state is None else _pick(state, port, candidates(state, port, backend))
    if chosen is None or state is None or not state.file(chosen.path).exists:
        fmt = new_format(backend)
        if fmt == "ifcfg":
            return PortProfile(port, paths.ifcfg(port), fmt, None, ("id", port))
        path = new_keyfile_path(port, state)
        return PortProfile(port, path, fmt, None, ("uuid", new_port_uuid(port)))
    fmt = _format(chosen)
    text = state.file(chosen.path).text
    if fmt == "keyfile":
        stem = posixpath.basename(chosen.path).removesuffix(".nmconnection")
        handle = ("uuid", chosen.uuid) if chosen.uuid else ("id", chosen.name or stem)
        return PortProfile(port, chosen.path, fmt, text, handle)
    # An ifcfg profile is always written as ifcfg-PORT, beside its route-PORT files; one
    # found under another name (the blog's ifcfg-vrf.eth2) is the text the edit starts
    # from, and is removed as a second profile.
    handle = ("uuid", chosen.uuid) if chosen.uuid else ("id", chosen.name or f"System {port}")
    return PortProfile(port, paths.ifcfg(port), fmt, text, handle)


def second_profiles(state: HostState, port: str, backend: str, own_path: str) -> list[Profile]:
    """Every other profile for the port that the host's reader reads."""
    return [p for p in candidates(state, port, backend) if p.path != own_path]
