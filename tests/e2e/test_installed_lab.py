"""`pip install` users, on the lab: the wheel in a venv of its own, a pyinfra project of the
user's (an inventory whose host data carries the spec, no fleet file, and a two-line deploy
file), run from outside the checkout against a lab host reset to a clean state. Then the
installed drift report on the same inventory, and the installed fact by its package name.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import pytest

from lab import client
from lab.errors import LabError
from lab.pytest_fixture import Lab
from mgmt_vrf.fleet_file import load_fleet, spec_to_data
from mgmt_vrf.pyinfra.inventory_data import FLEET_FILE_DATA_KEY, SPEC_DATA_KEY, host_data
from tests.installed import USER_DEPLOY, Installed, install


def user_host(lab: Lab, name: str) -> dict[str, Any]:
    """The host's data as a pyinfra user would write it: pyinfra's own ssh keys, and the
    host's fleet-file table under `mgmt_vrf`."""
    spec = load_fleet(lab.fleet_file).host(name)
    assert spec is not None
    data = {
        key: value
        for key, value in host_data(spec, lab.fleet_file).items()
        if key not in (SPEC_DATA_KEY, FLEET_FILE_DATA_KEY)
    }
    table = {
        key: value
        for key, value in spec_to_data(spec).items()
        if key not in ("name", "groups") and not key.startswith("ssh_")
    }
    return {**data, "mgmt_vrf": table}


@pytest.fixture(scope="module")
def project(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Installed]]:
    installed = install(tmp_path_factory.mktemp("wheel"))
    host = lab.hosts[1]
    lab.reset(host)
    (installed.cwd / "inventory.py").write_text(f"hosts = [({host!r}, {user_host(lab, host)!r})]\n")
    (installed.cwd / "deploy.py").write_text(USER_DEPLOY)
    yield host, installed
    lab.reset(host)


def test_a_users_own_project_converges_a_host_with_the_installed_package(
    lab: Lab, project: tuple[str, Installed]
) -> None:
    host, installed = project
    try:
        run = installed.run("python", "-m", "pyinfra", "-y", "inventory.py", "deploy.py")
    finally:
        with contextlib.suppress(LabError):
            client.new_connections([host])
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-4000:]
    assert f"[{host}] mgmt-vrf: confirmed over a new ssh connection" in out, out[-4000:]
    assert "site-packages/mgmt_vrf" not in out  # no traceback, no warning from the package
    assert lab.check(host, "ip -d link show eth2").count("vrf_slave") == 1
    name = "mgmt_vrf.pyinfra.facts.VrfDevices"
    fact = installed.run("python", "-m", "pyinfra", "inventory.py", "fact", name, "--json")
    assert fact.returncode == 0, fact.stderr[-3000:]
    devices = json.loads(fact.stdout)[name][host]
    assert devices == {"mgmt0": {"table": 10, "up": True, "ports": ["eth2"]}}, devices


def test_the_installed_report_finds_that_host_converged(project: tuple[str, Installed]) -> None:
    host, installed = project
    done = installed.run("mgmt-vrf-report")
    assert done.returncode == 0, done.stdout + done.stderr
    assert host in done.stdout and "converged" in done.stdout, done.stdout
