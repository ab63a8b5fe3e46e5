"""Fleet benchmark, pure part: run output -> figures, targets and the Markdown report."""

from __future__ import annotations

import tomllib
from dataclasses import replace
from pathlib import Path

from bench import figures
from bench.figures import Measurement
from lab import fleet

# Tails of real pyinfra 3.10 runs on the lab (3 hosts), trailing blanks stripped.
FLOOR_OUT = """
--> Results:
    Operation             Hosts   Success   Error   No Change
    server.shell (true)   3       3         -       -
    Grand total           3       3         -       -

--> Disconnecting from hosts...
"""
NOCHANGE_OUT = """
--> Results:
    Operation                  Hosts   Success   Error   No Change
    Converge management VRFs   3       -         -       3
    Grand total                3       -         -       3
"""
PARTLY_FAILED_OUT = """
    Operation                  Hosts   Success   Error   No Change
    Converge management VRFs   3       2         1       -
    Grand total                3       2         1       -
"""
# The line the deploy prints for a host that rolled back (mgmt_vrf/pyinfra/operations.py),
# lab3 here.
ROLLED_BACK_LINE = (
    "    [lab3] mgmt-vrf: ROLLED BACK (no path): the change ended, but no new ssh connection "
    "could be opened within 30 s after it ended (rollback_timeout): the change most likely "
    "cut the management path. The host is back in its state from before the run "
    "(log: /var/lib/mgmt-vrf/run/log). Fix the fleet file and run again.\n"
)
DRY_CLEAN_OUT = """
--> Detected changes:
    Operation                  Change   Conditional Change
    Converge management VRFs   -        -

    Detected changes may not include every change pyinfra will execute.
"""
DRY_DRIFTED_OUT = """
--> Detected changes:
    Operation                  Change   Conditional Change
    Converge management VRFs   2        -

    Detected changes may not include every change pyinfra will execute.
"""
REPORT_OUT = """lab1  converged
lab2  drifted: ifcfg-eth2 edited
lab3  unreachable: no ssh connection to 127.0.0.1:2403: SSH error (No existing session)
3 hosts: 1 converged, 1 drifted, 1 unreachable, 0 refused
"""

HOSTS = ("lab1", "lab2", "lab3")


def m(
    kind: str,
    seconds: float,
    commands: int = 1,
    rss_mib: float = 60,
    hosts: tuple[str, ...] = HOSTS,
    exit_code: int = 0,
    counts: dict[str, int] | None = None,
) -> Measurement:
    return Measurement(
        kind=kind,
        hosts=hosts,
        seconds=seconds,
        exit_code=exit_code,
        peak_rss_kib=int(rss_mib * 1024),
        counts={h: commands for h in hosts} if counts is None else counts,
        outcome="ok",
    )


def one(m: Measurement) -> figures.Figure:
    return figures.Figure(m.kind, (m,))


def runs(
    floor: float = 10.0,
    first: float = 30.0,
    nochange: float = 12.0,
    dry: float = 11.0,
    report: float = 9.0,
    first_commands: int = 6,
    nochange_commands: int = 1,
    rss_mib: float = 60,
    hosts: tuple[str, ...] = HOSTS,
) -> dict[str, figures.Figure]:
    return {
        "floor": one(m("floor", floor, rss_mib=rss_mib, hosts=hosts)),
        "first": one(m("first", first, first_commands, rss_mib=rss_mib, hosts=hosts)),
        "nochange": one(m("nochange", nochange, nochange_commands, rss_mib=rss_mib, hosts=hosts)),
        "dry": one(m("dry", dry, rss_mib=rss_mib, hosts=hosts)),
        "report": one(m("report", report, rss_mib=rss_mib, hosts=hosts)),
    }


def verdicts(results: figures.Results, main: int) -> dict[str, bool | None]:
    return {t.text: t.met for t in figures.targets(results, main)}


def test_commands_are_the_users_commands() -> None:
    assert figures.command("floor", 10) == [
        "pyinfra", "-y", "--parallel", "10", "inventory.py", "exec", "--", "true",
    ]  # fmt: skip
    assert figures.command("first", 0) == ["pyinfra", "-y", "inventory.py", "deploy.py"]
    assert figures.command("nochange", 0) == figures.command("first", 0)
    # A dry run must detect changes: no -y.
    assert figures.command("dry", 5) == [
        "pyinfra", "--dry", "--parallel", "5", "inventory.py", "deploy.py",
    ]  # fmt: skip
    assert figures.command("report", 10) == ["python", "-m", "mgmt_vrf_report", "--parallel", "10"]
    assert figures.command("report", 0) == ["python", "-m", "mgmt_vrf_report"]


def test_fleet_subset_keeps_defaults_and_the_chosen_hosts_whole() -> None:
    text = fleet.fleet_toml(Path("/var/tmp/lab"), 4)
    full = tomllib.loads(text)
    sub = tomllib.loads(figures.fleet_subset(text, ["lab2", "lab4"]))
    assert sub["defaults"] == full["defaults"]
    assert sub["hosts"] == {"lab2": full["hosts"]["lab2"], "lab4": full["hosts"]["lab4"]}


def test_fleet_subset_does_not_confuse_lab1_with_lab10() -> None:
    text = fleet.fleet_toml(Path("/var/tmp/lab"), 12)
    sub = tomllib.loads(figures.fleet_subset(text, ["lab1"]))
    assert set(sub["hosts"]) == {"lab1"}


def test_grand_total_reads_dashes_as_zero() -> None:
    assert figures.grand_total(FLOOR_OUT) == (3, 3, 0, 0)
    assert figures.grand_total(NOCHANGE_OUT) == (3, 0, 0, 3)
    assert figures.grand_total("--> Connecting to hosts...\n") is None
    # pyinfra pads every cell of its tables, the last one too.
    assert figures.grand_total(NOCHANGE_OUT.replace("\n", "   \n")) == (3, 0, 0, 3)


def test_dry_changes() -> None:
    assert figures.dry_changes(DRY_CLEAN_OUT) == 0
    assert figures.dry_changes(DRY_DRIFTED_OUT) == 2
    assert figures.dry_changes(DRY_DRIFTED_OUT.replace("\n", "   \n")) == 2
    assert figures.dry_changes(FLOOR_OUT) is None


def test_outcomes_in_words() -> None:
    assert figures.outcome("floor", FLOOR_OUT) == "3/3 ok"
    assert figures.outcome("nochange", NOCHANGE_OUT) == "0 changed, 3 unchanged"
    assert figures.outcome("first", PARTLY_FAILED_OUT) == "2 changed, 0 unchanged, 1 failed"
    assert (
        figures.outcome("first", ROLLED_BACK_LINE + PARTLY_FAILED_OUT)
        == "2 changed, 0 unchanged, 1 failed (1 rolled back)"
    )
    assert figures.outcome("dry", DRY_DRIFTED_OUT) == "2 would change"
    assert (
        figures.outcome("report", REPORT_OUT) == "1 converged, 1 drifted, 1 unreachable, 0 refused"
    )
    assert figures.outcome("first", "Traceback (most recent call last):\n") == "?"


def test_commands_per_host_count_silent_hosts_as_zero_and_others_as_stray() -> None:
    run = m("floor", 1, counts={"lab1": 1, "lab2": 3, "lab9": 2})
    assert run.commands == (0, 3)
    assert run.silent_hosts == ["lab3"]
    assert run.stray == 2


def test_a_figure_is_the_median_of_its_runs_and_the_worst_of_the_rest() -> None:
    samples = (
        m("nochange", 14.0, rss_mib=60, counts={"lab1": 1, "lab2": 1, "lab3": 1}),
        m("nochange", 30.0, rss_mib=64, counts={"lab1": 1, "lab2": 2, "lab3": 1}),
        m("nochange", 12.0, rss_mib=61, counts={"lab1": 1, "lab2": 1}, exit_code=1),
    )
    f = figures.Figure("nochange", samples)
    assert f.seconds == 14.0
    assert f.spread == (12.0, 30.0)
    assert f.commands == (0, 2)
    assert f.peak_rss_kib == 64 * 1024
    assert f.exit_codes == "0,1"
    assert f.outcome == "ok"


def test_targets_met() -> None:
    found = verdicts({3: runs()}, 3)
    assert found == {
        "no-change converge <= 1.3 x floor": True,
        "no-change converge <= 2 remote commands per host": True,
        "first converge <= 6 remote commands per host": True,
        "dry run no slower than the no-change converge": True,
        "drift report no slower than the no-change converge": True,
        "first converge changes every host and rolls none back": True,
        "controller memory grows no worse than linearly with hosts": None,
    }


def test_targets_missed() -> None:
    found = verdicts(
        {3: runs(nochange=13.5, dry=14, report=20, first_commands=7, nochange_commands=3)}, 3
    )
    assert not any(found[text] for text in list(found)[:5])


def test_memory_linear_in_hosts_is_met_and_faster_growth_is_not() -> None:
    ten = tuple(f"lab{i}" for i in range(51, 61))
    fifty = tuple(f"lab{i}" for i in range(1, 51))
    text = "controller memory grows no worse than linearly with hosts"
    # 60 MiB fixed plus 1 MiB per host.
    linear = {50: runs(rss_mib=110, hosts=fifty), 10: runs(rss_mib=70, hosts=ten)}
    assert verdicts(linear, 50)[text] is True
    worse = {50: runs(rss_mib=400, hosts=fifty), 10: runs(rss_mib=70, hosts=ten)}
    target = next(t for t in figures.targets(worse, 50) if t.text == text)
    assert target.met is False
    assert "floor x5.71" in target.detail


def test_problems_name_failed_runs_silent_hosts_and_strays() -> None:
    results = {3: runs()}
    results[3]["report"] = figures.Figure(
        "report", (m("report", 9), m("report", 9, exit_code=2, counts={"lab1": 1, "lab2": 1}))
    )
    results[3]["floor"] = one(m("floor", 10, counts={"lab1": 1, "lab2": 1, "lab3": 1, "lab4": 1}))
    assert figures.problems(results) == [
        "3 hosts, floor (exec -- true): 1 session(s) on hosts outside the run",
        "3 hosts, drift report #2: exited 2",
        "3 hosts, drift report #2: no command reached 1 host(s): lab3",
    ]


def test_render_shows_command_tables_and_verdicts() -> None:
    ten = tuple(f"lab{i}" for i in range(4, 14))
    results = {3: runs(first_commands=25, rss_mib=61), 10: runs(rss_mib=66, hosts=ten)}
    meta = figures.Meta(
        command="python -m bench.fleet --hosts 3 --also 10",
        when="2025-01-01 12:00 UTC",
        machine="2 CPUs",
        lab="13 hosts",
        parallel=10,
    )
    text = figures.render(results, 3, meta)
    assert "python -m bench.fleet --hosts 3 --also 10\n" in text
    assert text.index("**3 hosts**") < text.index("**10 hosts**")
    assert (
        "| first converge | `pyinfra -y --parallel 10 inventory.py deploy.py` | 1 | 30.0 "
        "| 30.0-30.0 | 3.00 | 25 | 61.0 | 0 | ok | 0.0 |" in text
    )
    assert "| floor (exec -- true) | 61.0 | 66.0 | x1.08 | 0.71 |" in text
    assert "- MISSED: first converge <= 6 remote commands per host (max 25 per host)" in text
    assert "- met: no-change converge <= 1.3 x floor (12.0 s / 10.0 s = 1.20 x)" in text


def test_a_rolled_back_host_in_the_first_converge_misses_its_target() -> None:
    assert figures.rolled_back(ROLLED_BACK_LINE * 2 + PARTLY_FAILED_OUT) == 1
    target = "first converge changes every host and rolls none back"
    assert verdicts({3: runs()}, 3)[target] is True
    bad = runs()
    bad["first"] = one(replace(bad["first"].samples[0], exit_code=1, rolled_back=1))
    assert verdicts({3: bad}, 3)[target] is False


def test_with_defaults_adds_keys_to_the_fleets_defaults() -> None:
    text = fleet.fleet_toml(Path("/var/tmp/lab"), 2)
    assert figures.with_defaults(text, rollback_timeout=None) == text
    parsed = tomllib.loads(figures.with_defaults(text, rollback_timeout=300))
    assert parsed["defaults"]["rollback_timeout"] == 300
    assert parsed["hosts"] == tomllib.loads(text)["hosts"]
