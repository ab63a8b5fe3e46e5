"""pyinfra inventory: the hosts of the fleet file, each carrying its management-VRF spec.

    MGMT_VRF_FLEET=fleet.toml pyinfra inventory.py deploy.py

The fleet file is $MGMT_VRF_FLEET, else lab/run/fleet.toml next to this file (the lab
fleet written by `python -m lab up`). See fleet.example.toml for the format.

Groups: one per [groups.NAME] of the fleet file, plus `mgmt_vrf_hosts` with every host.
Host names are the fleet names; `ssh_hostname` holds the address, so two hosts behind the
same address on different ports stay two hosts. Host data: the ssh_* connector keys the
fleet file sets, `mgmt_vrf_spec` (a mgmt_vrf.model.HostSpec) and `mgmt_vrf_fleet_file`.

A broken fleet file stops the run here, before any host is contacted: every problem is
printed to stderr and pyinfra exits with status 2.
"""

import os
import sys
from pathlib import Path
from typing import NoReturn

# pyinfra exec()s this file rather than importing it, and only adds the current directory
# to sys.path: make the package importable when run from elsewhere.
_ROOT = Path(__file__).resolve().parent
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from mgmt_vrf.fleet_file import FleetError, load_fleet  # noqa: E402
from mgmt_vrf.pyinfra.inventory_data import inventory_groups  # noqa: E402

_ENV = "MGMT_VRF_FLEET"
_LAB_FLEET = _ROOT / "lab" / "run" / "fleet.toml"


def _fail(path: Path, messages: list[str] | tuple[str, ...], hint: str = "") -> NoReturn:
    count = len(messages)
    noun = "problem" if count == 1 else "problems"
    print(
        f"mgmt-vrf: fleet file {path}: {count} {noun}; no host was contacted:",
        file=sys.stderr,
    )
    for message in messages:
        print(f"  {message}", file=sys.stderr)
    if hint:
        print(hint, file=sys.stderr)
    sys.exit(2)


def _groups() -> dict[str, list[tuple[str, dict[str, object]]]]:
    given = os.environ.get(_ENV)
    chosen = (given or "").strip()
    if given is not None and not chosen:
        # Set but blank is a mistake (an empty shell variable), never a request for the lab.
        _fail(
            Path(f"${_ENV}"),
            [
                f"{_ENV} is set but {'empty' if not given else 'only whitespace'}; set it to "
                f"your fleet file, or unset it to use the lab fleet {_LAB_FLEET}"
            ],
        )
    path = Path(chosen) if chosen else _LAB_FLEET
    if not chosen and not path.exists():
        _fail(
            path,
            [
                f"{path}: no lab fleet yet; run `python -m lab up` to start the lab and write "
                f"it, or set {_ENV}=/path/to/fleet.toml (format: fleet.example.toml)"
            ],
        )
    try:
        fleet = load_fleet(path)
    except FleetError as exc:
        hint = ""
        if not path.exists():
            hint = f"{_ENV} points to {chosen}; set it to an existing fleet file"
        _fail(path, exc.messages, hint)
    return inventory_groups(fleet)


# pyinfra turns every public module-level list of hosts into a group.
globals().update(_groups())
