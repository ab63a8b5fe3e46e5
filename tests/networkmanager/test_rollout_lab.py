"""A rollout in waves on NetworkManager hosts: the canary confirms, the next wave's host cuts
its own ssh and rolls back, the rollout stops there, and the host after it is untouched.
Then the fleet file, fixed, resumes with the hosts left.

The smaller form of the 10-host proof (waves of 1, 3 and 6): three hosts in waves of one,
so that each wave holds exactly one host and the stop is seen between two of them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lab.pytest_fixture import Lab
from mgmt_vrf.rollout import RECORDS_ENV
from tests.e2e.deploy import (
    CUT_CONNECT_TIMEOUT,
    assert_converged,
    converge,
    fact,
    with_host_keys,
    wrong_gateway_fleet,
)

ROLLOUT = "[rollout]\nwaves = [1, 1]\n"


def _only_record(runs: Path) -> dict[str, Any]:
    paths = sorted(runs.glob("*.json"))
    assert len(paths) == 1, paths
    record: dict[str, Any] = json.loads(paths[0].read_text())
    paths[0].unlink()  # the next run's record is then the only one
    return record


def _outcomes(record: dict[str, Any]) -> dict[str, tuple[str, int | None]]:
    return {e["host"]: (e["outcome"], e["wave"]) for e in record["hosts"]}


@pytest.fixture
def hosts(lab: Lab) -> Iterator[list[str]]:
    chosen = lab.hosts[:3]
    lab.reset(*chosen)
    yield chosen
    lab.reset(*chosen)


def test_waves_stop_at_the_host_that_rolls_back_and_a_fixed_fleet_resumes(
    lab: Lab, hosts: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    canary, cut, untouched = hosts
    runs = tmp_path / "runs"
    monkeypatch.setenv(RECORDS_ENV, str(runs))
    wrong = wrong_gateway_fleet(lab.fleet_file, cut, tmp_path / "wrong.toml")
    text = with_host_keys(wrong.read_text(), cut, ssh_connect_timeout=CUT_CONNECT_TIMEOUT)
    wrong.write_text(ROLLOUT + text)
    before = {host: fact(wrong, host, "VrfHostState") for host in (cut, untouched)}

    run = converge(wrong, hosts)
    out = run.stdout + run.stderr
    assert run.returncode != 0, out[-4000:]
    assert f"[{canary}] mgmt-vrf: confirmed over a new ssh connection" in out, out[-4000:]
    assert f"[{cut}] mgmt-vrf: ROLLED BACK (no path)" in out, out[-4000:]
    assert (
        f"[{untouched}] mgmt-vrf: not started, the host is untouched: the rollout stopped "
        f"({cut} rolled back in wave 2)" in out
    ), out[-4000:]
    assert f"the rollout stopped: {cut} rolled back in wave 2. " in out
    record = _only_record(runs)
    assert _outcomes(record) == {
        canary: ("confirmed", 1),
        cut: ("rolled back", 2),
        untouched: ("not started", 3),
    }
    assert record["stopped"] == f"{cut} rolled back in wave 2"
    # Byte for byte as before: the combined fact carries every file we own, whole.
    for host, state in before.items():
        assert fact(wrong, host, "VrfHostState") == state, host

    fixed = tmp_path / "fixed.toml"
    fixed.write_text(ROLLOUT + lab.fleet_file.read_text())
    run = converge(fixed, hosts)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-4000:]
    record = _only_record(runs)
    assert _outcomes(record) == {
        canary: ("unchanged", None),
        cut: ("confirmed", 1),
        untouched: ("confirmed", 2),
    }
    waves = {e["host"]: e for e in record["hosts"]}
    assert waves[untouched]["started"] >= waves[cut]["ended"]
    for host in hosts:
        assert_converged(lab, fixed, host)
