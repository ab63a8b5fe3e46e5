"""The big-fleet-file benchmark: its fleet file is valid and alike host by host, and a small
run prints every figure and a verdict for each target."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bench import fleet_file
from mgmt_vrf.fleet_file import parse_fleet

ROOT = Path(__file__).resolve().parents[2]


def test_the_generated_fleet_is_valid_and_its_ipv6_addresses_differ() -> None:
    fleet = parse_fleet(fleet_file.fleet_text(300))
    assert len(fleet.hosts) == 300
    ports = {spec.ssh.port for spec in fleet.hosts}
    assert len(ports) == 300
    eth2 = {spec.interface("eth2").ipv6 for spec in fleet.hosts}  # type: ignore[union-attr]
    assert len(eth2) == 300


def test_the_time_goes_to_the_bucket_that_ran_it() -> None:
    assert fleet_file._bucket("~", "<built-in method tomli._parser.loads>") == "TOML parser"
    assert fleet_file._bucket("/usr/lib/python3.11/ipaddress.py", "__init__") == "ipaddress"
    site = "/usr/lib/python3/site-packages/pyinfra/api/host.py"
    assert fleet_file._bucket(site, "connect") == "pyinfra"
    assert fleet_file._bucket(str(ROOT / "mgmt_vrf" / "plan.py"), "plan") == "our code"


def test_a_small_run_prints_its_figures_and_verdicts(tmp_path: Path) -> None:
    # No lab fleet: the dry-run part says it was not measured.
    run = subprocess.run(
        [sys.executable, "-m", "bench.fleet_file", "--hosts", "50", "--rounds", "2"]
        + ["--out", str(tmp_path / "out"), "--lab-fleet", str(tmp_path / "no-lab.toml")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    lines = run.stdout.splitlines()
    assert lines[0].startswith("fleet file of 50 hosts, ") and "; load " in lines[0]
    assert lines[1].startswith("load_fleet, 50 hosts, 2 rounds: median ")
    assert "- met: loading and validating 50 hosts takes at most 2 s (" in run.stdout
    assert any(line.startswith("  ipaddress: ") for line in lines)
    assert lines[-1].startswith("- not measured: the one-host dry run is not dominated")
    assert (tmp_path / "out" / "fleet.toml").exists()
