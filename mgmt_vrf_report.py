"""The drift report from a checkout: `python -m mgmt_vrf_report` (see mgmt_vrf/pyinfra/report.py;
installed, the same command is `mgmt-vrf-report`). Its default inventory is this project's
inventory.py, which reads the fleet file of $MGMT_VRF_FLEET.
"""

import sys
from pathlib import Path

from mgmt_vrf.pyinfra.report import main

if __name__ == "__main__":
    sys.exit(
        main(
            prog="python -m mgmt_vrf_report",
            inventory=str(Path(__file__).resolve().parent / "inventory.py"),
        )
    )
