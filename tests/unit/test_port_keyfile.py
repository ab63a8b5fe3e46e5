"""A port's keyfile is the host's own, edited: which one, what we change, what comes back.

The host files are written by NetworkManager's own keyfile writer
(tests/fixtures/keyfiles/capture.sh): an operator's management NIC as `nmcli connection
migrate` leaves it on AlmaLinux 9, and the installer's.
"""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Interface

import pytest

from mgmt_vrf import paths
from mgmt_vrf.host_commands import ActivateProfile
from mgmt_vrf.hoststate import FileState, HostState, NetworkManager, Profile
from mgmt_vrf.plan import RemoveFile, RunCommand, WriteFile, plan
from mgmt_vrf.port_profile import port_profile
from mgmt_vrf.probe import parse_probe_output
from mgmt_vrf.profile_text import Keyfile, hide_secrets

from .builders import clean_state, seed_spec
from .test_profile_text import KEYFILES, glib_read

PATH = f"{paths.SYSTEM_CONNECTIONS}/eth2.nmconnection"
OPERATOR = (KEYFILES / "eth2-operator-1.42.4.nmconnection").read_text()
UUID = "0c6e4f9a-6a5e-4d3b-9a43-3f2b1c0d8e71"
COMMENT = "# eth2: out-of-band management, rack 12 (ticket NET-4411)"
# Keys a deploy owns in a port's keyfile; every other one is the operator's.
OURS = {
    "connection": {"master", "slave-type", "controller", "port-type", "interface-name"},
    "ipv4": {"method", "address1", "gateway", "never-default"},
    "ipv6": {"method", "address1", "gateway", "never-default"},
}


def with_keyfile(
    text: str, path: str = PATH, version: str = "1.42.4", active: bool = True
) -> HostState:
    nm = NetworkManager(
        installed=True,
        version=version,
        running=True,
        # AlmaLinux 10's NetworkManager (1.54) has no ifcfg-rh plugin.
        plugins=("keyfile",) if version.startswith("1.54.") else None,
        active={"eth2": UUID} if active else {},
    )
    uuid = Keyfile.parse(path, text).get("connection", "uuid")
    profile = Profile(path, "eth2", "eth2", uuid=uuid)
    return clean_state(
        network_manager=nm, profiles=(profile,), files={path: FileState(path, text.encode())}
    )


def written(state: HostState, spec: object = None) -> dict[str, str]:
    result = plan(spec or seed_spec(), state)  # type: ignore[arg-type]
    return {c.path: c.content for c in result.changes if isinstance(c, WriteFile)}


def absent_spec() -> object:
    spec = seed_spec()
    return replace(spec, vrfs=(replace(spec.vrfs[0], state="absent"),))


def flat(text: str) -> dict[tuple[str, str], str]:
    groups = Keyfile.parse(PATH, text).groups()
    return {(g, k): v for g, values in groups.items() for k, v in values.items()}


def theirs(text: str) -> dict[tuple[str, str], str]:
    return {k: v for k, v in flat(text).items() if k[1] not in OURS.get(k[0], ())}


OPERATOR_WITH_COMMENT = COMMENT + "\n" + OPERATOR


def test_the_operators_keyfile_is_edited_in_place_and_keeps_every_key_of_theirs() -> None:
    text = written(with_keyfile(OPERATOR_WITH_COMMENT))[PATH]
    assert theirs(text) == theirs(OPERATOR_WITH_COMMENT)
    assert COMMENT in text.splitlines()
    keys = flat(text)
    assert keys[("connection", "uuid")] == UUID and keys[("connection", "id")] == "eth2"
    assert keys[("connection", "master")] == "mgmt0"
    assert keys[("connection", "slave-type")] == "vrf"
    assert keys[("ipv4", "address1")] == "203.0.113.10/24,203.0.113.1"
    assert keys[("ipv6", "address1")] == "2001:db8:1::10/64,2001:db8:1::1"
    # With the gateway in the VRF's table, never-default would drop it: it goes.
    assert ("ipv4", "never-default") not in keys and ("ipv6", "never-default") not in keys
    # The operator's SLAAC stays: NetworkManager puts what it learns into the VRF's table.
    assert keys[("ipv6", "method")] == "auto"
    # Every line of theirs keeps its place; ours come after their group's last key.
    kept = [line for line in OPERATOR_WITH_COMMENT.splitlines() if line in text.splitlines()]
    assert [line for line in text.splitlines() if line in kept] == kept
    assert glib_read(text) is not None


def test_no_ifcfg_file_and_no_route_file_is_written_beside_a_keyfile() -> None:
    files = written(with_keyfile(OPERATOR))
    assert not [path for path in files if path.startswith(paths.NETWORK_SCRIPTS)]


def test_the_port_is_activated_by_its_profiles_uuid() -> None:
    result = plan(seed_spec(), with_keyfile(OPERATOR))
    (up,) = [
        c
        for c in result.changes
        if isinstance(c, RunCommand) and isinstance(c.command, ActivateProfile)
    ]
    assert isinstance(up.command, ActivateProfile)
    assert (up.command.port, up.shell) == ("eth2", f"nmcli --wait 90 connection up uuid {UUID}")


def test_a_second_run_writes_nothing_and_release_gives_the_file_back_byte_for_byte() -> None:
    # The profile's address is the fleet file's (seed_spec: a /24).
    before = OPERATOR_WITH_COMMENT.replace("203.0.113.10/25", "203.0.113.10/24")
    deployed = written(with_keyfile(before))[PATH]
    assert PATH not in written(with_keyfile(deployed))
    released = written(with_keyfile(deployed), absent_spec())[PATH]
    assert released == before


def test_networkmanager_146_and_later_get_controller_and_port_type() -> None:
    text = written(with_keyfile(OPERATOR, version="1.54.0"))[PATH]
    keys = flat(text)
    assert (keys[("connection", "controller")], keys[("connection", "port-type")]) == (
        "mgmt0",
        "vrf",
    )
    assert ("connection", "master") not in keys and ("connection", "slave-type") not in keys


def test_a_keyfile_keeps_the_spelling_it_has_and_loses_the_other() -> None:
    both = OPERATOR.replace(
        "zone=trusted\n", "zone=trusted\ncontroller=old0\nport-type=vrf\nmaster=old0\n"
    )
    text = written(with_keyfile(both, version="1.42.4"))[PATH]
    keys = flat(text)
    assert keys[("connection", "controller")] == "mgmt0"
    assert ("connection", "master") not in keys


def test_the_fleet_files_addresses_replace_the_profiles_and_stale_routes_go() -> None:
    crowded = OPERATOR.replace(
        "address1=203.0.113.10/25\n",
        "address1=203.0.113.99/25\naddress2=198.51.100.7/24\ngateway=203.0.113.254\n"
        "route1=192.0.2.0/24,203.0.113.254\nroute1_options=table=99\n",
    )
    keys = flat(written(with_keyfile(crowded))[PATH])
    ipv4 = {k: v for (g, k), v in keys.items() if g == "ipv4"}
    # The file's own gateway= key stays its form (NetworkManager 1.54 writes it so).
    assert ipv4 == {
        "address1": "203.0.113.10/24",
        "gateway": "203.0.113.1",
        "dns": "192.0.2.53;",
        "method": "manual",
    }


def test_a_disabled_autoconnect_is_removed_and_duplicates_collapse() -> None:
    odd = OPERATOR.replace(
        "interface-name=eth2\n", "interface-name=eth1\nautoconnect=false\ninterface-name=eth9\n"
    )
    text = written(with_keyfile(odd))[PATH]
    lines = text.splitlines()
    assert [line for line in lines if line.startswith("interface-name=")] == ["interface-name=eth2"]
    assert "autoconnect=false" not in lines


def test_the_active_profile_is_the_ports_own_and_another_for_the_device_is_removed() -> None:
    # NetworkManager runs "Wired connection 1" (bound by MAC, no interface-name) on eth2;
    # an installer's eth2.nmconnection for the same device waits beside it.
    wired = f"{paths.SYSTEM_CONNECTIONS}/Wired connection 1.nmconnection"
    wired_text = OPERATOR.replace("id=eth2", "id=Wired connection 1").replace(
        "interface-name=eth2\n", ""
    )
    installer = (
        (KEYFILES / "eth2-installer-1.42.4.nmconnection")
        .read_text()
        .replace(UUID, "1" * 8 + UUID[8:])
    )
    state = with_keyfile(wired_text, path=wired)
    state = replace(
        state,
        profiles=(
            Profile(wired, None, "Wired connection 1", uuid=UUID),
            Profile(PATH, "eth2", "eth2", uuid="1" * 8 + UUID[8:]),
        ),
        files={**state.files, PATH: FileState(PATH, installer.encode())},
    )
    own = port_profile(state, "eth2", "networkmanager")
    assert (own.path, own.handle) == (wired, ("uuid", UUID))
    result = plan(seed_spec(), state)
    assert [c.path for c in result.changes if isinstance(c, RemoveFile) and "second" in c.why] == [
        PATH
    ]
    assert "interface-name=eth2" in written(state)[wired]


def test_two_keyfiles_and_none_active_the_one_named_after_the_port_is_edited() -> None:
    other = f"{paths.SYSTEM_CONNECTIONS}/mgmt-nic.nmconnection"
    state = with_keyfile(OPERATOR, active=False)
    state = replace(
        state,
        profiles=(*state.profiles, Profile(other, "eth2", "mgmt-nic", uuid="2" * 8 + UUID[8:])),
        files={
            **state.files,
            other: FileState(other, OPERATOR.replace(UUID, "2" * 8 + UUID[8:]).encode()),
        },
    )
    assert port_profile(state, "eth2", "networkmanager").path == PATH


@pytest.mark.parametrize(
    ("line", "shown"),
    [
        ("psk=hunter2", "psk=<hidden>"),
        ("password=s3cret", "password=<hidden>"),
        ("private-key-password=x", "private-key-password=<hidden>"),
        ("wep-key0=abcdef", "wep-key0=<hidden>"),
        ("password-flags=1", "password-flags=1"),
        ("mtu=1400", "mtu=1400"),
    ],
)
def test_secrets_never_show_in_a_diff(line: str, shown: str) -> None:
    text = f"[802-1x]\n{line}\n[vpn-secrets]\ntoken=abc\n"
    assert hide_secrets(PATH, text) == f"[802-1x]\n{shown}\n[vpn-secrets]\ntoken=<hidden>\n"
    assert hide_secrets(paths.ifcfg("eth2"), text) == text


def test_a_dry_runs_diff_of_a_keyfile_with_802_1x_hides_the_password() -> None:
    secret = OPERATOR.replace("[proxy]", "[802-1x]\neap=peap;\npassword=hunter2\n\n[proxy]")
    lines = plan(seed_spec(), with_keyfile(secret)).describe()
    assert not [line for line in lines if "hunter2" in line]


VERSIONS = ["1.40.16", "1.42.4", "1.48.10", "1.54.0"]


@pytest.mark.parametrize("version", VERSIONS)
def test_our_keys_read_as_that_releases_nmcli_writes_a_vrf_port(version: str) -> None:
    # nmcli of each release (capture.sh) wrote the installer's profile and the same NIC as
    # a port of mgmt0; our edit of the first carries the second's keys, in its spelling.
    installer = (KEYFILES / f"eth2-installer-{version}.nmconnection").read_text()
    port = (KEYFILES / f"eth2-vrf-port-{version}.nmconnection").read_text()
    edited = flat(written(with_keyfile(installer.replace("/25", "/24"), version=version))[PATH])
    wanted = flat(port.replace("/25", "/24"))
    for group, key in [
        ("connection", "master"),
        ("connection", "slave-type"),
        ("connection", "controller"),
        ("connection", "port-type"),
        ("ipv4", "address1"),
        ("ipv4", "gateway"),
        ("ipv4", "method"),
        ("ipv6", "address1"),
        ("ipv6", "gateway"),
        ("ipv6", "method"),
    ]:
        assert edited.get((group, key)) == wanted.get((group, key)), (version, group, key)
    assert theirs(written(with_keyfile(installer, version=version))[PATH]) == theirs(installer)


@pytest.mark.parametrize("version", VERSIONS)
def test_each_releases_operator_keyfile_keeps_its_keys_and_comes_back_whole(version: str) -> None:
    before = COMMENT + "\n" + (KEYFILES / f"eth2-operator-{version}.nmconnection").read_text()
    before = before.replace("/25", "/24")
    deployed = written(with_keyfile(before, version=version))[PATH]
    assert theirs(deployed) == theirs(before)
    assert PATH not in written(with_keyfile(deployed, version=version))
    assert written(with_keyfile(deployed, version=version), absent_spec())[PATH] == before


def test_a_real_keyfile_hosts_probe_names_each_ports_active_profile_and_its_whole_file() -> None:
    # Captured on the NetworkManager lab shaped like AlmaLinux 9 (tests/fixtures/README.md).
    lines = (KEYFILES.parent / "probe" / "lab-nm-keyfiles.txt").read_text().splitlines()
    state = parse_probe_output(lines)
    active = state.network_manager.active
    assert set(active) == {"eth0", "eth1", "eth2"}
    text = state.file(PATH).text
    assert text.startswith(COMMENT + "\n[connection]\nid=eth2\n")
    assert flat(text)[("connection", "uuid")] == active["eth2"]
    own = port_profile(state, "eth2", "networkmanager")
    assert (own.path, own.format, own.handle) == (PATH, "keyfile", ("uuid", active["eth2"]))
    # The lab's fleet file: eth2 with the lab's /25.
    spec = seed_spec()
    eth2 = next(i for i in spec.interfaces if i.name == "eth2")
    lab_eth2 = replace(eth2, ipv4=IPv4Interface("203.0.113.10/25"))
    spec = replace(spec, interfaces=tuple(lab_eth2 if i is eth2 else i for i in spec.interfaces))
    edited = written(state, spec)[PATH]
    assert theirs(edited) == theirs(text)
    assert not [path for path in written(state, spec) if path.startswith(paths.NETWORK_SCRIPTS)]
