"""Services moving out of the VRF on the lab, and services refused before any change.

Independent of the cgroup mode (scripts/test.sh runs these once, on cgroup v2). Starts from
the last host as test_services_lab.py leaves it, or builds that state itself. sshd moved
into the VRF and put back by the rollback: test_converge_lab.py's first run.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.pytest_fixture import Lab
from mgmt_vrf import paths

from .deploy import ETH0_4, ETH2_4, converge, results
from .services import SERVICES, serve, services_fleet, vrf_of, wait_listening, web_answers


@pytest.fixture(scope="module")
def served(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """The host with sshd and lab-web inside mgmt0; back to a fresh install at the end."""
    host = lab.hosts[-1]
    fleet, run = serve(lab, host, tmp_path_factory.mktemp("svc") / "fleet.toml")
    assert results(run) in ((1, 0, 0), (0, 0, 1))
    yield host, fleet
    lab.reset(host)


def test_unlisted_services_leave_the_vrf(
    lab: Lab, served: tuple[str, Path], tmp_path: Path
) -> None:
    host, _ = served
    plain = services_fleet(lab.fleet_file, host, None, tmp_path / "plain.toml")
    run = converge(plain, [host])
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
    assert results(run) == (1, 0, 0)
    for unit in SERVICES:
        assert lab.ssh(host, f"test -e {paths.dropin(unit)}").returncode == 1
        assert vrf_of(lab, host, unit) == "", unit
    # Back in the default VRF: with tcp_l3mdev_accept=1 it answers on both segments.
    wait_listening(lab, host)
    assert web_answers(lab, host, ETH0_4)
    assert web_answers(lab, host, ETH2_4)
    assert results(converge(plain, [host])) == (0, 0, 1)


def test_a_service_that_cannot_run_inside_a_vrf_is_refused_before_any_change(
    lab: Lab, served: tuple[str, Path], tmp_path: Path
) -> None:
    host, _ = served
    lab.check(
        host,
        "mkdir -p /etc/systemd/system/lab-web.service.d && printf '[Service]\\nUser=nobody\\n' "
        "> /etc/systemd/system/lab-web.service.d/user.conf && systemctl daemon-reload",
    )
    fleet = services_fleet(lab.fleet_file, host, ["lab-web", "no-such"], tmp_path / "bad.toml")
    before = lab.check(host, f"ls {paths.SYSTEMD_DIR}/lab-web.service.d")
    run = converge(fleet, [host])
    out = run.stdout + run.stderr
    assert run.returncode != 0
    assert f"host {host}: vrfs.mgmt0.services: lab-web.service runs as User=nobody" in out
    assert f"host {host}: vrfs.mgmt0.services: no-such.service does not exist" in out
    assert "nothing was changed" in out
    assert lab.check(host, f"ls {paths.SYSTEMD_DIR}/lab-web.service.d") == before
    lab.check(host, "rm /etc/systemd/system/lab-web.service.d/user.conf && systemctl daemon-reload")
