"""Converge every host of the inventory to its management-VRF spec.

    pyinfra inventory.py deploy.py          # converge the fleet, one line per change
    pyinfra inventory.py deploy.py --diff   # the same, with each file's diff
    pyinfra inventory.py deploy.py --dry    # show each host's commands and file diffs

Wiring only: inventory.py puts each host's validated spec in its data, the deploy in
mgmt_vrf/pyinfra/deploy.py does the work (a pyinfra project of its own calls it the same way).
"""

from mgmt_vrf.pyinfra.deploy import management_vrf

management_vrf()
