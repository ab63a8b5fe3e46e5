"""Services inside a VRF: the unit's command, the drop-in, the checks and the restarts."""

from __future__ import annotations

import subprocess
from dataclasses import replace
from ipaddress import IPv4Interface
from pathlib import Path

import pytest

from mgmt_vrf import paths
from mgmt_vrf.hoststate import FileState, HostState, UnitState
from mgmt_vrf.model import HostSpec
from mgmt_vrf.plan import WriteFile, plan
from mgmt_vrf.preflight import host_problems
from mgmt_vrf.probe import parse_probe_output
from mgmt_vrf.rollback import differences, rollback_script
from mgmt_vrf.services import exec_start, unit_problems, wrap

from .builders import converged_state, seed_spec, summary

SSHD = "/lib/systemd/system/ssh.service"
# The lab's (Debian's) sshd unit, as `systemctl cat` shows it on a lab host.
SSHD_UNIT = """[Unit]
Description=OpenBSD Secure Shell server
After=network.target auditd.service

[Service]
EnvironmentFile=-/etc/default/ssh
ExecStartPre=/usr/sbin/sshd -t
ExecStart=/usr/sbin/sshd -D $SSHD_OPTS
ExecReload=/bin/kill -HUP $MAINPID
KillMode=process
Type=notify

[Install]
WantedBy=multi-user.target
Alias=sshd.service
"""
# `systemctl show` of an unsandboxed unit (the lab's ssh.service, v2 boot).
OPEN = {
    "User": "",
    "DynamicUser": "no",
    "PrivateNetwork": "no",
    "NetworkNamespacePath": "",
    "ProtectControlGroups": "no",
    "ProtectSystem": "no",
    "RestrictAddressFamilies": "~",
    "SystemCallFilter": "~",
    "CapabilityBoundingSet": "cap_chown cap_net_admin cap_sys_admin cap_bpf",
}


def sshd(**changes: object) -> UnitState:
    unit = UnitState(
        name="sshd.service",
        id="ssh.service",
        load_state="loaded",
        active_state="active",
        main_pid=41,
        cgroup="/system.slice/ssh.service",
        fragment_path=SSHD,
        properties=dict(OPEN),
    )
    return replace(unit, **changes)  # type: ignore[arg-type]


def with_services(*units: str):  # type: ignore[no-untyped-def]
    spec = seed_spec()
    return replace(spec, vrfs=(replace(spec.vrfs[0], services=units),))


def host(state: HostState, *units: UnitState, files: dict[str, str] | None = None) -> HostState:
    return replace(
        state,
        systemd_running=True,
        cgroup="v2",
        units={u.name: u for u in units},
        unit_files={SSHD: SSHD_UNIT, **(files or {})},
    )


# --- the unit's own command ------------------------------------------------------------------


def test_exec_start_follows_resets_continuations_and_skips_our_dropin() -> None:
    override = "/etc/systemd/system/sshd.service.d/override.conf"
    ours = paths.dropin("sshd.service")
    unit = sshd(dropin_paths=(override, ours))
    files = {
        SSHD: SSHD_UNIT,
        override: "# local\n[Service]\nExecStart=\nExecStart=/usr/sbin/sshd -D \\\n  -o X=1\n"
        "; ExecStart=/commented\n[Install]\nExecStart=/not/a/service/key\n",
        ours: "[Service]\nExecStart=\nExecStart=/usr/local/sbin/mgmt-vrf-exec mgmt0 x\n",
    }
    assert exec_start(unit, files) == ["/usr/sbin/sshd -D  -o X=1"]
    assert exec_start(sshd(), {SSHD: SSHD_UNIT}) == ["/usr/sbin/sshd -D $SSHD_OPTS"]
    # A file the probe did not print: unknown, not empty.
    assert exec_start(unit, {SSHD: SSHD_UNIT}) is None


@pytest.mark.parametrize(
    ("command", "wrapped"),
    [
        ("/usr/bin/app -c /etc/app.conf", "/usr/local/sbin/mgmt-vrf-exec mgmt0 /usr/bin/app -c "),
        ("-/usr/bin/app", "-/usr/local/sbin/mgmt-vrf-exec mgmt0 /usr/bin/app"),
        ("+!/usr/bin/app %i", "+!/usr/local/sbin/mgmt-vrf-exec mgmt0 /usr/bin/app %i"),
    ],
)
def test_wrap_keeps_the_prefixes_in_front(command: str, wrapped: str) -> None:
    unit = sshd(name="app.service", id="app.service")
    assert wrap(command, "mgmt0", unit).startswith(wrapped)


def test_sshd_starts_outside_a_missing_vrf_rather_than_not_at_all() -> None:
    assert wrap("/usr/sbin/sshd -D", "mgmt0", sshd()) == (
        "/usr/local/sbin/mgmt-vrf-exec --outside-if-missing mgmt0 /usr/sbin/sshd -D"
    )


# --- checks before any change ----------------------------------------------------------------


def test_a_runnable_service_passes() -> None:
    assert unit_problems(with_services("sshd.service"), host(converged_state(), sshd())) == []


def test_missing_masked_and_commandless_units_are_refused() -> None:
    spec = with_services("no-such.service", "masked.service", "empty.service")
    empty = "/etc/systemd/system/empty.service"
    state = host(
        converged_state(),
        UnitState("no-such.service", "no-such.service", "not-found", "inactive"),
        UnitState("masked.service", "masked.service", "masked", "inactive"),
        sshd(name="empty.service", id="empty.service", fragment_path=empty),
        files={empty: "[Service]\nType=oneshot\n"},
    )
    problems = unit_problems(spec, state)
    assert problems == [
        "host alma1: vrfs.mgmt0.services: no-such.service does not exist on the host "
        "(systemctl cat no-such.service finds nothing); install it first, or remove it from "
        "the list",
        "host alma1: vrfs.mgmt0.services: masked.service is masked on the host; unmask or fix "
        "it, or remove it from the list",
        "host alma1: vrfs.mgmt0.services: empty.service has no ExecStart= (nothing of its own "
        "to start inside the VRF); remove it from the list",
    ]
    # The preflight reports them with the rest, before anything changes.
    assert set(problems) <= set(host_problems(spec, state))


def test_services_need_systemd() -> None:
    spec = with_services("sshd.service")
    problems = unit_problems(spec, replace(host(converged_state(), sshd()), systemd_running=False))
    assert problems == [
        "host alma1: vrfs.mgmt0.services: sshd.service is listed, but systemd does not run on "
        "the host, so nothing can start it inside the VRF; remove the services list"
    ]


# systemd-timesyncd as `systemctl show` prints it on the lab's hosts (Debian 12): hardened
# the way AlmaLinux 9's chronyd is.
TIMESYNCD = {
    "User": "systemd-timesync",
    "DynamicUser": "no",
    "PrivateNetwork": "no",
    "ProtectControlGroups": "yes",
    "ProtectSystem": "strict",
    "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    "CapabilityBoundingSet": "cap_sys_time",
    "SystemCallFilter": "_llseek accept accept4 bind brk",
}


def test_a_hardened_unit_gets_every_reason_and_what_to_do() -> None:
    unit = sshd(
        name="systemd-timesyncd.service",
        id="systemd-timesyncd.service",
        properties=TIMESYNCD,
    )
    problems = unit_problems(
        with_services("systemd-timesyncd.service"), host(converged_state(), unit)
    )
    key = "host alma1: vrfs.mgmt0.services: systemd-timesyncd.service"
    assert len(problems) == 5 and all(p.startswith(key) for p in problems)
    assert problems[0].startswith(
        f"{key} runs as User=systemd-timesync, and ip vrf exec needs root"
    )
    assert "RestrictAddressFamilies= leaves out AF_NETLINK" in problems[1]
    assert "drops CAP_SYS_ADMIN and CAP_NET_ADMIN" in problems[2]
    assert "SystemCallFilter= blocks bpf" in problems[3]
    assert "ProtectControlGroups=yes" in problems[4]


def test_the_cgroup_mode_decides_which_sandboxing_breaks_ip_vrf_exec() -> None:
    unit = sshd(properties={**OPEN, "ProtectControlGroups": "yes", "ProtectSystem": "strict"})
    spec = with_services("sshd.service")
    v2 = unit_problems(spec, host(converged_state(), unit))
    assert len(v2) == 1 and "ProtectControlGroups=yes" in v2[0]
    v1 = unit_problems(spec, replace(host(converged_state(), unit), cgroup="v1"))
    assert len(v1) == 1 and "ProtectSystem=strict makes /run read-only" in v1[0]
    # An allow-list filter without mount breaks it on v1 only (ip mounts cgroup2 there).
    filtered = sshd(properties={**OPEN, "SystemCallFilter": "bpf read write"})
    assert unit_problems(spec, host(converged_state(), filtered)) == []
    assert (
        "blocks mount"
        in unit_problems(spec, replace(host(converged_state(), filtered), cgroup="v1"))[0]
    )


def test_chronyd_is_pointed_at_its_own_binddevice() -> None:
    unit = sshd(name="chronyd.service", id="chronyd.service", properties=TIMESYNCD)
    problems = unit_problems(with_services("chronyd.service"), host(converged_state(), unit))
    assert "binddevice" in problems[-1]


# --- plan ------------------------------------------------------------------------------------


def _dropin(state: HostState, spec) -> str:  # type: ignore[no-untyped-def]
    (write,) = [
        c for c in plan(spec, state).changes if isinstance(c, WriteFile) and "zz-" in c.path
    ]
    return write.content


def test_a_listed_service_is_wrapped_then_restarted_once_the_vrf_is_built() -> None:
    spec = with_services("sshd.service")
    state = host(converged_state(), sshd())
    result = plan(spec, state)
    assert summary(result) == [
        f"write {paths.dropin('sshd.service')}",
        "systemctl daemon-reload",
        "systemctl restart sshd.service",
    ]
    content = _dropin(state, spec)
    assert "[Unit]\nAfter=mgmt-vrf.service\n" in content
    assert "Wants=" not in content  # a restart must not pull the boot unit in
    assert content.endswith(
        "[Service]\nExecStart=\nExecStart=/usr/local/sbin/mgmt-vrf-exec --outside-if-missing "
        "mgmt0 /usr/sbin/sshd -D $SSHD_OPTS\n"
    )


def _converged_with(spec, unit: UnitState) -> HostState:  # type: ignore[no-untyped-def]
    state = host(converged_state(), unit)
    content = _dropin(state, spec)
    path = paths.dropin(unit.name)
    files = {**state.files, path: FileState(path, content.encode())}
    return replace(state, files=files)


def test_converged_service_plans_nothing() -> None:
    spec = with_services("sshd.service")
    unit = sshd(cgroup="/system.slice/ssh.service/vrf/mgmt0")
    assert plan(spec, _converged_with(spec, unit)).converged


def test_service_outside_its_vrf_or_failed_is_restarted_and_a_stopped_one_left() -> None:
    spec = with_services("sshd.service")
    outside = _converged_with(spec, sshd())
    assert summary(plan(spec, outside)) == ["systemctl restart sshd.service"]
    failed = _converged_with(spec, sshd(active_state="failed", main_pid=0, cgroup=None))
    assert summary(plan(spec, failed)) == ["systemctl restart sshd.service"]
    stopped = _converged_with(spec, sshd(active_state="inactive", main_pid=0, cgroup=None))
    assert plan(spec, stopped).converged


def test_a_recreated_vrf_restarts_its_services_after_the_new_device() -> None:
    spec = with_services("sshd.service")
    state = _converged_with(spec, sshd(cgroup="/vrf/mgmt0"))
    links = dict(state.links)
    links["mgmt0"] = replace(links["mgmt0"], vrf_table=11)
    done = summary(plan(spec, replace(state, links=links)))
    assert done.index("ip link add dev mgmt0 type vrf table 10") < done.index(
        "systemctl restart sshd.service"
    )


def test_unlisted_service_loses_its_dropin_and_restarts_outside() -> None:
    listed = with_services("sshd.service")
    state = _converged_with(listed, sshd(cgroup="/system.slice/ssh.service/vrf/mgmt0"))
    result = plan(seed_spec(), state)
    assert summary(result) == [
        f"remove {paths.dropin('sshd.service')}",
        "systemctl daemon-reload",
        "systemctl restart sshd.service",
    ]
    assert result.changes[-1].why == "sshd.service restarts outside every VRF (its drop-in changed)"
    # Once outside, nothing is left to do.
    files = {k: v for k, v in state.files.items() if k != paths.dropin("sshd.service")}
    after = replace(state, files=files, units={"sshd.service": sshd()})
    assert plan(seed_spec(), after).converged


def test_rollback_restarts_what_the_change_restarted_as_it_was() -> None:
    spec = with_services("sshd.service", "app.service")
    app = sshd(name="app.service", id="app.service", active_state="failed", main_pid=0)
    before = host(converged_state(), sshd(), app)
    result = plan(spec, before)
    script = rollback_script(spec, before, result)
    lines = script.splitlines()
    assert "systemctl restart sshd.service" in lines
    assert "systemctl try-restart app.service" in lines
    # After the files are back and systemd has reread them.
    assert lines.index("systemctl daemon-reload") < lines.index("systemctl restart sshd.service")
    moved = replace(before, units={**before.units, "sshd.service": sshd(cgroup="/vrf/mgmt0")})
    assert differences(spec, before, moved, units=["sshd.service"]) == [
        "service sshd.service: was running in the default VRF, now running in VRF mgmt0"
    ]


# --- from real runs (tests/fixtures/probe/lab-services-v*.txt) ----------------------------------

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "probe"


def _lab_state(mode: str) -> HostState:
    lines = (FIXTURES / f"lab-services-{mode}.txt").read_text().splitlines()
    return parse_probe_output(lines)


def _lab_spec(*units: str) -> HostSpec:
    spec = seed_spec()
    vrf = replace(spec.vrfs[0], services=units)
    # The lab's eth2 is a /25.
    eth2 = replace(spec.interfaces[2], ipv4=IPv4Interface("203.0.113.10/25"))
    return replace(spec, interfaces=(*spec.interfaces[:2], eth2), vrfs=(vrf,))


@pytest.mark.parametrize(("mode", "cgroup"), [("v1", "/vrf/mgmt0"), ("v2", None)])
def test_probe_reads_units_as_systemd_shows_them(mode: str, cgroup: str | None) -> None:
    state = _lab_state(mode)
    assert state.cgroup == mode and not state.probe_warnings
    sshd_unit = state.units["sshd.service"]
    assert (sshd_unit.id, sshd_unit.load_state, sshd_unit.active_state) == (
        "ssh.service",
        "loaded",
        "active",
    )
    assert sshd_unit.vrf == "mgmt0" and state.units["lab-web.service"].vrf == "mgmt0"
    web_cgroup = state.units["lab-web.service"].cgroup
    assert web_cgroup == (cgroup or "/system.slice/lab-web.service/vrf/mgmt0")
    assert sshd_unit.dropin_paths == (paths.dropin("sshd.service"),)
    assert exec_start(sshd_unit, state.unit_files) == ["/usr/sbin/sshd -D $SSHD_OPTS"]
    assert state.units["no-such.service"].load_state == "not-found"
    assert state.units["systemd-timesyncd.service"].properties["User"] == "systemd-timesync"


@pytest.mark.parametrize("mode", ["v1", "v2"])
def test_the_lab_host_the_deploy_converged_plans_nothing(mode: str) -> None:
    """The drop-ins on the lab host are exactly what the planner renders."""
    state = _lab_state(mode)
    spec = _lab_spec("sshd.service", "lab-web.service")
    assert unit_problems(spec, state) == []
    result = plan(spec, state)
    # These captures predate the quoted mgmt-vrf-exec of issue #18: the wrapper itself is
    # rewritten now, and what this test checks is the drop-ins and the restarts.
    assert [
        c.why
        for c in result.changes
        if "service" in c.why and getattr(c, "path", None) != paths.EXEC_WRAPPER
    ] == []


def test_real_hardened_and_missing_units_are_refused() -> None:
    state = _lab_state("v2")
    spec = _lab_spec("sshd.service", "systemd-timesyncd.service", "no-such.service")
    problems = unit_problems(spec, state)
    key = "host alma1: vrfs.mgmt0.services"
    assert any(p.startswith(f"{key}: systemd-timesyncd.service runs as User=") for p in problems)
    assert any("systemd-timesyncd.service: ProtectControlGroups=yes" in p for p in problems)
    assert any(p.startswith(f"{key}: no-such.service does not exist") for p in problems)
    assert not any("sshd.service" in p for p in problems)


# --- mgmt-vrf-exec on this machine (no VRF device here, so every VRF is missing; as root,
# as the tests run: the wrapper refuses anyone else first) ---------------------------------


def _run_wrapper(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    from mgmt_vrf.render import exec_wrapper

    script = tmp_path / "mgmt-vrf-exec"
    script.write_text(exec_wrapper(with_services("sshd.service")))
    return subprocess.run(["sh", str(script), *args], capture_output=True, text=True, timeout=30)


def test_wrapper_refuses_a_missing_vrf_and_says_where_to_look(tmp_path: Path) -> None:
    run = _run_wrapper(tmp_path, "echo", "ran")
    assert run.returncode == 1 and run.stdout == ""
    assert "VRF mgmt0 does not exist on this host" in run.stderr
    assert "journalctl -u mgmt-vrf.service" in run.stderr


def test_sshd_runs_outside_a_missing_vrf_and_says_so(tmp_path: Path) -> None:
    run = _run_wrapper(tmp_path, "--outside-if-missing", "mgmt0", "echo", "ran")
    assert run.returncode == 0 and run.stdout == "ran\n"
    assert "starts OUTSIDE it to keep the host reachable" in run.stderr


def test_wrapper_usage_without_a_command(tmp_path: Path) -> None:
    run = _run_wrapper(tmp_path)
    assert run.returncode == 2 and run.stderr.startswith("usage: mgmt-vrf-exec [VRF] COMMAND")
