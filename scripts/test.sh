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
# The second lab's NetworkManagers build meanwhile, at the lowest priority: the lab above
# keeps the CPUs it needs, the build takes what it leaves (about three minutes of them).
if [ "$#" -eq 0 ]; then
    nm_log=$(mktemp /var/tmp/mgmt-vrf-nm-build.XXXXXX)
    nice -n 19 sh lab/build-networkmanager.sh 1.40.16 1.48.10 1.54.0 >"$nm_log" 2>&1 &
    nm_build=$!
fi
stage tests python3 -m pytest --durations=25 "$@"
# With no arguments, every test: then a second lab, cgroup v1 (where the run above is
# cgroup v2 like AlmaLinux 9), whose hosts run the real NetworkManager and AlmaLinux 8's `ip`:
# lab1 is shaped like AlmaLinux 8.10 (NetworkManager 1.40.16, ifcfg-rh), lab2 like 9.5
# (1.48.10) and lab3 like 10.1 (1.54.0, keyfiles only) for the keyfile hosts. The
# NetworkManager tests, and the services inside the VRF once more. It runs beside no other
# lab (the one above is down by now unless LAB_KEEP=1).
if [ "$#" -eq 0 ]; then
    # Its NetworkManagers (started above) and its `ip` (iproute 5.18.0), from the tarballs in
    # lab/vendor: built once, then kept in lab/cache.
    status=0
    wait "$nm_build" || status=$?
    cat "$nm_log"
    # Its own figures ("built in N s"), for the summary at the end.
    times="$times
$(sed -n 's/^lab: NetworkManager \(.*\) built in \([0-9]*\) s.*/stage build-networkmanager \1, beside the tests: \2 s/p' "$nm_log")"
    rm -f "$nm_log"
    [ "$status" -eq 0 ] || exit "$status"
    stage build-iproute2 sh lab/build-iproute2.sh
    stage el8-lab env LAB_CGROUP=v1 LAB_NETWORK=networkmanager LAB_NM=1.40.16,1.48.10,1.54.0 \
        LAB_IPROUTE2=5.18.0 LAB_HOSTS=3 \
        LAB_RUN_DIR="$PWD/lab/run-el8" LAB_BASE_PORT=2300 python3 -m pytest --durations=10 \
        tests/networkmanager tests/e2e/test_services_lab.py
fi
echo "time per stage:$times"
