"""The rollback script a host runs by itself, and the comparison that proves it worked.

The scripts' effect on a real VRF kernel is proven in tests/e2e/test_rollback_lab.py; here
their content is checked line by line against the state they must restore.
"""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import replace

from mgmt_vrf import paths
from mgmt_vrf.apply import apply_script
from mgmt_vrf.hoststate import MAIN_TABLE, FileState, Link, RouteEntry, RuleEntry
from mgmt_vrf.plan import plan
from mgmt_vrf.rollback import differences, rollback_script, touched_paths
from mgmt_vrf.steps import SELECTING_WORDS

from .builders import (
    BLOG_VRF_PROFILE,
    MGMT_GW4,
    SERVICE_GW4,
    broken_state,
    clean_state,
    converged_state,
    seed_spec,
)


def lines_of(script: str) -> list[str]:
    return [line.removesuffix(" 2>/dev/null") for line in script.splitlines()]


def test_script_is_valid_sh_and_runs_at_most_once() -> None:
    spec = seed_spec()
    before = broken_state()
    script = rollback_script(spec, before, plan(spec, before))
    assert subprocess.run(["sh", "-n"], input=script, text=True).returncode == 0
    lines = lines_of(script)
    # Claiming the armed marker comes before anything is touched.
    claim = lines.index('mv "$run/armed" "$run/rolling-back" 2>/dev/null || exit 0')
    assert claim < min(i for i, line in enumerate(lines) if line.startswith(("cp ", "ip ", "if ")))
    assert lines[-2] == "echo 'done' > \"$run/rollback.status\""


def test_a_host_name_cannot_end_the_scripts_comment_line() -> None:
    # Validation refuses such a name (test_fleet_file.py); the scripts do not rely on it.
    spec = replace(seed_spec(), name="alma1\ntouch /tmp/pwned #")
    before = broken_state()
    result = plan(spec, before)
    for script in (apply_script(result, 120), rollback_script(spec, before, result)):
        assert not [line for line in script.splitlines() if line.startswith("touch")]
        assert "# mgmt-vrf " in script and "for alma1\\ntouch /tmp/pwned #: " in script


def test_clean_host_gets_its_vrf_deleted_and_defaults_and_sysctls_back() -> None:
    spec = seed_spec()
    before = clean_state()
    lines = lines_of(rollback_script(spec, before, plan(spec, before)))
    assert "ip link set dev eth2 nomaster" in lines
    assert "ip link del dev mgmt0" in lines
    assert "ip -4 route flush table 10" in lines and "ip -6 route flush table 10" in lines
    # eth2 had no master: it is not put back into any VRF.
    assert not any("master" in line and "nomaster" not in line for line in lines)
    assert "ip link set dev eth2 up" in lines
    assert "ip addr replace 203.0.113.10/24 dev eth2" in lines
    assert "ip addr replace 2001:db8:1::10/64 dev eth2" in lines
    # All main defaults go, then exactly the old ones come back.
    flush = lines.index(
        f"ip -o -4 route show table main exact 0.0.0.0/0 | grep -v nexthop | {SELECTING_WORDS} "
        "| while read -r line; do ip -4 route del $line table main; done"
    )
    readd = lines.index(
        f"ip -4 route add default via {SERVICE_GW4} dev eth0 metric 100 table {MAIN_TABLE}"
    )
    assert flush < readd
    assert "sysctl -q -w net.ipv4.tcp_l3mdev_accept=0" in lines
    assert "sysctl -q -w net/ipv6/conf/eth2/keep_addr_on_down=0" in lines
    # No VRF before: the l3mdev rules the kernel added with mgmt0 go too.
    assert "ip -4 rule del pref 1000 l3mdev" in lines
    assert "ip -6 rule del pref 1000 l3mdev" in lines


def test_broken_host_gets_the_blogs_files_and_stray_defaults_back() -> None:
    spec = seed_spec()
    before = broken_state()
    result = plan(spec, before)
    lines = lines_of(rollback_script(spec, before, result))
    saved = paths.SAVED_DIR + BLOG_VRF_PROFILE
    restore = (
        f"if [ -e {saved} ]; then mkdir -p {paths.NETWORK_SCRIPTS} && cp -p {saved} "
        f"{BLOG_VRF_PROFILE}; else rm -f {BLOG_VRF_PROFILE}; fi"
    )
    assert restore in lines
    assert set(touched_paths(result)) >= {BLOG_VRF_PROFILE, paths.ifcfg("eth2"), paths.UNIT}
    assert f"ip -4 route add default via {MGMT_GW4} dev eth2 metric 102 table 254" in lines
    assert "ip -6 route add default via 2001:db8:1::1 dev eth2 metric 1024 table 254" in lines
    # Files come back before the network moves: a host that dies mid-way boots the old way.
    assert lines.index(restore) < lines.index("ip link set dev eth2 nomaster")
    assert f"rm -f {paths.UNIT_WANTS_LINK}" in lines
    assert "nmcli connection reload" in lines and "systemctl daemon-reload" in lines


def test_host_that_had_the_vrf_gets_it_back_on_its_old_table() -> None:
    spec = seed_spec()
    before = converged_state()
    moved = replace(spec, vrfs=(replace(spec.vrfs[0], table=11),))
    lines = lines_of(rollback_script(moved, before, plan(moved, before)))
    assert (
        "ip -d link show dev mgmt0 | grep -Eq 'vrf table 10( |$)' || "
        "{ ip link del dev mgmt0; ip link add dev mgmt0 type vrf table 10; }"
    ) in lines
    assert "ip -4 route flush table 10" in lines and "ip -4 route flush table 11" in lines
    assert "ip link set dev eth2 master mgmt0" in lines
    assert f"ip -4 route add default via {MGMT_GW4} dev eth2 table 10" in lines
    assert "ip -4 route add unreachable default metric 4278198272 table 10" in lines
    # Connected routes come back by themselves when eth2 rejoins mgmt0.
    assert not any("203.0.113.0/24" in line for line in lines)
    assert not any("rule del" in line for line in lines)


def test_file_only_change_leaves_the_network_alone() -> None:
    spec = seed_spec()
    before = converged_state(ifcfg=True)
    path = paths.ifcfg("eth2")
    edited = replace(
        before, files={**before.files, path: FileState(path, b"DEVICE=eth2\nVRF=mgmt0\n")}
    )
    result = plan(spec, edited)
    assert touched_paths(result) == [path]
    lines = lines_of(rollback_script(spec, edited, result))
    assert not any(line.startswith(("ip ", "sysctl ", "while ")) for line in lines)


def test_differences_are_empty_for_equal_states_and_name_what_changed() -> None:
    spec = seed_spec()
    assert differences(spec, clean_state(), clean_state()) == []
    found = differences(spec, clean_state(), converged_state(), [paths.UNIT])
    text = "\n".join(found)
    # In words a network engineer reads at a glance, not as tuples.
    assert "device mgmt0: was missing, now a vrf device, table 10, in no VRF, up, no address" in (
        text
    )
    assert "device eth2: was a NIC, in no VRF, up, addresses " in text
    assert ", now a NIC, in mgmt0, up, addresses 2001:db8:1::10/64 203.0.113.10/24" in text
    assert f"route table 10 4 unicast default via {MGMT_GW4} dev eth2" in text
    assert "sysctl net.ipv4.tcp_l3mdev_accept: was 0, now 1" in text
    assert f"file {paths.UNIT}: was absent, now sha256 " in text


def test_differences_see_a_leftover_l3mdev_rule_and_a_stray_default() -> None:
    spec = seed_spec()
    before = clean_state()
    after = replace(
        before,
        rules=(RuleEntry(4, 1000, None, l3mdev=True),),
        routes=before.routes
        + (RouteEntry(4, MAIN_TABLE, "default", gateway=MGMT_GW4, dev="eth2", metric=102),),
        links={**before.links, "eth2": replace(before.links["eth2"], up=False)},
    )
    found = differences(spec, before, after)
    assert "rule 4 pref 1000 table None l3mdev True: new" in found
    assert any(f"default via {MGMT_GW4} dev eth2 metric 102" in f and "new" in f for f in found)
    assert any(f.startswith("device eth2: ") for f in found)
    assert (
        differences(spec, before, replace(before, links={**before.links, "x": Link("x", 9)})) == []
    )


def test_networkmanager_brings_back_the_profile_it_had_active_on_the_port() -> None:
    spec = seed_spec()
    result = plan(spec, broken_state())  # NetworkManager runs there: it activates eth2
    apply_lines = apply_script(result, 120).splitlines()
    record = next(i for i, line in enumerate(apply_lines) if paths.NM_ACTIVE in line)
    first_network = next(i for i, line in enumerate(apply_lines) if line.startswith("nmcli --wait"))
    assert record < first_network
    script = rollback_script(spec, broken_state(), result)
    (line,) = [line for line in script.splitlines() if "connection up uuid" in line]
    # The UUID it had on eth2, read from what the apply recorded; none recorded, no call.
    active = (
        "3a73717e-65ab-93e8-b518-24f5af32dc0d:eth2\n24ce7c5a-2707-cdbc-c4de-c3a0edd68a9d:eth1\n"
    )
    # A stand-in nmcli that knows every UUID but "unknown".
    fake = 'nmcli() { echo "nmcli $*"; [ "$6" != unknown ]; }\n'
    gone = "unknown:eth2\n"
    cases = ((active, "3a73717e-65ab-93e8-b518-24f5af32dc0d"), ("", None), (gone, "unknown"))
    for recorded, expected in cases:
        with tempfile.TemporaryDirectory() as d:
            path = f"{d}/nm-active"
            with open(path, "w") as f:
                f.write(recorded)
            out = subprocess.run(
                ["sh", "-c", fake + line.replace(paths.NM_ACTIVE, path)],
                capture_output=True, text=True,
            ).stdout  # fmt: skip
        calls = [f"nmcli --wait 30 connection up uuid {expected}"] if expected else []
        if expected == "unknown":  # not there any more: the port's best profile instead
            calls.append("nmcli --wait 30 device connect eth2")
        assert out.splitlines() == calls
    assert script.index("connection up uuid") > script.index("nmcli connection reload")


def test_without_networkmanager_activations_nothing_is_recorded_or_reactivated() -> None:
    state = broken_state()
    state = replace(state, network_manager=replace(state.network_manager, running=False))
    result = plan(seed_spec(), state)
    assert paths.NM_ACTIVE not in apply_script(result, 120)
    assert "connection up" not in rollback_script(seed_spec(), state, result)


def test_the_rollback_stops_both_timers_whichever_started_it() -> None:
    spec = seed_spec()
    state = broken_state()
    script = rollback_script(spec, state, plan(spec, state))
    lines = script.splitlines()
    stop = next(i for i, line in enumerate(lines) if "systemctl stop" in line)
    assert "mgmt-vrf-rollback.timer mgmt-vrf-rollback-window.timer" in lines[stop]
    # Only once the run is claimed: a confirmation that won leaves the timers to it.
    assert stop > next(i for i, line in enumerate(lines) if "rolling-back" in line)
