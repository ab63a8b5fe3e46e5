"""The tests of this folder need the second lab, shaped like AlmaLinux 8 to 10 (see
lab/README.md, "NetworkManager mode"). Run alone, they bring up their own beside the default
lab, cgroup v1 with iproute 5.18.0 as the hosts' `ip`: lab1 shaped like AlmaLinux 8.10
(NetworkManager 1.40.16), lab2 like AlmaLinux 9.5 (1.48.10) and lab3 like AlmaLinux 10.1
(1.54.0, keyfiles only) for the keyfile hosts, and lab4 an AlmaLinux 8 host without
NetworkManager, for the legacy network-scripts backend.
scripts/test.sh sets the same environment for its second run, which also takes the services
tests."""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

for key, value in {
    "LAB_NETWORK": "networkmanager",
    "LAB_NM": "1.40.16,1.48.10,1.54.0,none",
    "LAB_CGROUP": "v1",
    "LAB_IPROUTE2": "5.18.0",
    "LAB_HOSTS": "4",
    "LAB_RUN_DIR": str(ROOT / "lab" / "run-el8"),
    "LAB_BASE_PORT": "2300",
}.items():
    os.environ.setdefault(key, value)

from lab.pytest_fixture import lab, pytest_terminal_summary  # noqa: E402, F401
