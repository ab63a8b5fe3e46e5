"""Services and commands inside the VRF, on the lab's real kernel and systemd.

The lab boots with cgroup v2 (AlmaLinux 9's default) unless LAB_CGROUP=v1 (AlmaLinux 8's
legacy hierarchies); scripts/test.sh runs this module once in each mode. The last host of
the lab that runs NetworkManager gets a TCP service of its own (lab-web) and the fleet file
lists it and sshd for mgmt0: both must then answer through the management segment only, be
named by `ip vrf identify`, and come back inside the VRF after a reboot.
"""

from __future__ import annotations

import os
import posixpath
from pathlib import Path

import pytest

from lab import client
from lab.pytest_fixture import Lab
from mgmt_vrf import paths

from .deploy import (
    ETH0_4,
    ETH2_4,
    MGMT_GW4,
    SVC_GW4,
    converge,
    fact,
    planned_commands,
    results,
    ssh_banner,
)
from .services import (
    ETH2_6,
    SERVICES,
    WEB_PORT,
    serve,
    vrf_of,
    wait_listening,
    web_answers,
)


@pytest.fixture(scope="module")
def cgroup_mode(lab: Lab) -> str:
    return str(lab.vm_config.get("cgroup", "v2"))


def last_host(lab: Lab) -> str:
    """The last host that runs NetworkManager (AlmaLinux's default), if one does."""
    return ([h for h in lab.hosts if lab.networkmanager(h)] or lab.hosts)[-1]


@pytest.fixture(scope="module")
def served(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """The last host, reset, with lab-web running, converged with sshd and lab-web listed."""
    host = last_host(lab)
    lab.reset(host)
    fleet, run = serve(lab, host, tmp_path_factory.mktemp("svc") / "fleet.toml")
    assert results(run) == (1, 0, 0)
    # Restarted once the VRF is built, sshd included (under the armed rollback).
    assert planned_commands(run, host)[-2:] == [f"$ systemctl restart {u}" for u in SERVICES]
    return host, fleet


def test_the_lab_boots_in_the_cgroup_mode_asked(lab: Lab, cgroup_mode: str) -> None:
    assert cgroup_mode == os.environ.get("LAB_CGROUP", "v2")
    host = last_host(lab)
    fs = lab.check(host, "stat -fc %T /sys/fs/cgroup").strip()
    assert fs == {"v2": "cgroup2fs", "v1": "tmpfs"}[cgroup_mode]
    # The combined fact says the same.
    state = fact(lab.fleet_file, host, "VrfHostState")
    assert state["cgroup"] == cgroup_mode


def test_listed_services_answer_only_through_the_vrf(lab: Lab, served: tuple[str, Path]) -> None:
    host, fleet = served
    for unit in SERVICES:
        assert vrf_of(lab, host, unit) == "mgmt0", unit
    wait_listening(lab, host)
    assert web_answers(lab, host, ETH2_4)
    assert web_answers(lab, host, ETH2_6)
    # From the service segment: refused (nothing listens in the default VRF).
    assert not web_answers(lab, host, ETH0_4)
    # sshd too: its banner through the management segment only.
    assert "SSH-2.0" in ssh_banner(lab, host, ETH2_4)
    assert "SSH-2.0" not in ssh_banner(lab, host, ETH0_4)
    # The drop-in wraps the unit's own command.
    dropin = lab.check(host, f"cat {paths.dropin('lab-web.service')}")
    assert (
        f"ExecStart={paths.EXEC_WRAPPER} mgmt0 /usr/bin/python3 -m http.server --bind :: "
        f"--directory /run/lab-web {WEB_PORT}" in dropin.splitlines()
    )
    assert results(converge(fleet, [host])) == (0, 0, 1)


def test_ad_hoc_command_runs_inside_the_vrf(
    lab: Lab, served: tuple[str, Path], cgroup_mode: str
) -> None:
    host, _ = served
    lab.new_connection(host)  # a session of the sshd that now runs inside mgmt0
    echo = f"curl -s -m 5 telnet://{MGMT_GW4}:7 </dev/null"
    # Where the gateway is unreachable the connection times out: 2 s is plenty on the lab.
    lost = echo.replace("-m 5", "-m 2")
    assert f"{host}-gw {MGMT_GW4}" in lab.check(host, f"mgmt-vrf-exec {echo}")
    assert f"{host}-gw {MGMT_GW4}" in lab.check(host, f"mgmt-vrf-exec mgmt0 {echo}")
    # A plain command (here one systemd starts, as any service's) stays in the default VRF,
    # where the management gateway is unreachable; `default` leaves the VRF explicitly.
    assert lab.ssh(host, f"systemd-run --quiet --wait --pipe {lost}").returncode != 0
    assert lab.ssh(host, f"mgmt-vrf-exec default {lost}").returncode != 0
    svc = f"curl -s -m 5 telnet://{SVC_GW4}:7 </dev/null"
    assert f"{host}-gw {SVC_GW4}" in lab.check(host, f"mgmt-vrf-exec default {svc}")
    # Where an ssh session runs depends on the cgroup mode: with cgroup v2, logind moves it
    # out of sshd's cgroup (and so out of the VRF); with v1 it stays in sshd's cgroup2 one.
    session = lab.check(host, "ip vrf identify $$").strip()
    assert session == {"v2": "", "v1": "mgmt0"}[cgroup_mode]
    plain = lab.ssh(host, echo if cgroup_mode == "v1" else lost)
    assert (plain.returncode == 0) == (cgroup_mode == "v1")
    # Not as root: a message that says so, nothing run.
    denied = lab.ssh(host, "setpriv --reuid=65534 --regid=65534 --clear-groups mgmt-vrf-exec true")
    assert denied.returncode == 1 and "needs root" in denied.stderr
    status = lab.check(host, "mgmt-vrf-exec --status")
    assert status.startswith("mgmt0:\n") and "python3" in status and "sshd" in status


def test_services_come_back_inside_the_vrf_after_reboot(lab: Lab, served: tuple[str, Path]) -> None:
    host, fleet = served
    lab.reboot(host)
    for unit in SERVICES:
        assert vrf_of(lab, host, unit) == "mgmt0", unit
    wait_listening(lab, host)
    assert web_answers(lab, host, ETH2_4)
    assert not web_answers(lab, host, ETH0_4)
    assert results(converge(fleet, [host])) == (0, 0, 1)


def vm(command: str) -> None:
    run = client.vm_command(command)
    assert run.returncode == 0, f"VM: {command}: exit {run.returncode}: {run.stderr}"


# What kernels before 5.15 log on cgroup v1 once a net_cls or net_prio cgroup is used.
SOCKET_MATCHING_OFF = (
    "cgroup: disabling cgroup2 socket matching due to net_prio or net_cls activation"
)


def test_socket_matching_turned_off_refuses_the_services_on_cgroup_v1(
    lab: Lab, served: tuple[str, Path], cgroup_mode: str
) -> None:
    """The lab's kernel (6.1) keeps cgroup2 socket matching on whatever net_cls does, so the
    test writes the older kernels' log line into the kernel log itself (/dev/kmsg, where the
    kernel writes it), beside a real net_cls cgroup with a classid, as a container runtime
    on cgroup v1 leaves. On cgroup v1 the deploy then refuses the host before any change,
    naming the services' key, and mgmt-vrf-exec refuses to run a command it cannot put in
    the VRF; on cgroup v2 neither applies, and nothing changes."""
    host, fleet = served
    # The host's own view of the v1 hierarchies is read-only: the cgroup is made from the
    # VM, whose kernel (and cgroups) every lab host shares, as a runtime's would be.
    net_cls = "/sys/fs/cgroup/net_cls/lab-runtime"
    setup = f"echo '<6>{SOCKET_MATCHING_OFF}' > /dev/kmsg"
    if cgroup_mode == "v1":
        setup += f" && mkdir -p {net_cls} && echo 0x100001 > {net_cls}/net_cls.classid"
    vm(setup)
    try:
        state = fact(fleet, host, "VrfHostState")
        run = converge(fleet, [host])
        out = run.stdout + run.stderr
        exec_run = lab.ssh(host, "mgmt-vrf-exec true")
        if cgroup_mode == "v2":
            assert state["kernel"]["socket_matching_off"] is None
            assert results(run) == (0, 0, 1), out[-4000:]
            assert exec_run.returncode == 0, exec_run.stderr
            return
        assert SOCKET_MATCHING_OFF in state["kernel"]["socket_matching_off"]
        assert state["kernel"]["net_cgroups"]["net_cls"] >= 2
        assert run.returncode != 0, out[-4000:]
        assert "host state does not fit the fleet file, nothing was changed" in out
        assert (
            f"host {host}: vrfs.mgmt0.services: the kernel has turned cgroup2 socket matching "
            "off (its log says: "
        ) in out, out[-4000:]
        assert "would start sshd.service, lab-web.service in the default VRF" in out
        assert exec_run.returncode == 1
        assert "the kernel turned cgroup2 socket matching off" in exec_run.stderr
        # The services already in the VRF stay where they are.
        for unit in SERVICES:
            assert vrf_of(lab, host, unit) == "mgmt0", unit
    finally:
        vm(f"dmesg -C; [ ! -d {net_cls} ] || rmdir {net_cls}")
    assert results(converge(fleet, [host])) == (0, 0, 1)


def dns_fleet(fleet: Path, out: Path, nameservers: bool) -> Path:
    text = fleet.read_text()
    vrf = 'ports = ["eth2"]\n'
    assert vrf in text
    if nameservers:
        text = text.replace(vrf, vrf + f'nameservers = ["{MGMT_GW4}"]\nsearch = ["example.net"]\n')
    out.write_text(text)
    return out


# Outside every VRF: on cgroup v1 an ssh session stays inside sshd's VRF.
OUTSIDE = "mgmt-vrf-exec default getent ahostsv4 where"


def first_v4(answer: str) -> str:
    """The first address of `getent ahostsv4`."""
    return answer.split()[0] if answer.strip() else ""


def main_pid(lab: Lab, host: str, unit: str) -> str:
    return lab.check(host, f"systemctl show -p MainPID --value {unit}").strip()


def web_resolves(lab: Lab, host: str) -> str:
    """The lab's name, resolved inside lab-web's own mount namespace and VRF."""
    pid = main_pid(lab, host, "lab-web.service")
    return first_v4(lab.check(host, f"nsenter -t {pid} -m ip vrf exec mgmt0 getent ahostsv4 where"))


def test_names_resolve_inside_the_vrf_with_its_own_nameservers(
    lab: Lab, served: tuple[str, Path], tmp_path: Path
) -> None:
    """Each side of the host asks its own nameserver: the management gateway's dnsmasq is
    reached only through the VRF, the service gateway's only through the main table, and
    each answers the name with its own address. The host's resolv.conf is replaced the way
    NetworkManager writes it (a new file renamed over the old one), which unmounts the
    VRF's copy in every namespace: the path unit mounts it again."""
    host, fleet = served
    replace_resolv = (
        f"printf 'search example.net\\nnameserver {SVC_GW4}\\n' > /etc/resolv.conf.lab && "
        "mv /etc/resolv.conf.lab /etc/resolv.conf"
    )
    lab.check(host, replace_resolv)
    with_dns = dns_fleet(fleet, tmp_path / "dns.toml", nameservers=True)
    run = converge(with_dns, [host])
    assert results(run) == (1, 0, 0), (run.stdout + run.stderr)[-4000:]
    # lab-web starts again with the VRF's resolver; sshd keeps the host's, for its sessions.
    commands = planned_commands(run, host)
    assert "$ systemctl restart lab-web.service" in commands
    assert "$ systemctl restart sshd.service" not in commands
    assert first_v4(lab.check(host, OUTSIDE)) == SVC_GW4
    assert first_v4(lab.check(host, "mgmt-vrf-exec getent ahostsv4 where")) == MGMT_GW4
    assert web_resolves(lab, host) == MGMT_GW4
    sshd = main_pid(lab, host, "sshd.service")
    assert f"nameserver {SVC_GW4}" in lab.check(host, f"cat /proc/{sshd}/root/etc/resolv.conf")
    # From inside lab-web's namespace, `default` goes back to the host's resolver.
    pid = main_pid(lab, host, "lab-web.service")
    inside = f"nsenter -t {pid} -m mgmt-vrf-exec"
    assert first_v4(lab.check(host, f"{inside} default getent ahostsv4 where")) == SVC_GW4
    assert first_v4(lab.check(host, f"{inside} mgmt0 getent ahostsv4 where")) == MGMT_GW4
    # The host's resolver replaced under a running service: its copy is mounted again.
    lab.check(host, replace_resolv)
    pid = main_pid(lab, host, "lab-web.service")
    remounted = f"grep -q 'nameserver {MGMT_GW4}' /proc/{pid}/root/etc/resolv.conf"
    wait = f"for i in $(seq 50); do {remounted} && exit 0; sleep 0.2; done; exit 1"
    assert lab.ssh(host, wait).returncode == 0
    journal = lab.check(host, "journalctl -o cat -u mgmt-vrf-resolv.service")
    assert f"mgmt0: resolv.conf mounted again for process {pid}" in journal, journal
    assert web_resolves(lab, host) == MGMT_GW4
    assert first_v4(lab.check(host, OUTSIDE)) == SVC_GW4
    assert results(converge(with_dns, [host])) == (0, 0, 1)
    lab.reboot(host)
    wait_listening(lab, host)
    assert web_resolves(lab, host) == MGMT_GW4
    path_unit = posixpath.basename(paths.RESOLV_PATH_UNIT)
    assert lab.check(host, f"systemctl is-active {path_unit}").strip() == "active"
    # Without nameservers: their files go, and lab-web resolves with the host's again.
    run = converge(fleet, [host])
    assert results(run) == (1, 0, 0), (run.stdout + run.stderr)[-4000:]
    gone = lab.ssh(host, f"ls {paths.resolv_conf('mgmt0')} {paths.RESOLV_PATH_UNIT}")
    assert gone.returncode != 0
    pid = main_pid(lab, host, "lab-web.service")
    assert f"nameserver {SVC_GW4}" in lab.check(host, f"cat /proc/{pid}/root/etc/resolv.conf")
    assert results(converge(fleet, [host])) == (0, 0, 1)
