"""The apply script and the start / wait / confirm commands, run here by a real sh.

The snippets take the run directory as a parameter, so they run against a scratch directory;
where systemd does not run (as here) the rollback is armed with a sleeping shell.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import time
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from mgmt_vrf import apply, paths
from mgmt_vrf.fleet_file import parse_fleet
from mgmt_vrf.host_commands import Ip
from mgmt_vrf.hoststate import Link, RouteEntry
from mgmt_vrf.plan import RemoveFile, RunCommand, WriteFile, plan
from mgmt_vrf.rollback import STOP_APPLY, rollback_script

from .builders import broken_state, clean_state, converged_state, seed_spec


def sh(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=30)


def start(run: Path, apply_text: str, rollback_text: str, timeout: int = 2):
    """The start command, with `timeout` seconds to the hard bound, fed as pyinfra's ssh
    connector feeds it (a newline added to stdin when it has none)."""
    stdin = apply_text + rollback_text
    return subprocess.run(
        ["sh", "-c", apply._START, "t", str(len(apply_text.encode())),
         str(len(rollback_text.encode())), str(timeout), str(run), "mgmt-vrf-test-rollback",
         "mgmt-vrf-test-window", str(run) + ".this-boot"],
        input=stdin if stdin.endswith("\n") else stdin + "\n",
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip


def wait_for(path: Path, seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.exists():
            return True
        time.sleep(0.1)
    return False


def executed(script: str) -> list[tuple[str, ...]]:
    """The commands the script runs, in order; `ip` ones as batch words, wherever they are."""
    out: list[tuple[str, ...]] = []
    lines = iter(script.splitlines())
    for line in lines:
        if " || fail " not in line:
            continue
        # A command guarded by a check runs as `if ! { CHECK; }; then COMMAND || fail ...`.
        if line.startswith("if ! { "):
            line = line.split("; }; then ", 1)[1]
        argv = tuple(shlex.split(line.split(" || fail ")[0]))
        if argv[:2] == ("ip", "-batch") or argv[:3] in (
            ("ip", "-4", "-batch"),
            ("ip", "-6", "-batch"),
        ):
            for inner in lines:
                if inner == "MGMT_VRF_IP_BATCH":
                    break
                out.append(("ip", *inner.split()))
        elif argv[0] == "ip":
            family = {"-4": 4, "-6": 6}.get(argv[1])
            ip = Ip(argv[2:], family) if family else Ip(argv[1:])
            out.append(("ip", *apply._batch_words(ip)[1]))
        else:
            out.append(argv)
    return out


def test_apply_script_runs_every_change_in_order_and_stops_at_the_first_failure() -> None:
    spec = seed_spec()
    # NetworkManager stopped: our own commands make the change, unguarded and batched.
    state = broken_state()
    state = replace(state, network_manager=replace(state.network_manager, running=False))
    result = plan(spec, state)
    script = apply.apply_script(result, 120)
    assert subprocess.run(["sh", "-n"], input=script, text=True).returncode == 0
    runs = [
        ("ip", *apply._batch_words(ip)[1]) if (ip := c.command.ip()) else c.argv
        for c in result.changes
        if isinstance(c, RunCommand)
    ]
    done = executed(script)
    assert [argv for argv in done if argv in runs] == runs
    # Every file is saved for the rollback before the first change.
    lines = script.splitlines()
    saves = [i for i, line in enumerate(lines) if line.startswith("if [ -e ")]
    first_change = min(i for i, line in enumerate(lines) if line.startswith(("sysctl", "ip ")))
    assert len(saves) == len({c.path for c in result.changes if not isinstance(c, RunCommand)})
    assert max(saves) < first_change
    assert lines.index(f"sleep {apply.APPLY_DELAY}") < min(saves)
    assert lines[-2:] == ['echo "mgmt-vrf: apply done $(date -u +%FT%TZ)"', 'ended "done"']
    removed = [c.path for c in result.changes if isinstance(c, RemoveFile)]
    assert all(any(path in line and "rm -f" in line for line in lines) for path in removed)
    # The two l3mdev rules run alone (a rule line names no address, so ip needs -4 or -6),
    # the twelve other network commands as one ip process.
    assert sum(1 for line in lines if line.startswith("ip ")) == 3


def test_teardown_batches_only_lines_that_name_their_family() -> None:
    spec = seed_spec()
    spec = replace(spec, vrfs=(replace(spec.vrfs[0], state="absent"),))
    state = converged_state()  # NetworkManager stopped: our commands do the teardown
    state = replace(state, network_manager=replace(state.network_manager, running=False))
    script = apply.apply_script(plan(spec, state), 120)
    assert subprocess.run(["sh", "-n"], input=script, text=True).returncode == 0
    lines = script.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("ip -batch - <<"))
    end = lines.index("MGMT_VRF_IP_BATCH", start)
    assert lines[start + 1 : end] == [
        "link set dev eth2 nomaster",
        "addr replace 203.0.113.10/24 dev eth2",
        "addr replace 2001:db8:1::10/64 dev eth2",
        "link del dev mgmt0",
    ]
    # A flush names no address: it keeps its flag and runs on its own.
    assert lines[end + 1].startswith("ip -4 route flush table 10 || fail ")
    assert lines[end + 2].startswith("ip -6 route flush table 10 || fail ")


def test_ip_batch_does_what_the_single_commands_do(tmp_path: Path) -> None:
    """In two scratch network namespaces: the plan's route and address commands one by one,
    and as the apply script batches them; both end with the same routes."""
    state = broken_state()
    spec = seed_spec()
    commands = [
        c
        for c in plan(spec, state).changes
        if isinstance(c, RunCommand) and c.argv[0] == "ip" and c.argv[2] in ("route", "addr")
    ]
    assert len(commands) >= 6
    setup = [
        "link add eth2 type veth peer name peer2",
        "link set eth2 up",
        "link set peer2 up",
        "addr add 203.0.113.10/24 dev eth2",
        "addr add 2001:db8:1::10/64 dev eth2 nodad",
        "route add default via 203.0.113.1 dev eth2 metric 102",
        "route add default via 2001:db8:1::1 dev eth2 metric 1024",
    ]
    results = []
    for name, batched in (("mvt-single", False), ("mvt-batch", True)):
        sh("ip", "netns", "del", name)
        assert sh("ip", "netns", "add", name).returncode == 0
        try:
            for line in setup:
                assert sh("ip", "-n", name, *line.split()).returncode == 0, line
            if batched:
                text = "\n".join(apply._line(c) for c in commands)
                r = subprocess.run(["ip", "-n", name, "-batch", "-"], input=text + "\n",
                                   capture_output=True, text=True)  # fmt: skip
                assert r.returncode == 0, r.stderr
            else:
                for c in commands:
                    r = sh("ip", "-n", name, *c.argv[1:])
                    assert r.returncode == 0, (c.argv, r.stderr)
            results.append(
                [
                    sh("ip", "-n", name, f"-{f}", "route", "show", "table", "all").stdout
                    for f in (4, 6)
                ]
            )
        finally:
            sh("ip", "netns", "del", name)
    assert results[0] == results[1]
    assert "unreachable default" in results[0][0] and "default via 2001:db8:1::1" in results[0][1]


def test_apply_script_writes_each_file_byte_for_byte(tmp_path: Path) -> None:
    spec = seed_spec()
    result = plan(spec, broken_state())
    keyfile = next(c for c in result.changes if isinstance(c, WriteFile))
    staged = next(
        line for line in apply.apply_script(result, 120).splitlines() if "| base64 -d >" in line
    )
    target = tmp_path / "staged"
    command = staged.split(" || fail")[0].rsplit(">", 1)[0] + f">{target}"
    assert sh("sh", "-c", command).returncode == 0
    assert target.read_text() == keyfile.content


def test_start_arms_the_rollback_and_starts_the_apply(tmp_path: Path) -> None:
    run = tmp_path / "run"
    applied = tmp_path / "applied"
    rolled = tmp_path / "rolled"
    rollback = f'mv "{run}/armed" "{run}/rolling-back" 2>/dev/null || exit 0\ntouch {rolled}\n'
    r = start(run, f"touch {applied}\necho done > {run}/apply.status\n", rollback, timeout=1)
    assert r.returncode == 0, r.stderr
    assert "armed rollback in 1 s at the latest, apply started" in r.stdout
    # The log says when the hard bound was set and when it falls, by the host's clock.
    armed = re.search(r"rollback armed (\S+), due (\S+) at the latest", (run / "log").read_text())
    assert armed, (run / "log").read_text()
    at, due = (datetime.fromisoformat(stamp) for stamp in armed.groups())
    assert (due - at).total_seconds() == 1
    assert (run / "armed").exists() and (run / "apply.pid").read_text().strip().isdigit()
    assert wait_for(applied)
    # Nobody confirms: the armed rollback runs by itself.
    assert wait_for(rolled)
    assert not (run / "armed").exists() and (run / "rolling-back").exists()


def test_confirm_wins_over_a_later_rollback_and_only_once(tmp_path: Path) -> None:
    run = tmp_path / "run"
    rolled = tmp_path / "rolled"
    rollback = f'mv "{run}/armed" "{run}/rolling-back" 2>/dev/null || exit 0\ntouch {rolled}\n'
    assert start(run, "true\n", rollback, timeout=2).returncode == 0
    confirm = apply.confirm_command()
    ok = sh(*confirm[:4], str(run), "mgmt-vrf-test-rollback", "mgmt-vrf-test-window")
    assert ok.returncode == 0 and "rollback disarmed" in ok.stdout
    assert (run / "confirmed").exists()
    again = sh(*confirm[:4], str(run), "mgmt-vrf-test-rollback", "mgmt-vrf-test-window")
    assert again.returncode == 3 and "too late to confirm" in again.stderr
    time.sleep(3)
    assert not rolled.exists()


def test_second_start_while_armed_is_refused(tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert start(run, "true\n", "true\n", timeout=30).returncode == 0
    second = start(run, "true\n", "true\n", timeout=30)
    assert second.returncode == 3
    assert "still armed" in second.stderr and f"mv {run}/armed {run}/confirmed" in second.stderr
    # The first run's scripts are untouched, and the refused start left nothing behind.
    assert (run / "apply.sh").read_text() == "true\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "run.this-boot"]


def test_the_start_carries_scripts_far_past_the_argument_limit(tmp_path: Path) -> None:
    # Linux caps one argument at 128 KiB (MAX_ARG_STRLEN): a plan of this size once failed
    # with "Argument list too long" before anything ran. 400 KiB each, none of it in argv.
    run = tmp_path / "run"
    body = "".join(f"# route {i:06d} {'x' * 90}\n" for i in range(4000))
    apply_text = f"{body}echo done > {run}/apply.status\n"
    rollback_text = f"{body}true\n"
    assert len(apply_text) > 3 * 128 * 1024
    r = start(run, apply_text, rollback_text, timeout=30)
    assert r.returncode == 0, r.stderr
    assert (run / "apply.sh").read_text() == apply_text
    assert (run / "rollback.sh").read_text() == rollback_text
    assert wait_for(run / "apply.status")


def test_start_command_sends_the_scripts_on_stdin_with_their_lengths() -> None:
    spec = seed_spec()
    result = plan(spec, broken_state())
    rollback = "true\n# résumé: counted in bytes\n"
    started = apply.start_command(result, rollback, 120, 300)
    script = apply.apply_script(result, 120)
    assert started.stdin == script + rollback
    assert started.argv[4:7] == (str(len(script.encode())), str(len(rollback.encode())), "420")
    assert script not in " ".join(started.argv)


def test_scripts_cut_short_on_the_way_are_refused(tmp_path: Path) -> None:
    run = tmp_path / "run"
    r = subprocess.run(
        [
            "sh",
            "-c",
            apply._START,
            "t",
            "100",
            "5",
            "30",
            str(run),
            "u1",
            "u2",
            str(tmp_path / "b"),
        ],
        input="true\n",
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 1 and "arrived incomplete; nothing was changed" in r.stderr
    assert not run.exists() and not (tmp_path / "b").exists()


def test_new_start_keeps_the_previous_run_beside_it(tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert start(run, "true\n", "true\n", timeout=30).returncode == 0
    (run / "armed").rename(run / "confirmed")
    assert start(run, "echo second\n", "true\n", timeout=30).returncode == 0
    assert (tmp_path / "run.prev" / "confirmed").exists()
    assert (run / "apply.sh").read_text() == "echo second\n"


def test_wait_reports_the_apply_status_and_markers(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "apply.status").write_text("failed: boom\n")
    (run / "armed").touch()
    argv = apply.wait_command(5)
    out = sh("sh", "-c", argv.replace(paths.RUN_DIR, str(run))).stdout.splitlines()
    status = apply.parse_run_status(out)
    assert status.apply == "failed: boom" and status.armed and not status.applied
    assert not status.rolled_back


def test_wait_gives_up_on_a_running_apply_after_its_wait(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "apply.status").write_text("running\n")
    begin = time.monotonic()
    argv = apply.wait_command(1)
    out = sh("sh", "-c", argv.replace(paths.RUN_DIR, str(run))).stdout.splitlines()
    assert apply.parse_run_status(out).apply == "running"
    assert time.monotonic() - begin < 10


def test_with_networkmanager_running_each_command_is_checked_on_the_host_first() -> None:
    result = plan(seed_spec(), broken_state())
    script = apply.apply_script(result, 120)
    assert subprocess.run(["sh", "-n"], input=script, text=True).returncode == 0
    lines = script.splitlines()
    activation = lines.index(
        "nmcli --wait 90 connection up id eth2 || fail 'NetworkManager activates eth2 as a port "
        "of mgmt0: nmcli --wait 90 connection up id eth2'"
    )
    guarded = [i for i, line in enumerate(lines) if line.startswith("if ! { ")]
    assert guarded and min(guarded) > activation
    assert not any(line.startswith("ip ") for line in lines)
    # The guard is the boot script's check: where it holds, the command is skipped.
    rule = next(line for line in lines if "l3mdev protocol kernel" in line and "-4" in line)
    done = subprocess.run(
        ["sh", "-c", rule.replace("ip -4 rule show", "echo 1000: from all lookup [l3mdev-table]")
         .replace("ip -4 rule add", "exit 7; ip")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0


def test_under_networkmanager_a_delete_without_a_check_cannot_stop_the_run() -> None:
    # A stale gateway route in table 10, found in the fact: its delete has no shell check,
    # so after NetworkManager's activation it runs, and a failure only leaves a log line.
    state = broken_state()
    stale = RouteEntry(4, 10, "default", gateway="203.0.113.99", dev="eth2", protocol="static")
    result = plan(seed_spec(), replace(state, routes=(*state.routes, stale)))
    (delete,) = [c for c in result.changes if isinstance(c, RunCommand) and c.best_effort]
    assert delete.argv[:4] == ("ip", "-4", "route", "del")
    line = next(
        x for x in apply.apply_script(result, 120).splitlines() if x.startswith(delete.shell)
    )
    assert "|| echo 'mgmt-vrf: done already?" in line and "fail" not in line


def _apply_text(run: Path, timeout: int, body: str) -> str:
    """An apply.sh with the real functions and `body` as its changes."""
    return "\n".join([f"run={shlex.quote(str(run))}", *apply.apply_functions(timeout), body, ""])


def _rollback_text(run: Path, rolled: Path) -> str:
    return f'mv "{run}/armed" "{run}/rolling-back" 2>/dev/null || exit 0\ntouch {rolled}\n'


def test_the_apply_opens_the_confirmation_window_when_it_ends(tmp_path: Path) -> None:
    run, rolled = tmp_path / "run", tmp_path / "rolled"
    body = 'sleep 3\nended "done"'
    begin = time.time()
    # Hard bound 60 s away; the apply takes 3 s, then the rollback is due 2 s later.
    assert start(run, _apply_text(run, 2, body), _rollback_text(run, rolled), 60).returncode == 0
    bound = int((run / "deadline").read_text())
    assert bound >= int(begin) + 60
    assert wait_for(run / "apply.status", 1)
    assert wait_for(rolled, 15)
    took = time.time() - begin
    # The window counts whole seconds by the host's clock: 2 s after an end at x.99 s falls
    # at x+2, 1.01 s later. A window opened at the start would have fired before the end.
    assert 4 <= took < 15, took
    assert int((run / "deadline").read_text()) < bound
    assert "rollback due " in (run / "log").read_text()


def test_a_status_read_tells_the_host_clock_and_its_deadline(tmp_path: Path) -> None:
    run, rolled = tmp_path / "run", tmp_path / "rolled"
    assert (
        start(run, _apply_text(run, 30, 'ended "done"'), _rollback_text(run, rolled), 90).returncode
        == 0
    )
    deadline = time.time() + 10
    while (run / "apply.status").read_text().strip() == "running" and time.time() < deadline:
        time.sleep(0.1)
    out = sh("sh", "-c", apply.wait_command(0).replace(paths.RUN_DIR, str(run))).stdout
    status = apply.parse_run_status(out.splitlines())
    assert status.applied and status.armed
    assert status.seconds_left is not None and 25 <= status.seconds_left <= 30
    confirm = apply.confirm_command()
    assert (
        sh(*confirm[:4], str(run), "mgmt-vrf-test-rollback", "mgmt-vrf-test-window").returncode == 0
    )
    # Both stand-in timers are gone with the confirmation.
    for pid in (run / "sleepers").read_text().split():
        assert (
            not Path(f"/proc/{pid}").exists()
            or "rollback.sh" not in Path(f"/proc/{pid}/cmdline").read_text()
        )


def test_a_hung_apply_is_stopped_at_the_hard_bound_with_what_it_started(tmp_path: Path) -> None:
    run, rolled = tmp_path / "run", tmp_path / "rolled"
    marker = tmp_path / "child-alive"
    # The apply starts a child that never returns (a `systemctl restart` of a unit that
    # hangs, say); the rollback at the hard bound stops the apply's whole session.
    body = f"sh -c 'while :; do touch {marker}; sleep 0.2; done'\nended \"done\""
    rollback = "\n".join(
        [f"run={shlex.quote(str(run))}", 'mv "$run/armed" "$run/rolling-back" || exit 0']
        + list(STOP_APPLY)
        + [f"touch {rolled}", ""]
    )
    assert start(run, _apply_text(run, 30, body), rollback, 3).returncode == 0
    assert wait_for(rolled, 15)
    time.sleep(0.5)
    marker.unlink()
    time.sleep(1)
    assert not marker.exists()
    assert (run / "apply.status").read_text().strip() == "running"


def _big_fleet(vrfs: int, routes: int) -> str:
    """One host with `vrfs` VRFs of one IPv6 port each and `routes` static routes in all."""
    parts = [
        '[hosts.big]\nssh_address = "198.51.100.10"\n'
        '[hosts.big.interfaces.eth0]\nipv4 = "198.51.100.10/24"\n'
        'gateway4 = "198.51.100.1"\nmain_default = true\n'
    ]
    for n in range(1, vrfs + 1):
        parts.append(
            f'[hosts.big.interfaces.eth{n + 10}]\nipv6 = "2001:db8:{n:x}::10/64"\n'
            f'[hosts.big.vrfs.v{n}]\ntable = {100 + n}\nports = ["eth{n + 10}"]\n'
            f'gateway6 = "2001:db8:{n:x}::1"\n'
        )
        share = range(n - 1, routes, vrfs)
        parts += [
            f'[[hosts.big.vrfs.v{n}.routes]]\nto = "2001:db8:{0x1000 + n:x}:{i:x}::/64"\n'
            f'via = "2001:db8:{n:x}::254"\n'
            for i in share
        ]
    return "".join(parts)


def test_a_thousand_routes_in_16_vrfs_travel_on_stdin_with_a_short_argv() -> None:
    # The size #21 asks for: its scripts are far past one argument's 128 KiB, yet the ssh
    # command stays a few hundred bytes, the same as for a one-route change.
    (spec,) = parse_fleet(_big_fleet(16, 1000)).hosts
    assert sum(len(v.routes) for v in spec.vrfs) == 1000 and len(spec.vrfs) == 16
    links = {f"eth{n + 10}": Link(f"eth{n + 10}", n + 10, up=True) for n in range(1, 17)}
    state = clean_state(links={**clean_state().links, **links})
    result = plan(spec, state)
    rollback = rollback_script(spec, state, result)
    started = apply.start_command(result, rollback, 120, 300)
    assert len(started.stdin.encode()) > 128 * 1024
    assert sum(len(word) + 1 for word in started.argv) < 4096
    script = apply.apply_script(result, 120)
    assert started.stdin == script + rollback
    # Every route is in the apply, once: 1.2 MB of scripts behind a 3 KB command.
    added = [line for line in script.splitlines() if re.search(r"route replace 2001:db8:10", line)]
    assert len(added) == 1000
