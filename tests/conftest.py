"""Every test's runs keep their records (mgmt_vrf.rollout) in the test session's own
directory, never in the home of whoever runs the tests."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from mgmt_vrf.rollout import RECORDS_ENV


@pytest.fixture(scope="session", autouse=True)
def run_records(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    before = os.environ.get(RECORDS_ENV)
    os.environ[RECORDS_ENV] = str(tmp_path_factory.mktemp("run-records"))
    yield
    if before is None:
        os.environ.pop(RECORDS_ENV, None)
    else:
        os.environ[RECORDS_ENV] = before
