"""The blog's files and ours, read by a real NetworkManager (ifcfg-rh plugin) at boot: the
version of LAB_NM, 1.40.16 (AlmaLinux 8.10's) in scripts/test.sh.

The lab host runs NetworkManager under systemd as AlmaLinux does; `lab reboot` gives it a
fresh network namespace, so whatever it shows after a reboot comes from the files alone.
First the regression of the blog's root cause, then our deploy on that same host.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from lab.pytest_fixture import Lab
from tests.e2e.deploy import (
    MGMT_GW4,
    MGMT_GW6,
    SVC_GW4,
    SVC_GW6,
    assert_converged,
    boot_unit_log,
    converge,
    fact,
    results,
    wrong_gateway_fleet,
)

SCRIPTS = "/etc/sysconfig/network-scripts"
KEYFILES = "/etc/NetworkManager/system-connections"


@pytest.fixture(scope="module")
def host(lab: Lab) -> str:
    mode = lab.vm_config.get("network")
    if mode != "networkmanager":
        raise AssertionError(
            f"the lab in {lab.run} runs without NetworkManager (network={mode!r}); take it "
            "down, or run these tests with LAB_NETWORK=networkmanager and another "
            "LAB_RUN_DIR/LAB_BASE_PORT (scripts/test.sh does)"
        )
    name = lab.hosts[0]
    # A host nothing has touched since its boot needs no reset (about 20 s under emulation).
    untouched = (
        f"test ! -e /var/lib/mgmt-vrf && test ! -e {SCRIPTS}/ifcfg-vrf.eth2 && "
        f'test -z "$(ls -A {KEYFILES})"'
    )
    if lab.ssh(name, untouched).returncode != 0:
        lab.reset(name)
    return name


# What operators add to a management NIC's profile; the deploy must keep every line.
OPERATOR_LINES = [
    "# eth2: out-of-band management, rack 12 (ticket NET-4411)",
    "MTU=1400",
    "ZONE=trusted",
    "DNS1=192.0.2.53",
    'ETHTOOL_OPTS="-K eth2 gro off"',
]
# The blog's own keys that a replaced profile lost.
BLOG_LINES = ["MACADDR=permanent", "IPV6_PRIVACY=no"]


def assert_operator_keys_kept(lab: Lab, host: str, when: str) -> None:
    lines = lab.check(host, f"cat {SCRIPTS}/ifcfg-eth2").splitlines()
    missing = [line for line in OPERATOR_LINES + BLOG_LINES if line not in lines]
    assert not missing, (when, missing, lines)
    (eth2,) = lab.json(host, "ip -j link show dev eth2")
    assert eth2["mtu"] == 1400, (when, eth2)


def nmcli(lab: Lab, host: str, args: str) -> list[list[str]]:
    """`nmcli -t` fields per line (no field of ours holds a colon)."""
    return [line.split(":") for line in lab.check(host, f"nmcli -t {args}").splitlines()]


def profiles(lab: Lab, host: str) -> dict[str, tuple[str, str, str]]:
    """Every profile NetworkManager knows: name -> (device it is active on, active, file)."""
    rows = nmcli(lab, host, "-f NAME,DEVICE,ACTIVE,FILENAME connection show")
    return {name: (device, active, file) for name, device, active, file in rows}


def routes(lab: Lab, host: str, family: int, table: str) -> list[dict[str, object]]:
    return lab.json(host, f"ip -j -{family} route show table {table} default") or []


def nm_journal(lab: Lab, host: str) -> str:
    return lab.check(host, "journalctl -b -o cat --no-pager -u NetworkManager")


def test_the_blogs_files_boot_into_the_blogs_failure(lab: Lab, host: str) -> None:
    lab.seed_broken(host)  # the blog's six files, then a reboot

    found = profiles(lab, host)
    # Two profiles for eth2: NetworkManager activates ifcfg-eth2, never the VRF port.
    assert found["eth2"][:2] == ("eth2", "yes")
    assert found["vrf.eth2"][:2] == ("", "no")
    assert found["vrf.eth2"][2] == f"{SCRIPTS}/ifcfg-vrf.eth2"
    port = nmcli(lab, host, "-f connection.master,connection.slave-type connection show vrf.eth2")
    assert port == [["connection.master", "mgmt0"], ["connection.slave-type", "vrf"]]
    # No profile defines mgmt0, so no VRF exists...
    assert lab.json(host, "ip -j link show type vrf") == []
    assert "mgmt0" not in {row[0] for row in nmcli(lab, host, "-f DEVICE device")}
    # ...and eth2's defaults sit in the main table beside eth0's: the blog's duplicates.
    assert {(r["gateway"], r["dev"]) for r in routes(lab, host, 4, "main")} == {
        (SVC_GW4, "eth0"),
        (MGMT_GW4, "eth2"),
    }
    assert {(r["gateway"], r["dev"]) for r in routes(lab, host, 6, "main")} == {
        (SVC_GW6, "eth0"),
        (MGMT_GW6, "eth2"),
    }
    # The route file in key form without an index is rejected, line by line.
    log = nm_journal(lab, host)
    assert (
        f'ignoring invalid route at "ADDRESS=0.0.0.0" ({SCRIPTS}/route-vrf.eth2:1): '
        'Argument for "ADDRESS=0.0.0.0" is not ADDR/PREFIX format'
    ) in log


def test_a_change_that_cuts_ssh_is_rolled_back_with_networkmanager_running(
    lab: Lab, host: str, tmp_path: Path
) -> None:
    # From the blog's state, with an operator's keys on eth2's profile (NetworkManager
    # reads them at boot), a management gateway that does not exist: NetworkManager makes
    # the change, no new ssh connection gets through, and the host's timer rolls it back.
    lines = "".join(f"{line}\n" for line in OPERATOR_LINES)
    lab.check(host, f"printf %s {shlex.quote(lines)} >> {SCRIPTS}/ifcfg-eth2")
    lab.reboot(host)
    assert_operator_keys_kept(lab, host, "before the deploy")
    wrong = wrong_gateway_fleet(lab.fleet_file, host, tmp_path / "fleet.toml")
    before = fact(wrong, host, "VrfHostState")
    run = converge(wrong, [host])
    out = run.stdout + run.stderr
    assert run.returncode != 0, out[-4000:]
    assert f"[{host}] mgmt-vrf: ROLLED BACK (no path): the change ended, but no new ssh" in out, (
        out[-4000:]
    )
    assert "not exactly as before" not in out, out[-4000:]
    assert lab.check(host, "echo back").strip() == "back"
    assert fact(wrong, host, "VrfHostState") == before
    # NetworkManager is back on the blog's profiles, with nothing left of the change.
    found = profiles(lab, host)
    assert "mgmt0" not in found
    assert (found["eth2"][:2], found["vrf.eth2"][:2]) == (("eth2", "yes"), ("", "no"))
    assert "mgmt0" not in {row[0] for row in nmcli(lab, host, "-f DEVICE device")}
    assert nmcli(lab, host, "-f GENERAL.CONNECTION,GENERAL.STATE device show eth2") == [
        ["GENERAL.CONNECTION", "eth2"],
        ["GENERAL.STATE", "100 (connected)"],
    ]


def test_our_deploy_then_a_reboot_leave_networkmanager_owning_the_vrf(lab: Lab, host: str) -> None:
    run = converge(lab.fleet_file, [host])
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
    # Live, NetworkManager already carries the change: it activated the new profiles.
    devices = {row[0]: row[1:] for row in nmcli(lab, host, "-f DEVICE,STATE,CONNECTION device")}
    assert devices["mgmt0"] == ["connected", "mgmt0"]
    assert devices["eth2"] == ["connected", "eth2"]

    assert_operator_keys_kept(lab, host, "live")

    lab.reboot(host)
    assert_operator_keys_kept(lab, host, "after reboot")
    found = profiles(lab, host)
    # Exactly one profile per device, each active and each from the file we expect.
    assert {name: value for name, value in found.items() if name != "lo"} == {
        "eth0": ("eth0", "yes", f"{SCRIPTS}/ifcfg-eth0"),
        "eth1": ("eth1", "yes", f"{SCRIPTS}/ifcfg-eth1"),
        "eth2": ("eth2", "yes", f"{SCRIPTS}/ifcfg-eth2"),
        "mgmt0": ("mgmt0", "yes", f"{KEYFILES}/mgmt0.nmconnection"),
    }
    assert nmcli(lab, host, "-f vrf.table connection show mgmt0") == [["vrf.table", "10"]]
    assert nmcli(lab, host, "-f connection.master,connection.slave-type connection show eth2") == [
        ["connection.master", "mgmt0"],
        ["connection.slave-type", "vrf"],
    ]
    (vrf,) = lab.json(host, "ip -j -d link show type vrf")
    assert (vrf["ifname"], vrf["linkinfo"]["info_data"]["table"]) == ("mgmt0", 10)
    assert lab.json(host, "ip -j link show dev eth2")[0]["master"] == "mgmt0"
    # The VRF's routes are NetworkManager's own (proto static: our repairs would be proto
    # boot), the unreachable guards included, in both families.
    for family, gateway in ((4, MGMT_GW4), (6, MGMT_GW6)):
        table10 = {
            (r.get("type", "unicast"), r.get("gateway"), r["protocol"])
            for r in routes(lab, host, family, "10")
        }
        assert table10 == {("unicast", gateway, "static"), ("unreachable", None, "static")}
    # The main table holds only the service defaults.
    assert [(r["gateway"], r["dev"]) for r in routes(lab, host, 4, "main")] == [(SVC_GW4, "eth0")]
    assert [(r["gateway"], r["dev"]) for r in routes(lab, host, 6, "main")] == [(SVC_GW6, "eth0")]
    # Our boot unit ran after NetworkManager had finished, and found nothing to do.
    unit = boot_unit_log(lab, host)
    assert "mgmt-vrf: nothing to repair" in unit, unit
    assert "repairs done" not in unit
    # NetworkManager accepted every file of ours: no warning about them in its log.
    warnings = [line for line in nm_journal(lab, host).splitlines() if "<warn>" in line]
    assert not [line for line in warnings if "ifcfg-eth" in line or "mgmt0" in line], warnings
    lab.new_connection(host)
    assert_converged(lab, lab.fleet_file, host)


def test_our_deploy_on_a_converged_networkmanager_host_changes_nothing(lab: Lab, host: str) -> None:
    run = converge(lab.fleet_file, [host])
    assert results(run) == (0, 0, 1), (run.stdout + run.stderr)[-4000:]


def test_paths_between_the_vrf_and_the_rest_are_refused_before_any_change(
    lab: Lab, host: str
) -> None:
    """One leak of each kind, each confirmed by the kernel's own lookup, refuses the host
    with its key and the command that closes it; closed, the host has nothing to change.
    The rule matches the service network only, so the controller's ssh still answers."""
    lab.check(
        host,
        "ip route add 192.0.2.200/32 dev eth2 table main && "
        "ip route add 198.51.100.128/25 dev eth0 table 10 && "
        "ip rule add pref 500 to 198.51.100.0/24 lookup main",
    )
    try:
        # From outside every VRF into the management network, and from the VRF out of it.
        assert " dev eth2 " in lab.check(host, "ip route get 192.0.2.200")
        assert " dev eth0 " in lab.check(host, "ip route get 198.51.100.200 vrf mgmt0")
        assert " dev eth0 " in lab.check(host, f"ip route get {SVC_GW4} vrf mgmt0")
        run = converge(lab.fleet_file, [host])
        out = run.stdout + run.stderr
        assert run.returncode != 0, out[-4000:]
        assert "host state does not fit the fleet file, nothing was changed" in out
        for leak in (
            "the main table routes 192.0.2.200/32 through eth2, a port of VRF mgmt0, ",
            "vrfs.mgmt0: table 10 routes 198.51.100.128/25 through eth0, outside VRF mgmt0",
            "the IPv4 rule at pref 500 (to 198.51.100.0/24 lookup main) comes before the "
            "l3mdev rule at pref 1000",
        ):
            assert f"host {host}: {leak}" in out, out[-4000:]
    finally:
        lab.check(
            host,
            "ip rule del pref 500; ip route del 198.51.100.128/25 dev eth0 table 10; "
            "ip route del 192.0.2.200/32 dev eth2 table main",
        )
    assert " dev eth2 table 10 " in lab.check(host, f"ip route get {SVC_GW4} vrf mgmt0")
    assert results(converge(lab.fleet_file, [host])) == (0, 0, 1)


def test_state_absent_hands_the_port_back_to_a_plain_profile(
    lab: Lab, host: str, tmp_path: Path
) -> None:
    text = lab.fleet_file.read_text()
    section = f"[hosts.{host}.vrfs.mgmt0]\n"
    assert section in text
    absent = tmp_path / "fleet.toml"
    absent.write_text(text.replace(section, section + 'state = "absent"\n'))
    run = converge(absent, [host])
    assert results(run) == (1, 0, 0), (run.stdout + run.stderr)[-4000:]
    # Live and after a reboot alike: NetworkManager has eth2 on its plain profile, the VRF
    # and its profile are gone, table 10 is empty and the main table has eth0's defaults.
    for when in ("live", "after reboot"):
        if when == "after reboot":
            lab.reboot(host)
        found = profiles(lab, host)
        assert "mgmt0" not in found, when
        assert found["eth2"] == ("eth2", "yes", f"{SCRIPTS}/ifcfg-eth2"), when
        assert_operator_keys_kept(lab, host, when)
        assert "VRF" not in lab.check(host, f"cat {SCRIPTS}/ifcfg-eth2"), when
        master = nmcli(lab, host, "-f connection.master connection show eth2")
        assert master == [["connection.master", ""]], when
        assert lab.json(host, "ip -j link show type vrf") == [], when
        for family, gateway in ((4, SVC_GW4), (6, SVC_GW6)):
            # An IPv4 table with no route left does not exist any more: ip says so.
            table10 = lab.ssh(host, f"ip -j -{family} route show table 10")
            assert table10.stdout.strip() in ("", "[", "[]"), (when, table10.stdout)
            assert table10.returncode == 0 or "FIB table does not exist" in table10.stderr
            assert [r["gateway"] for r in routes(lab, host, family, "main")] == [gateway], when
