#!/bin/sh
# Runs every test: lint and types, the unit tests, and the lab tests on a real VRF kernel.
# Installs what is missing first, so it works on a fresh machine. Each stage's wall time is
# printed as it ends ("stage NAME: N s"), and all of them again at the end.
set -eu
cd "$(dirname "$0")/.."
times=""
stage() {
    name=$1
    shift
    t0=$(date +%s)
    "$@"
    took=$(($(date +%s) - t0))
    echo "stage $name: $took s"
    times="$times
stage $name: $took s"
}
stage setup sh scripts/setup.sh
stage format python3 -m ruff format --check .
stage lint python3 -m ruff check .
stage types python3 -m mypy .
stage tests python3 -m pytest --durations=25 "$@"
# With no arguments, every test: then a second lab shaped like AlmaLinux 8.10 (cgroup v1,
# where the run above is cgroup v2 like AlmaLinux 9) whose hosts run AlmaLinux 8.10's
# NetworkManager (1.40.16) with the ifcfg-rh plugin, and AlmaLinux 8's `ip`: the
# NetworkManager tests, and the services inside the VRF once more.
# It runs beside no other lab (the one above is down by now unless LAB_KEEP=1).
if [ "$#" -eq 0 ]; then
    # Its NetworkManager and its `ip` (iproute 5.18.0), from the tarballs in lab/vendor:
    # built once (about two minutes and 10 s), then kept in lab/cache.
    stage build-networkmanager sh lab/build-networkmanager.sh 1.40.16
    stage build-iproute2 sh lab/build-iproute2.sh
    stage el8-lab env LAB_CGROUP=v1 LAB_NETWORK=networkmanager LAB_NM=1.40.16 LAB_IPROUTE2=5.18.0 LAB_HOSTS=1 \
        LAB_RUN_DIR="$PWD/lab/run-el8" LAB_BASE_PORT=2300 python3 -m pytest --durations=10 \
        tests/networkmanager tests/e2e/test_services_lab.py
fi
echo "time per stage:$times"
