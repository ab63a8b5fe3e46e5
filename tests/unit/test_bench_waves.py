"""The rollout benchmark's fleet files (bench/waves.py), checked by the fleet file's rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import waves
from lab import fleet
from lab.errors import LabError
from mgmt_vrf.fleet_file import parse_fleet
from mgmt_vrf.rollout import Rollout


def test_the_cut_fleet_moves_one_hosts_gateway_and_keeps_the_others(tmp_path: Path) -> None:
    # The fleet file's checks want the lab's key files to exist.
    for name in ("id_ed25519", "known_hosts"):
        (tmp_path / name).write_text("")
    text = fleet.fleet_toml(tmp_path, 4)
    cut = parse_fleet(waves.with_rollout(waves.cut_fleet(text, "lab3"), [1, 3, 6]))
    assert cut.rollout == Rollout(waves=(1, 3, 6))
    plain = parse_fleet(text)
    for spec, before in zip(cut.hosts, plain.hosts, strict=True):
        (vrf,) = spec.vrfs
        if spec.name == "lab3":
            assert str(vrf.gateway4) == waves.WRONG_GW4
            assert spec.rollback_timeout == waves.CUT_ROLLBACK_TIMEOUT
            assert spec.ssh.connect_timeout == waves.CUT_CONNECT_TIMEOUT
        else:
            assert spec == before


def test_a_fleet_of_another_shape_is_refused_with_the_host_named() -> None:
    with pytest.raises(LabError, match="no mgmt0 table of the usual shape for lab9"):
        waves.cut_fleet(fleet.fleet_toml(Path("/var/tmp/lab"), 2), "lab9")
