"""The generated files a shell reads, and shellcheck over many of them in one call.

A shell reads our two scripts in /usr/local/sbin, the apply and rollback scripts of a run,
and the ifcfg files (the legacy network-scripts source them). Keyfiles, units, sysctl and
route files are read by NetworkManager, systemd, sysctl and `ip`, not by a shell.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path

from mgmt_vrf import apply, paths
from mgmt_vrf.hoststate import HostState
from mgmt_vrf.model import HostSpec
from mgmt_vrf.plan import desired_files, plan
from mgmt_vrf.rollback import rollback_script

# An ifcfg file is only assignments, read by a script that uses them: "unused" is expected.
_SOURCED_HEADER = "# shellcheck shell=sh disable=SC2034\n"


def is_shell_read(path: str) -> bool:
    return path in (paths.CONVERGE_SCRIPT, paths.EXEC_WRAPPER) or path.startswith(paths.ifcfg(""))


def shell_files(spec: HostSpec, backend: str) -> dict[str, str]:
    """Path -> content of every file the deploy writes that a shell reads."""
    return {
        path: desired[0]
        for path, desired in desired_files(spec, backend).items()
        if desired is not None and is_shell_read(path)
    }


def run_scripts(spec: HostSpec, before: HostState) -> dict[str, str]:
    """The apply and rollback scripts of a run from `before`."""
    result = plan(spec, before)
    return {
        "apply.sh": apply.apply_script(result, spec.rollback_timeout),
        "rollback.sh": rollback_script(spec, before, result),
    }


def shellcheck(files: Mapping[str, str]) -> str:
    """shellcheck's complaints about `files` (name -> content), all in one call; "" if none."""
    executable = shutil.which("shellcheck")
    assert executable, "shellcheck is needed: scripts/setup.sh installs it (apt shellcheck)"
    with tempfile.TemporaryDirectory() as tmp:
        names = []
        for i, (name, text) in enumerate(files.items()):
            sourced = Path(name).name.startswith("ifcfg-") or "-ifcfg-" in name
            copy = Path(tmp) / f"{i:04d}-{Path(name).name}"
            copy.write_text((_SOURCED_HEADER if sourced else "") + text)
            names.append(str(copy))
        if not names:
            return ""
        result = subprocess.run(
            [executable, "--shell=sh", "--format=gcc", *names],
            capture_output=True,
            text=True,
            timeout=120,
        )
    out = result.stdout + result.stderr
    assert result.returncode == 0 or out, f"shellcheck exited {result.returncode} silently"
    return out
