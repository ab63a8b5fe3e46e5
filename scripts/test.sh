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
# With no arguments, every test: the services inside the VRF once more, on a lab booted with
# cgroup v1 (AlmaLinux 8's default; the run above is cgroup v2, AlmaLinux 9's), beside no
# other lab (the one above is down by now unless LAB_KEEP=1).
if [ "$#" -eq 0 ]; then
    LAB_CGROUP=v1 LAB_HOSTS=1 LAB_RUN_DIR="$PWD/lab/run-cgroup-v1" LAB_BASE_PORT=2300 \
        python3 -m pytest --durations=10 tests/e2e/test_services_lab.py
fi
