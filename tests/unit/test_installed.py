"""The wheel, installed into a venv of its own and used from a pyinfra project of the user's:
their inventory gives each host its spec as host data, their deploy file is two lines.

The hosts here are pyinfra's @fake ones answering with a recorded probe of the blog's broken
state (tests/fixtures/probe/lab-broken.txt); tests/e2e/test_installed_lab.py runs the same
deploy against the lab.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mgmt_vrf.fleet_file import spec_from_data
from tests.installed import ROOT, USER_DEPLOY, Installed, copy_sources, install

BROKEN = ROOT / "tests" / "fixtures" / "probe" / "lab-broken.txt"
TABLE: dict[str, Any] = {
    "interfaces": {
        "eth0": {
            "ipv4": "198.51.100.10/25",
            "gateway4": "198.51.100.1",
            "ipv6": "2001:db8:100::10/64",
            "gateway6": "2001:db8:100::1",
            "main_default": True,
        },
        "eth1": {"ipv4": "192.0.2.10/25", "ipv6": "2001:db8:52::10/64"},
        "eth2": {"ipv4": "203.0.113.10/25", "ipv6": "2001:db8:1::10/64"},
    },
    "vrfs": {
        "mgmt0": {
            "table": 10,
            "ports": ["eth2"],
            "gateway4": "203.0.113.1",
            "gateway6": "2001:db8:1::1",
        }
    },
}


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    yield install(tmp_path_factory.mktemp("wheel"))


def user_inventory(hosts: dict[str, dict[str, Any]]) -> str:
    """A user's inventory of @fake hosts that answer the probe as the broken lab host did."""
    return (
        "from pathlib import Path\n\n"
        "from mgmt_vrf.probe import MARKER\n\n"
        f"answers = {{MARKER: Path({str(BROKEN)!r}).read_text().splitlines()}}\n"
        "hosts = [\n"
        + "".join(
            f"    ({'@fake/' + name!r}, {{'ssh_hostname': {name + '.invalid'!r}, "
            f"'fake_responses': answers, 'fake_delay': 0, **{data!r}}}),\n"
            for name, data in hosts.items()
        )
        + "]\n"
    )


def test_the_wheel_holds_one_package_with_the_templates_and_the_report(
    installed: Installed,
) -> None:
    with zipfile.ZipFile(installed.wheel) as wheel:
        names = wheel.namelist()
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        scripts = wheel.read(entry_points).decode()
    tops = {name.split("/")[0] for name in names}
    assert {top for top in tops if not top.endswith(".dist-info")} == {"mgmt_vrf"}
    templates = {name.removeprefix("mgmt_vrf/files/") for name in names if "/files/" in name}
    assert templates == {path.name for path in (ROOT / "files").glob("*.j2")}
    assert "mgmt-vrf-report = mgmt_vrf.pyinfra.report:main" in scripts


def test_python_m_build_writes_an_sdist_with_the_templates(tmp_path: Path) -> None:
    source = copy_sources(tmp_path / "source")
    done = subprocess.run(
        [sys.executable, "-m", "build", "--sdist", "--no-isolation", "--outdir", str(tmp_path)],
        cwd=source,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (sdist,) = tmp_path.glob("*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    assert {f"files/{path.name}" for path in (ROOT / "files").glob("*.j2")} <= names
    assert {"pyproject.toml", "mgmt_vrf/pyinfra/deploy.py", "mgmt_vrf/render.py"} <= names


def test_the_installed_package_runs_from_the_venv_not_the_checkout(installed: Installed) -> None:
    code = (
        "import mgmt_vrf, mgmt_vrf.pyinfra.deploy\n"
        "from mgmt_vrf import render\n"
        "print(mgmt_vrf.__file__)\n"
        "print(render.TEMPLATES)\n"
        "print(render.unit.__name__, len(render._env.list_templates()))\n"
    )
    done = installed.run("python", "-c", code)
    assert done.returncode == 0, done.stderr
    package, templates, listed = done.stdout.splitlines()
    assert package.startswith(str(installed.venv)) and templates.startswith(str(installed.venv))
    assert listed == f"unit {len(list((ROOT / 'files').glob('*.j2')))}"
    report = installed.run("mgmt-vrf-report", "--help")
    assert report.returncode == 0 and "--inventory" in report.stdout, report.stderr


def test_a_users_two_line_deploy_plans_each_host_from_its_data(installed: Installed) -> None:
    (installed.cwd / "inventory.py").write_text(
        user_inventory({"alma01": {"mgmt_vrf": TABLE}, "alma02": {"mgmt_vrf": TABLE}})
    )
    (installed.cwd / "deploy.py").write_text(USER_DEPLOY)
    done = installed.run("python", "-m", "pyinfra", "inventory.py", "deploy.py", "--dry")
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    for host in ("alma01", "alma02"):
        assert f"[@fake/{host}] mgmt-vrf plan" in out, out[-3000:]
        assert f"[@fake/{host}]   $ ip link add dev mgmt0 type vrf table 10" in out, out[-3000:]


def test_mistakes_in_a_users_host_data_are_all_named_before_any_host_changes(
    installed: Installed,
) -> None:
    bad = {**TABLE, "vrfs": {"mgmt0": {**TABLE["vrfs"]["mgmt0"], "table": 0}}}
    (installed.cwd / "inventory.py").write_text(
        user_inventory({"alma01": {"mgmt_vrf": bad}, "alma02": {}, "alma03": {"mgmt_vrf": TABLE}})
    )
    (installed.cwd / "deploy.py").write_text(USER_DEPLOY)
    done = installed.run("python", "-m", "pyinfra", "inventory.py", "deploy.py", "-y")
    out = done.stdout + done.stderr
    assert done.returncode != 0, out[-3000:]
    assert "mgmt-vrf: 2 problems in the inventory's host data; no host was changed:" in out, out
    assert "host data: host @fake/alma01: vrfs.mgmt0.table:" in out, out
    assert "host data: host @fake/alma02: mgmt_vrf: missing;" in out, out
    assert "Traceback" not in out and "mgmt-vrf plan" not in out, out


def test_the_readmes_example_project_is_the_one_tested_and_its_data_is_valid() -> None:
    readme = (ROOT / "README.md").read_text()
    assert f"```python\n# deploy.py\n{USER_DEPLOY}```" in readme
    inventory = readme.split("```python\n# inventory.py\n", 1)[1].split("```", 1)[0]
    names: dict[str, Any] = {}
    exec(inventory, names)  # the README's own example, as a user would paste it
    ((name, data),) = names["hosts"]
    spec = spec_from_data({**data["mgmt_vrf"], "name": name, "ssh_address": name})
    assert [vrf.name for vrf in spec.vrfs] == ["mgmt0"]
