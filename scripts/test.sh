#!/bin/sh
# Runs every test: lint and types, the unit tests, and the lab tests on a real VRF kernel.
# Installs what is missing first, so it works on a fresh machine.
set -eu
cd "$(dirname "$0")/.."
sh scripts/setup.sh
python3 -m ruff format --check .
python3 -m ruff check .
python3 -m mypy .
python3 -m pytest --durations=25 "$@"
# With no arguments, every test: then a second lab shaped like AlmaLinux 8 (cgroup v1, where
# the run above is cgroup v2 like AlmaLinux 9) whose hosts run the real NetworkManager with
# the ifcfg-rh plugin: the NetworkManager tests, and the services inside the VRF once more.
# It runs beside no other lab (the one above is down by now unless LAB_KEEP=1).
if [ "$#" -eq 0 ]; then
    # Its NetworkManager: built once (about a minute), then kept in lab/cache.
    sh lab/build-networkmanager.sh
    LAB_CGROUP=v1 LAB_NETWORK=networkmanager LAB_HOSTS=1 LAB_RUN_DIR="$PWD/lab/run-el8" \
        LAB_BASE_PORT=2300 python3 -m pytest --durations=10 tests/networkmanager \
        tests/e2e/test_services_lab.py
fi
