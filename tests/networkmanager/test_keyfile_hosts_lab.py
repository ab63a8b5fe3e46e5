"""Hosts whose profiles are keyfiles, read by the real NetworkManager: the deploy edits the
management NIC's own keyfile and keeps every key the operator set there.

Two shapes, each with an operator's keys on eth2 (MTU, firewalld zone, DNS, ethtool
options, a MAC key, IPv6 privacy), written by NetworkManager itself, and a comment added to
eth2's keyfile:
- AlmaLinux 9.5 (the host running NetworkManager 1.48.10): the clean host's ifcfg files
  with the operator's keys, turned into keyfiles by `nmcli connection migrate`; the
  ifcfg-rh plugin still loaded;
- AlmaLinux 10.1 (the host running 1.54.0, built without ifcfg-rh): the keyfiles its nmcli
  wrote for the clean host, the operator's keys set with `nmcli connection modify`.
Both write and want `controller=`/`port-type=` (1.46 and later), where 1.42 and older
write `master=`/`slave-type=`.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from lab.pytest_fixture import Lab
from mgmt_vrf.profile_text import Keyfile
from tests.e2e.deploy import (
    MGMT_GW4,
    MGMT_GW6,
    assert_converged,
    boot_unit_log,
    converge,
    fact,
    results,
    wrong_gateway_fleet,
)

from .test_networkmanager_lab import KEYFILES, SCRIPTS, nmcli, profiles, routes

# Each shape, on the host running that release's NetworkManager.
SHAPES = {"almalinux9": "1.48", "almalinux10": "1.54"}
ETH2 = f"{KEYFILES}/eth2.nmconnection"
OPERATOR_IFCFG = [
    "MTU=1400",
    "ZONE=trusted",
    "DNS1=192.0.2.53",
    'ETHTOOL_OPTS="-K eth2 gro off"',
    "MACADDR=permanent",
    "IPV6_PRIVACY=no",
]
COMMENT = "# eth2: out-of-band management, rack 12 (ticket NET-4411)"
# What the migrated keyfile must keep through every step: the operator's keys as
# NetworkManager wrote them, and the profile's identity.
OPERATOR_KEYS = {
    ("connection", "zone"): "trusted",
    ("ethernet", "mtu"): "1400",
    ("ethernet", "cloned-mac-address"): "permanent",
    ("ethtool", "feature-gro"): "false",
    ("ipv4", "dns"): "192.0.2.53;",
    ("ipv6", "ip6-privacy"): "0",
    ("connection", "id"): "eth2",
}
# The keys a deploy owns in a port's keyfile (README, "Which profile the deploy edits").
OURS = {
    "connection": {"master", "slave-type", "controller", "port-type", "interface-name"},
    "ipv4": {"method", "address1", "gateway", "never-default"},
    "ipv6": {"method", "address1", "gateway", "never-default"},
}


def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def keys(text: str) -> dict[tuple[str, str], str]:
    groups = Keyfile.parse(ETH2, text).groups()
    return {(g, k): v for g, values in groups.items() for k, v in values.items()}


@pytest.fixture(params=["almalinux9", "almalinux10"])
def shaped(request: pytest.FixtureRequest, lab: Lab) -> tuple[str, str, str]:
    """(host, shape, the keyfile of eth2 as NetworkManager wrote it) after a reboot."""
    shape = request.param
    release = SHAPES[shape]
    running = [h for h in lab.hosts if (lab.networkmanager(h) or "").startswith(release + ".")]
    assert running, f"no lab host runs NetworkManager {release} (LAB_NM, tests/networkmanager)"
    host = running[0]
    lab.reset(host)
    if shape == "almalinux9":
        lines = "".join(f"{line}\n" for line in OPERATOR_IFCFG)
        operator = (
            f"printf %s {shlex.quote(lines)} >> {SCRIPTS}/ifcfg-eth2 && "
            "nmcli connection reload && nmcli connection migrate >/dev/null"
        )
    else:
        operator = (
            "nmcli connection modify eth2 connection.zone trusted ethernet.mtu 1400 "
            "ipv4.dns 192.0.2.53 ethtool.feature-gro off"
        )
    lab.check(host, f"{operator} && sed -i '1i {COMMENT}' {ETH2}")
    lab.reboot(host)
    config = lab.check(host, "NetworkManager --print-config")
    plugins = [line for line in config.splitlines() if "plugins=" in line]
    assert ("ifcfg-rh" in " ".join(plugins)) == (shape == "almalinux9"), config
    assert lab.check(host, f"ls -A {SCRIPTS}") == ""
    original = lab.check(host, f"cat {ETH2}")
    assert original.startswith(COMMENT + "\n[connection]\n"), original
    assert {k: keys(original).get(k) for k in OPERATOR_KEYS} == OPERATOR_KEYS, original
    assert_honoured(lab, host, "before the deploy")
    return host, shape, original


def assert_honoured(lab: Lab, host: str, when: str) -> None:
    (eth2,) = lab.json(host, "ip -j link show dev eth2")
    assert eth2["mtu"] == 1400, (when, eth2)
    zone = nmcli(lab, host, "-f connection.zone connection show eth2")
    assert zone == [["connection.zone", "trusted"]], when


def assert_operator_keys_kept(lab: Lab, host: str, original: str, when: str) -> str:
    text = lab.check(host, f"cat {ETH2}")
    now = keys(text)
    theirs = {k: v for k, v in keys(original).items() if k[1] not in OURS.get(k[0], ())}
    assert {k: now.get(k) for k in theirs} == theirs, (when, text)
    assert COMMENT in text.splitlines(), (when, text)
    assert lab.check(host, f"ls -A {SCRIPTS}") == "", when
    assert_honoured(lab, host, when)
    return text


def test_a_keyfile_host_converges_reboots_and_is_given_its_profile_back(
    lab: Lab, shaped: tuple[str, str, str], tmp_path: Path
) -> None:
    host, shape, original = shaped
    run = converge(lab.fleet_file, [host])
    assert results(run) == (1, 0, 0), (run.stdout + run.stderr)[-4000:]
    text = assert_operator_keys_kept(lab, host, original, "live")
    # In the spelling of the host's release (1.46 renamed the keys); the file keeps its uuid
    # and name.
    edited = keys(text)
    old = version_key(lab.networkmanager(host) or "0") < (1, 46)
    controller, port_type = ("master", "slave-type") if old else ("controller", "port-type")
    assert edited[("connection", controller)] == "mgmt0", text
    assert edited[("connection", port_type)] == "vrf", text
    assert edited[("connection", "uuid")] == keys(original)[("connection", "uuid")]
    assert lab.check(host, f"stat -c '%U %a' {ETH2}").strip() == "root 600"

    lab.reboot(host)
    assert_operator_keys_kept(lab, host, original, "after reboot")
    found = profiles(lab, host)
    assert {name: value for name, value in found.items() if name != "lo"} == {
        "eth0": ("eth0", "yes", f"{KEYFILES}/eth0.nmconnection"),
        "eth1": ("eth1", "yes", f"{KEYFILES}/eth1.nmconnection"),
        "eth2": ("eth2", "yes", ETH2),
        "mgmt0": ("mgmt0", "yes", f"{KEYFILES}/mgmt0.nmconnection"),
    }, shape
    assert lab.json(host, "ip -j link show dev eth2")[0]["master"] == "mgmt0"
    for family, gateway in ((4, MGMT_GW4), (6, MGMT_GW6)):
        table10 = {
            (r.get("type", "unicast"), r.get("gateway")) for r in routes(lab, host, family, "10")
        }
        assert table10 == {("unicast", gateway), ("unreachable", None)}, (shape, family)
    unit = boot_unit_log(lab, host)
    assert "mgmt-vrf: nothing to repair" in unit, unit
    lab.new_connection(host)
    assert_converged(lab, lab.fleet_file, host)

    again = converge(lab.fleet_file, [host])
    assert results(again) == (0, 0, 1), (again.stdout + again.stderr)[-4000:]

    fleet = lab.fleet_file.read_text()
    section = f"[hosts.{host}.vrfs.mgmt0]\n"
    absent = tmp_path / "fleet.toml"
    absent.write_text(fleet.replace(section, section + 'state = "absent"\n'))
    run = converge(absent, [host])
    assert results(run) == (1, 0, 0), (run.stdout + run.stderr)[-4000:]
    for when in ("released", "released, after reboot"):
        if when.endswith("reboot"):
            lab.reboot(host)
        # The operator's file again, byte for byte: our keys gone, theirs where they were.
        assert lab.check(host, f"cat {ETH2}") == original, when
        assert profiles(lab, host)["eth2"] == ("eth2", "yes", ETH2), when
        assert "mgmt0" not in profiles(lab, host), when
        assert lab.json(host, "ip -j link show type vrf") == [], when
        assert_honoured(lab, host, when)


@pytest.mark.parametrize("shaped", ["almalinux10"], indirect=True)
def test_a_change_that_cuts_ssh_on_a_keyfile_only_host_gives_back_the_same_bytes(
    lab: Lab, shaped: tuple[str, str, str], tmp_path: Path
) -> None:
    host, _, original = shaped
    wrong = wrong_gateway_fleet(lab.fleet_file, host, tmp_path / "fleet.toml")
    before = fact(wrong, host, "VrfHostState")
    run = converge(wrong, [host])
    out = run.stdout + run.stderr
    assert f"[{host}] mgmt-vrf: ROLLED BACK (no path)" in out, out[-4000:]
    assert "not exactly as before" not in out, out[-4000:]
    assert lab.check(host, f"cat {ETH2}") == original
    assert fact(wrong, host, "VrfHostState") == before
    assert nmcli(lab, host, "-f GENERAL.CONNECTION,GENERAL.STATE device show eth2") == [
        ["GENERAL.CONNECTION", "eth2"],
        ["GENERAL.STATE", "100 (connected)"],
    ]
    assert_honoured(lab, host, "rolled back")
