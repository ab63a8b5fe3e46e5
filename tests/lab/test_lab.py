"""Tests of the lab itself, on its real kernel over real SSH.

Each test that changes a host puts it back (reset or reboot) before it ends, so the
order of the tests does not matter and a reused lab stays clean.
"""

from __future__ import annotations

import ipaddress
import json
import secrets
import time
import tomllib

from lab import vm
from lab.paths import BLOG_RELEASE, NETWORKMANAGER_RELEASES
from lab.pytest_fixture import Lab

SVC_GW4, SVC_GW6 = "198.51.100.1", "2001:db8:100::1"
MGMT_GW4, MGMT_GW6 = "203.0.113.1", "2001:db8:1::1"
MGMT_HOST4 = "203.0.113.10"

# Makes VRF changes survive the ssh session they run in: detached, with output kept.
DETACH = "nohup sh -c {script} >/tmp/lab-test.out 2>&1 </dev/null &"


def defaults(
    lab: Lab, host: str, family: str = "-4", table: str = "main"
) -> list[dict[str, object]]:
    routes = lab.json(host, f"ip -j {family} route show table {table} default")
    assert isinstance(routes, list)
    return routes


def hands_off(lab: Lab, host: str) -> str:
    """What a script that changes eth2 by hand runs first: NetworkManager would answer the
    change by reconfiguring eth2; stopped, it leaves every link as it is (the reboot at the
    end of each such test starts it again)."""
    return "systemctl stop NetworkManager.service; " if lab.networkmanager(host) else ""


def test_fleet_files_describe_the_running_lab(lab: Lab) -> None:
    fleet = tomllib.loads(lab.fleet_file.read_text())
    assert fleet["defaults"]["ssh_user"] == "root"
    assert set(fleet["hosts"]) == set(lab.hosts)
    for host in lab.hosts:
        h = fleet["hosts"][host]
        assert h["ssh_port"] == lab.port(host)
        assert h["interfaces"]["eth0"]["main_default"] is True
        assert h["vrfs"]["mgmt0"] == {
            "table": 10,
            "ports": ["eth2"],
            "gateway4": MGMT_GW4,
            "gateway6": MGMT_GW6,
        }
    known = (lab.run / "known_hosts").read_text()
    for host in lab.hosts:
        assert f"[127.0.0.1]:{lab.port(host)} ssh-ed25519 " in known


def test_clean_host_looks_like_a_fresh_almalinux(lab: Lab) -> None:
    host = lab.hosts[0]
    out = lab.check(
        host,
        ". /etc/os-release; echo $ID $VERSION_ID; hostname; "
        "sysctl -n net.ipv4.tcp_l3mdev_accept net.ipv4.udp_l3mdev_accept; "
        "ls -d /etc/sysconfig/network-scripts /etc/NetworkManager/system-connections "
        "/etc/sysctl.d /etc/systemd/system /usr/local/sbin /usr/libexec /var/lib",
    ).split("\n")
    version = lab.networkmanager(host)
    release = NETWORKMANAGER_RELEASES[version][0] if version else BLOG_RELEASE[0]
    assert out[0] == f"almalinux {release}"
    assert out[1] == host
    assert out[2:4] == ["0", "0"]
    addrs = {a["ifname"]: a for a in lab.json(host, "ip -j address show")}
    assert {"eth0", "eth1", "eth2"} <= set(addrs)
    eth2 = [i["local"] for i in addrs["eth2"]["addr_info"] if i["scope"] == "global"]
    assert eth2 == [MGMT_HOST4, "2001:db8:1::10"]
    v4, v6 = defaults(lab, host), defaults(lab, host, "-6")
    assert [(r["gateway"], r["dev"]) for r in v4] == [(SVC_GW4, "eth0")]
    assert [(r["gateway"], r["dev"]) for r in v6] == [(SVC_GW6, "eth0")]
    assert lab.check(host, "ip -d link show type vrf").strip() == ""


def test_a_vrf_can_be_created_and_used(lab: Lab) -> None:
    host = lab.hosts[0]
    # tcp_l3mdev_accept first, so the session that enslaves eth2 survives; and
    # keep_addr_on_down, or eth2 loses its IPv6 address when the kernel cycles it. `onlink`:
    # NetworkManager's addresses are noprefixroute, so table 10 gets no connected route.
    script = hands_off(lab, host) + (
        "sysctl -qw net.ipv4.tcp_l3mdev_accept=1 net.ipv6.conf.eth2.keep_addr_on_down=1 && "
        "ip link add mgmt0 type vrf table 10 && ip link set mgmt0 up && "
        "ip link set eth2 master mgmt0 && "
        f"ip route add default via {MGMT_GW4} dev eth2 onlink table 10 && "
        f"ip -6 route add default via {MGMT_GW6} dev eth2 onlink table 10 && "
        f"ip vrf exec mgmt0 ping -c1 -W3 {MGMT_GW4} && "
        # Re-enslaved, eth2 runs duplicate address detection again on addresses that have it.
        'for i in $(seq 50); do [ -z "$(ip -6 addr show dev eth2 tentative)" ] && break; '
        "sleep 0.2; done; "
        f"ip vrf exec mgmt0 ping -6 -c1 -W3 {MGMT_GW6}"
    )
    try:
        r = lab.ssh(host, script)
        assert r.returncode == 0, r.stderr
        link = lab.json(host, "ip -j -d link show mgmt0")[0]
        assert link["linkinfo"]["info_kind"] == "vrf"
        assert link["linkinfo"]["info_data"]["table"] == 10
        port = lab.json(host, "ip -j -d link show eth2")[0]
        assert port["master"] == "mgmt0"
        # The management gateway answers only on its own segment: out of reach without the VRF.
        assert lab.ssh(host, f"ping -c1 -W2 {MGMT_GW4}").returncode != 0
        assert [r["gateway"] for r in defaults(lab, host, table="10")] == [MGMT_GW4]
    finally:
        lab.reboot(host)
    assert lab.check(host, "ip -d link show type vrf").strip() == ""


def test_hosts_are_isolated(lab: Lab) -> None:
    a, b = lab.hosts[0], lab.hosts[1]
    marker = f"/var/lib/lab-isolation-{secrets.token_hex(4)}"
    try:
        lab.check(a, f"echo {a} > {marker} && ip link add labtest0 type dummy")
        assert lab.check(a, f"cat {marker}").strip() == a
        assert lab.ssh(b, f"test -e {marker}").returncode == 1
        assert lab.ssh(b, "ip link show labtest0").returncode != 0
        assert lab.check(b, "hostname").strip() == b
    finally:
        lab.check(a, f"rm -f {marker}; ip link del labtest0 2>/dev/null; true")


def test_reboot_wipes_network_keeps_files_and_runs_enabled_units(lab: Lab) -> None:
    host = lab.hosts[0]
    unit = """[Unit]
Description=lab test unit
Wants=network-online.target
After=network-online.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh -c 'ip -br link > /var/lib/lab-test/at-boot'
ExecStart=/usr/sbin/ip link add labboot0 type dummy

[Install]
WantedBy=multi-user.target
"""
    try:
        lab.check(
            host,
            "mkdir -p /var/lib/lab-test && echo kept > /var/lib/lab-test/file && "
            "echo net.ipv4.tcp_l3mdev_accept=1 > /etc/sysctl.d/90-lab-test.conf && "
            "ip link add mgmt0 type vrf table 10 && ip address add 192.0.2.99/32 dev eth1 && "
            "ip route add 198.51.100.128/25 via 198.51.100.1 && "
            f"cat > /etc/systemd/system/lab-test.service <<'EOF'\n{unit}EOF\n"
            "systemctl enable lab-test.service",
        )
        lab.reboot(host)
        assert lab.check(host, "cat /var/lib/lab-test/file").strip() == "kept"
        assert lab.check(host, "sysctl -n net.ipv4.tcp_l3mdev_accept").strip() == "1"
        links = {link["ifname"] for link in lab.json(host, "ip -j link show")}
        assert "mgmt0" not in links
        assert "labboot0" in links  # created by the enabled unit at boot
        assert "192.0.2.99" not in lab.check(host, "ip -4 -br address show eth1")
        assert "198.51.100.128" not in lab.check(host, "ip route")
        assert "eth2" in lab.check(host, "cat /var/lib/lab-test/at-boot")
        if lab.info["init"] == "systemd":
            assert lab.check(host, "systemctl is-active lab-test.service").strip() == "active"
        else:
            units = json.loads(lab.check(host, "cat /run/lab/units.json"))
            assert [(u["unit"], u["result"]) for u in units] == [("lab-test.service", "success")]
    finally:
        lab.reset(host)
    assert lab.ssh(host, "test -e /var/lib/lab-test/file").returncode == 1


def test_hosts_run_systemd_with_transient_timers(lab: Lab) -> None:
    if lab.info["init"] != "systemd":
        return  # LAB_INIT=runner: no systemd on the hosts, by choice
    host = lab.hosts[1]
    state = lab.check(host, "systemctl is-system-running --wait || true").strip()
    assert state == "running", lab.check(host, "systemctl --failed --no-legend")
    assert lab.check(host, "cat /proc/1/comm").strip() == "systemd"
    try:
        # AccuracySec: by default systemd may fire a timer up to a minute late.
        lab.check(
            host,
            "systemd-run --quiet --on-active=2 --timer-property=AccuracySec=100ms "
            "touch /var/lib/lab-timer-fired",
        )
        deadline = time.monotonic() + 30
        while lab.ssh(host, "test -e /var/lib/lab-timer-fired").returncode != 0:
            assert time.monotonic() < deadline, "transient timer did not fire"
            time.sleep(2)
    finally:
        lab.check(host, "rm -f /var/lib/lab-timer-fired")


def test_controller_enters_through_management_and_replies_follow_main_table(lab: Lab) -> None:
    host = lab.hosts[1]
    before = lab.counters(host)
    lab.check(
        host,
        "head -c 300000 /dev/urandom | base64",
    )
    after = lab.counters(host)

    def delta(link: str, key: str) -> int:
        return after[link][key] - before[link][key]

    # Requests reach the host on eth2 (router transmits on mgmt); before any VRF the
    # host's answers leave by its main default route, eth0 (router receives on svc).
    assert delta("mgmt", "tx_packets") > 0
    assert delta("svc", "rx_bytes") > 300000
    assert delta("mgmt", "rx_bytes") < 100000


def test_gateways_answer_ping_and_tcp(lab: Lab) -> None:
    host = lab.hosts[1]
    for gw4, gw6 in ((SVC_GW4, SVC_GW6), ("192.0.2.1", "2001:db8:52::1"), (MGMT_GW4, MGMT_GW6)):
        lab.check(host, f"ping -c1 -W3 {gw4} && ping -6 -c1 -W3 {gw6}")
        out = lab.check(host, f"socat -T3 - TCP:{gw4}:7 </dev/null")
        assert f"{host}-gw {gw4}" in out
        out = lab.check(host, f"socat -T3 - TCP6:[{gw6}]:7 </dev/null")
        answered_by = out.split()[1].strip("[]")
        assert ipaddress.ip_address(answered_by) == ipaddress.ip_address(gw6)
    assert lab.gw(host, "ping -c1 -W3 198.51.100.10").returncode == 0


def test_cut_really_cuts_and_heal_restores(lab: Lab) -> None:
    host = lab.hosts[-1]
    try:
        lab.cut(host)
        assert lab.status()["hosts"][host]["cut"] is True
        t0 = time.monotonic()
        r = lab.ssh(host, "true", timeout=60)
        assert r.returncode != 0
        assert time.monotonic() - t0 < 60
    finally:
        lab.heal(host)
    assert lab.check(host, "echo back").strip() == "back"


def test_diagnostics_reach_a_host_its_ssh_cannot(lab: Lab) -> None:
    host = lab.hosts[-1]
    try:
        lab.cut(host)
        text = lab.diagnostics()
    finally:
        lab.heal(host)
    assert "--- VM: running" in text
    assert "--- VM console" in text
    assert "--- VM kernel log" in text
    for name in lab.hosts:
        assert f"--- {name}: journalctl" in text
    # Read from inside the host, not over its (cut) management path.
    section = text.split(f"--- {host}: ip -br address\n", 1)[1].split("\n--- ", 1)[0]
    assert "203.0.113.10/25" in section, text


def test_a_vm_that_stops_answering_is_explained_by_its_kernel(lab: Lab) -> None:
    """The diagnostics of a VM whose ssh is dead still say what qemu and the guest's kernel
    see: here the VM is paused, so nothing in it answers until it runs again."""
    assert vm.monitor(lab.run, "stop") is not None
    try:
        text = lab.diagnostics()
    finally:
        vm.monitor(lab.run, "cont")
    assert "--- VM does not answer" in text, text
    assert "VM status: paused" in text, text
    # A paused VM takes no keys; running, its kernel prints what the keys ask for.
    report = vm.hang_report(lab.run)
    assert "VM status: running" in report, report
    assert "Show Blocked State" in report, report
    assert "Mem-Info" in report, report
    assert lab.check(lab.hosts[0], "echo back").strip() == "back"


def test_vrf_with_right_gateway_answers_through_eth2(lab: Lab) -> None:
    host = lab.hosts[-1]
    script = hands_off(lab, host) + (
        "sysctl -qw net.ipv4.tcp_l3mdev_accept=1; sleep 1; "
        "ip link add mgmt0 type vrf table 10; ip link set mgmt0 up; ip link set eth2 master mgmt0; "
        f"ip route add default via {MGMT_GW4} dev eth2 onlink table 10"
    )
    try:
        lab.check(host, DETACH.format(script=json.dumps(script)))
        time.sleep(4)
        # A session from after the change: the one from before keeps the main table's route.
        lab.new_connection(host)
        before = lab.counters(host)
        lab.check(host, "head -c 300000 /dev/urandom | base64")
        after = lab.counters(host)
        assert after["mgmt"]["rx_bytes"] - before["mgmt"]["rx_bytes"] > 300000
        assert after["svc"]["rx_bytes"] - before["svc"]["rx_bytes"] < 100000
    finally:
        lab.reboot(host)


def test_seed_broken_gives_the_blogs_state(lab: Lab) -> None:
    host = lab.hosts[1]
    try:
        lab.seed_broken(host)
        files = lab.check(host, "ls /etc/sysconfig/network-scripts").split()
        assert sorted(files) == sorted(
            [
                "ifcfg-eth0",
                "ifcfg-eth1",
                "ifcfg-eth2",
                "ifcfg-vrf.eth2",
                "route-vrf.eth2",
                "route6-vrf.eth2",
            ]
        )
        route = lab.check(host, "cat /etc/sysconfig/network-scripts/route-vrf.eth2").split()
        assert route == ["ADDRESS=0.0.0.0", "NETMASK=0.0.0.0", f"GATEWAY0={MGMT_GW4}"]
        assert "VRF=mgmt0" in lab.check(host, "cat /etc/sysconfig/network-scripts/ifcfg-vrf.eth2")
        v4 = {(r["gateway"], r["dev"]) for r in defaults(lab, host)}
        v6 = {(r["gateway"], r["dev"]) for r in defaults(lab, host, "-6")}
        assert v4 == {(SVC_GW4, "eth0"), (MGMT_GW4, "eth2")}
        assert v6 == {(SVC_GW6, "eth0"), (MGMT_GW6, "eth2")}
        assert lab.check(host, "ip -d link show type vrf").strip() == ""
    finally:
        lab.reset(host)
    assert len(defaults(lab, host)) == 1
