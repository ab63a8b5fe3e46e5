"""Converge every host of the inventory to its management-VRF spec.

    pyinfra inventory.py deploy.py          # converge the fleet
    pyinfra inventory.py deploy.py --dry    # show each host's commands and file diffs

Wiring only: inventory.py puts each host's validated spec in its data, the operation in
operations/vrf.py does the work.
"""

from pyinfra import host

from mgmt_vrf.fleet_file import spec_from_data
from operations.vrf import converge

spec = host.data.get("mgmt_vrf_spec")
if spec is None:
    raise SystemExit(
        f"mgmt-vrf: host {host.name} has no mgmt_vrf_spec in its data; "
        "run this deploy with the project's inventory.py (it reads the fleet file)"
    )

converge(name="Converge management VRFs", spec=spec_from_data(spec, source=f"host {host.name}"))
