"""Rendered files against golden copies, and the boot script through a real shell parser.

Regenerate the golden files after an intended change with UPDATE_GOLDEN=1 and review the diff.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from mgmt_vrf import paths
from mgmt_vrf.plan import desired_files
from mgmt_vrf.render import converge_script

from .builders import seed_spec, with_route

GOLDEN = Path(__file__).resolve().parent.parent / "golden"


def _rendered(backend: str) -> dict[str, tuple[str, str]]:
    spec = with_route(seed_spec(), "192.0.2.128/25", "203.0.113.254")
    return {
        path: (desired[0], desired[1])
        for path, desired in desired_files(spec, backend).items()
        if desired is not None
    }


CASES = [
    (backend, path)
    for backend in ("networkmanager", "network-scripts")
    for path in _rendered(backend)
]


@pytest.mark.parametrize(("backend", "path"), CASES)
def test_rendered_file_matches_golden(backend: str, path: str) -> None:
    content, _mode = _rendered(backend)[path]
    golden = GOLDEN / backend / path.lstrip("/")
    if os.environ.get("UPDATE_GOLDEN"):
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(content)
    assert golden.read_text() == content


def test_modes_follow_networkmanager_rules() -> None:
    files = _rendered("networkmanager")
    assert files[paths.keyfile("mgmt0")][1] == "0600"
    assert files[paths.ifcfg("eth2")][1] == "0644"
    assert files[paths.CONVERGE_SCRIPT][1] == "0755"


@pytest.mark.parametrize("shell", ["sh", "bash"])
def test_boot_script_parses(shell: str, tmp_path: Path) -> None:
    script = tmp_path / "converge"
    script.write_text(_rendered("networkmanager")[paths.CONVERGE_SCRIPT][0])
    assert shutil.which(shell), f"{shell} is needed to check the boot script"
    result = subprocess.run([shell, "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_boot_script_quotes_hostile_names(tmp_path: Path) -> None:
    """Run the script for real in an empty network namespace: the `ip` commands fail
    harmlessly there, and a name that escaped its quotes would create the file."""
    spec = seed_spec()
    vrf = replace(spec.vrfs[0], name="m$(touch pwned)")
    port = replace(spec.interfaces[2], name="e`touch pwned2`")
    vrf = replace(vrf, ports=(port.name,))
    spec = replace(spec, vrfs=(vrf,), interfaces=(spec.interfaces[0], spec.interfaces[1], port))
    script = tmp_path / "converge"
    script.write_text(converge_script(spec))
    assert shutil.which("unshare"), "util-linux unshare is needed for this test"
    result = subprocess.run(
        ["unshare", "-n", "sh", str(script)], cwd=tmp_path, capture_output=True, text=True
    )
    assert "mgmt-vrf: create VRF m$(touch pwned) with table 10" in result.stdout
    assert result.returncode == 1  # the repairs failed: there is no VRF support in that namespace
    assert sorted(p.name for p in tmp_path.iterdir()) == ["converge"]
