"""Waves: who changes when, what stops a rollout, and the run's record (mgmt_vrf.rollout)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from mgmt_vrf.fleet_file import FleetError, parse_fleet, rollout_from_data
from mgmt_vrf.rollout import (
    ALL_AT_ONCE,
    Rollout,
    Waves,
    latest_record,
    outcome_lines,
    record_name,
    records_dir,
    summary,
    write_record,
)

HOSTS = [f"h{i:02d}" for i in range(1, 11)]


def _ticks() -> object:
    counter = itertools.count(1_800_000_000)
    return lambda: float(next(counter))


def _waves(rollout: Rollout, hosts: list[str] = HOSTS) -> Waves:
    return Waves(hosts, rollout, wall=_ticks())


def _plan_all(waves: Waves, changes: int = 5) -> None:
    for host in waves.hosts:
        waves.planned(host, changes)


def test_wave_sizes_count_hosts_or_a_share_of_the_run_and_the_last_repeats() -> None:
    sizes = Rollout(waves=(1, "10%", "25%")).sizes(30)
    assert list(itertools.islice(sizes, 5)) == [1, 3, 8, 8, 8]
    assert list(itertools.islice(Rollout(waves=("1%",)).sizes(3), 2)) == [1, 1]
    assert list(itertools.islice(ALL_AT_ONCE.sizes(7), 2)) == [7, 7]


def test_hosts_go_in_waves_in_the_runs_order_each_after_the_one_before_confirmed() -> None:
    waves = _waves(Rollout(waves=(1, 3, 6)))
    _plan_all(waves)
    assert [waves.entries[h].wave for h in HOSTS] == [1, 2, 2, 2, 3, 3, 3, 3, 3, 3]
    assert waves.turn("h01").go and waves.turn("h02").waiting
    waves.started("h01")
    assert waves.turn("h02").waiting
    waves.finished("h01", confirmed=True)
    assert all(waves.turn(h).go for h in ("h02", "h03", "h04"))
    assert waves.turn("h05").waiting
    for host in ("h02", "h03", "h04"):
        waves.started(host)
        waves.finished(host, confirmed=True)
    assert all(waves.turn(h).go for h in HOSTS[4:])


def test_a_wave_is_only_known_once_every_host_before_it_has_planned() -> None:
    waves = _waves(Rollout(waves=(1, 2)))
    waves.planned("h03", 4)
    assert waves.entries["h03"].wave is None and waves.turn("h03").waiting
    waves.planned("h01", 0)  # converged already: no wave, no wait
    waves.planned("h02", 7)
    assert (waves.entries["h02"].wave, waves.entries["h03"].wave) == (1, 2)
    assert waves.entries["h01"].outcome == "unchanged" and waves.entries["h01"].wave is None


def test_the_first_rollback_stops_the_rollout_and_later_hosts_never_start() -> None:
    waves = _waves(Rollout(waves=(1, 2)))
    _plan_all(waves)
    waves.started("h01")
    waves.finished("h01", confirmed=True)
    waves.started("h02")
    waves.started("h03")
    waves.finished("h02", confirmed=False, detail="ROLLED BACK (no path)")
    assert waves.stopped == "h02 rolled back in wave 2"
    turn = waves.turn("h04")
    assert not turn.go and turn.stopped == "h02 rolled back in wave 2"
    # The other host of the same wave was already changing: it ends as it ends.
    waves.finished("h03", confirmed=True)
    for host in HOSTS[3:]:
        waves.never_started(host)
    record = waves.record("/srv/fleet.toml")
    outcomes = {e["host"]: e["outcome"] for e in record["hosts"]}
    assert outcomes == {
        "h01": "confirmed",
        "h02": "rolled back",
        "h03": "confirmed",
        **{h: "not started" for h in HOSTS[3:]},
    }
    assert record["stopped"] == "h02 rolled back in wave 2"
    assert summary(record).endswith(
        ": 2 confirmed, 1 rolled back, 7 not started; stopped: h02 rolled back in wave 2"
    )
    assert outcome_lines(record, ["h02", "h04"]) == [
        "  h02: rolled back (wave 2): ROLLED BACK (no path)",
        "  h04: not started (wave 3): h02 rolled back in wave 2",
    ]


def test_failures_before_the_change_stop_the_rollout_past_failures_allowed() -> None:
    waves = _waves(Rollout(waves=(1,), failures_allowed=1))
    waves.failed("h01", "host state does not fit the fleet file")
    assert not waves.stopped
    waves.planned("h02", 3)
    assert waves.turn("h02").go
    waves.failed("h05", "the probe failed")
    assert waves.stopped == (
        "2 hosts failed before changing (last: h05), more than failures_allowed = 1"
    )
    assert waves.turn("h02").stopped


def test_without_waves_every_host_goes_at_once_and_a_rollback_stops_nobody() -> None:
    waves = _waves(ALL_AT_ONCE)
    waves.planned("h10", 2)  # no order to wait for: it goes before the others planned
    assert waves.turn("h10").go
    _plan_all(waves)
    assert all(waves.turn(h).go for h in HOSTS)
    waves.started("h01")
    waves.finished("h01", confirmed=False)
    waves.failed("h02", "the probe failed")
    assert not waves.stopped and waves.turn("h03").go


def test_progress_moves_only_when_a_waiting_hosts_turn_may_have_changed() -> None:
    waves = _waves(Rollout(waves=(1, 2)), ["a", "b", "c"])
    waves.planned("b", 1)
    waves.planned("c", 1)
    before = waves.progress
    waves.planned("a", 1)  # b and c, already waiting, learn their waves
    assert waves.progress > before
    before = waves.progress
    waves.started("a")
    assert waves.progress == before
    waves.finished("a", confirmed=True)  # wave 1 done: wave 2 may go
    assert waves.progress > before and waves.turn("b").go and waves.turn("c").go
    assert not waves.done
    for host in ("b", "c"):
        waves.started(host)
        waves.finished(host, confirmed=True)
    assert waves.done


def test_the_record_says_each_hosts_wave_plan_outcome_and_times() -> None:
    waves = _waves(Rollout(waves=(1, "50%")), ["a", "b", "c"])
    waves.planned("a", 12)
    waves.planned("b", 0)
    waves.planned("c", 3)
    waves.started("a")
    waves.finished("a", True, "confirmed over a new ssh connection, rollback disarmed")
    record = waves.record("/srv/fleet.toml")
    assert record["format"] == 1 and record["fleet_file"] == "/srv/fleet.toml"
    assert record["rollout"] == {"waves": [1, "50%"], "failures_allowed": 0}
    a, b, c = record["hosts"]
    assert (a["wave"], a["changes"], a["outcome"]) == (1, 12, "confirmed")
    assert a["started"] < a["ended"] and a["started"].endswith("Z")
    assert (b["wave"], b["changes"], b["outcome"]) == (None, 0, "unchanged")
    assert (c["wave"], c["outcome"], c["started"]) == (2, "waiting", None)
    json.dumps(record)  # plain data


def test_records_are_written_whole_and_the_newest_of_a_fleet_is_found(tmp_path: Path) -> None:
    runs = records_dir({"MGMT_VRF_RUN_RECORDS": str(tmp_path / "runs")})
    assert runs == tmp_path / "runs"
    assert records_dir({"XDG_STATE_HOME": "/st"}) == Path("/st/mgmt-vrf/runs")
    assert records_dir({"HOME": "/home/op"}) == Path("/home/op/.local/state/mgmt-vrf/runs")
    older = runs / record_name(1_800_000_000, 7)
    newer = runs / record_name(1_800_000_060, 7)
    assert older.name == "20270115T080000Z-7.json"
    write_record(older, {"fleet_file": "/a.toml", "hosts": []})
    write_record(newer, {"fleet_file": "/b.toml", "hosts": []})
    (runs / "20990101T000000Z-1.json").write_text("{half")  # a torn file is skipped
    assert latest_record(runs) == (newer, {"fleet_file": "/b.toml", "hosts": []})
    found = latest_record(runs, "/a.toml")
    assert found is not None and found[0] == older
    assert latest_record(tmp_path / "none") is None
    assert not list(runs.glob("*.tmp"))


def test_the_fleet_files_rollout_table_is_checked_and_read() -> None:
    fleet = parse_fleet(FLEET.format(rollout='[rollout]\nwaves = [1, "10%", 5]\n'))
    assert fleet.rollout == Rollout(waves=(1, "10%", 5), failures_allowed=0)
    assert parse_fleet(FLEET.format(rollout="")).rollout == ALL_AT_ONCE
    with pytest.raises(FleetError) as bad:
        parse_fleet(
            FLEET.format(
                rollout='[rollout]\nwaves = ["ten", 3.5]\nfailures_allowed = -1\ncanary = 1\n'
            )
        )
    assert bad.value.messages == (
        'fleet.toml: rollout: waves: entry 1: "ten" is not a wave size; give a number of hosts '
        '(3) or a share of the run\'s hosts between 0 and 100 percent ("10%")',
        "fleet.toml: rollout: failures_allowed: -1 is outside 0..1000 hosts; it is how many "
        "hosts may fail before their change (and be left untouched) before the rollout stops",
        "fleet.toml: rollout: canary: unknown key; known keys here: waves, failures_allowed",
    )
    with pytest.raises(FleetError) as bad:
        parse_fleet(FLEET.format(rollout="[rollout]\nwaves = []\n"))
    assert bad.value.messages == (
        "fleet.toml: rollout: waves: is empty; leave waves out to change every host at once, "
        "or give [1, 3, 6]",
    )
    with pytest.raises(FleetError) as bad:
        parse_fleet(FLEET.format(rollout='rollout = "1,3"\n'))
    assert bad.value.messages == (
        'fleet.toml: rollout: expected a table [rollout], got the string "1,3"',
    )


def test_host_data_gives_the_rollout_by_the_same_rules() -> None:
    assert rollout_from_data({"waves": [2]}) == Rollout(waves=(2,))
    assert rollout_from_data(Rollout(waves=("5%",), failures_allowed=2)) == Rollout(
        waves=("5%",), failures_allowed=2
    )
    assert rollout_from_data(ALL_AT_ONCE) == ALL_AT_ONCE
    with pytest.raises(FleetError) as bad:
        rollout_from_data({"waves": ["0%"]}, source="host data: host a: mgmt_vrf_rollout")
    assert bad.value.messages[0].startswith(
        'host data: host a: mgmt_vrf_rollout: rollout: waves: entry 1: "0%" is not a wave size'
    )


FLEET = """{rollout}
[hosts.a]
ssh_address = "192.0.2.10"
[hosts.a.interfaces.eth2]
ipv4 = "203.0.113.10/25"
[hosts.a.vrfs.mgmt0]
table = 10
ports = ["eth2"]
"""
