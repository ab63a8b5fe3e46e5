"""pyinfra inventory of simulated hosts (pyinfra's @fake connector) for fleet-wide tests.

Every host of the fleet file $FAKE_FLEET becomes `@fake/NAME` carrying its validated spec,
and answers the combined fact with the recorded output in $FAKE_PROBE_OUTPUT (a real run,
see tests/fixtures/README.md). After a change, the controller's checks from a new connection
get $FAKE_AFTER_OUTPUT (a real capture of a converged host) behind the status lines a
finished apply prints, and the confirmation succeeds. Nothing leaves the machine.

Two host lists change that, for the rollout's tests: the hosts named in $FAKE_CUT_HOSTS
say after their apply that they have rolled back by themselves (as a host whose change cut
its ssh does), and those in $FAKE_CONVERGED_HOSTS answer the fact as converged already.
"""

import os
import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[2]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from mgmt_vrf.apply import STATUS_MARKER  # noqa: E402
from mgmt_vrf.fleet_file import load_fleet  # noqa: E402
from mgmt_vrf.probe import MARKER  # noqa: E402
from mgmt_vrf.pyinfra.inventory_data import (  # noqa: E402
    FLEET_FILE_DATA_KEY,
    ROLLOUT_DATA_KEY,
    SPEC_DATA_KEY,
)

_fleet = load_fleet(os.environ["FAKE_FLEET"])
_probe_output = Path(os.environ["FAKE_PROBE_OUTPUT"]).read_text().splitlines()
_after = os.environ.get("FAKE_AFTER_OUTPUT")
_after_output = [f"{STATUS_MARKER} apply=done", f"{STATUS_MARKER} has=armed"] + (
    Path(_after).read_text().splitlines() if _after else []
)
# First match wins: the run's own commands before the bare probe.
_responses = {
    "mgmt-vrf-wait": _after_output,
    "mgmt-vrf-confirm": ["mgmt-vrf: change confirmed, rollback disarmed"],
    MARKER: _probe_output,
}
# Rolled back by itself: the apply ended, then its timer fired before any confirmation.
_cut_responses = {
    **_responses,
    "mgmt-vrf-wait": [f"{STATUS_MARKER} apply=done", f"{STATUS_MARKER} has=rollback.status"]
    + _probe_output,
}
_converged_responses = {MARKER: _after_output[2:]}


def _named(variable: str) -> set[str]:
    return set(os.environ.get(variable, "").split())


_cut, _converged = _named("FAKE_CUT_HOSTS"), _named("FAKE_CONVERGED_HOSTS")


def _answers(name: str) -> dict[str, list[str]]:
    if name in _cut:
        return _cut_responses
    if name in _converged:
        return _converged_responses
    return _responses


fake_hosts = [
    (
        f"@fake/{spec.name}",
        {
            SPEC_DATA_KEY: spec,
            FLEET_FILE_DATA_KEY: str(_fleet.source.resolve()),
            ROLLOUT_DATA_KEY: _fleet.rollout,
            "fake_responses": _answers(spec.name),
            "fake_delay": 0,
            "fake_delay_jitter": 0,
        },
    )
    for spec in _fleet.hosts
]
