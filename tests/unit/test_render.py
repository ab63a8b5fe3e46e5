"""Rendered files against golden copies, and the boot script through a real shell parser.

Regenerate the golden files after an intended change with UPDATE_GOLDEN=1 and review the diff.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import replace
from ipaddress import IPv6Address
from pathlib import Path

import pytest

from mgmt_vrf import apply, paths
from mgmt_vrf.plan import desired_files
from mgmt_vrf.plan import plan as plan_of
from mgmt_vrf.render import converge_script
from mgmt_vrf.steps import present_steps

from .builders import broken_state, clean_state, seed_spec, with_route
from .shell_scripts import is_shell_read, run_scripts, shellcheck

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
    assert files[f"{paths.SYSTEM_CONNECTIONS}/eth2.nmconnection"][1] == "0600"
    assert _rendered("network-scripts")[paths.ifcfg("eth2")][1] == "0644"
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


def test_golden_scripts_pass_shellcheck() -> None:
    files = {
        str(golden): golden.read_text()
        for golden in sorted(GOLDEN.rglob("*"))
        if golden.is_file()
        and is_shell_read("/" + str(golden.relative_to(GOLDEN)).split("/", 1)[1])
    }
    # converge and exec for each backend, the network-scripts' ifcfg-eth2, and the exec
    # wrapper of a VRF with nameservers (golden/dns)
    assert len(files) == 6
    assert shellcheck(files) == ""


def test_apply_and_rollback_scripts_pass_shellcheck() -> None:
    spec = with_route(seed_spec(), "192.0.2.128/25", "203.0.113.254")
    scripts = {}
    for name, before in (("broken", broken_state()), ("clean", clean_state())):
        for script, text in run_scripts(spec, before).items():
            scripts[f"{name}-{script}"] = text
    assert shellcheck(scripts) == ""


def test_the_run_commands_pass_shellcheck() -> None:
    # Each is `sh -c SCRIPT NAME ARGS...`: what the host's shell runs is SCRIPT.
    result = plan_of(seed_spec(), broken_state())
    commands = {
        "start": apply.start_command(result, "true\n", 120, 300).argv,
        "confirm": apply.confirm_command(),
        "rollback-now": apply.rollback_now_command(),
    }
    scripts = {f"{name}.sh": f"#!/bin/sh\n{argv[2]}" for name, argv in commands.items()}
    scripts["wait.sh"] = "#!/bin/sh\n" + apply._WAIT
    assert shellcheck(scripts) == ""


def test_link_local_gateway_routes_name_the_port() -> None:
    """fe80::1 is on every link: each form of the VRF's default route names eth2."""
    spec = seed_spec()
    vrf = replace(spec.vrfs[0], gateway6=IPv6Address("fe80::1"))
    spec = replace(spec, vrfs=(vrf,))
    legacy = desired_files(spec, "network-scripts")[paths.route6("eth2")]
    assert legacy is not None and "default via fe80::1 dev eth2 table 10\n" in legacy[0]
    nm = desired_files(spec, "networkmanager")[f"{paths.SYSTEM_CONNECTIONS}/eth2.nmconnection"]
    assert nm is not None and "address1=2001:db8:1::10/64,fe80::1\n" in nm[0]
    replaces = [
        argv
        for step in present_steps(spec)
        for argv in (command.argv for command in step.commands)
        if argv[:4] == ("ip", "-6", "route", "replace") and "fe80::1" in argv
    ]
    assert replaces == [
        ("ip", "-6", "route", "replace", "default", "via", "fe80::1", "dev", "eth2", "table", "10")
    ]
