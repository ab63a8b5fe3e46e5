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
    rc=0
    "$@" || rc=$?
    took=$(($(date +%s) - t0))
    echo "stage $name: $took s"
    times="$times
stage $name: $took s"
    return "$rc"
}
stage setup sh scripts/setup.sh
# With no arguments, every test. The first lab's NetworkManager (1.42.4, AlmaLinux 9.2's)
# builds while lint, types and the unit tests run: that lab cannot start without it.
if [ "$#" -eq 0 ]; then
    first_log=$(mktemp /var/tmp/mgmt-vrf-nm-build.XXXXXX)
    sh lab/build-networkmanager.sh 1.42.4 >"$first_log" 2>&1 &
    first_build=$!
fi
stage format python3 -m ruff format --check .
stage lint python3 -m ruff check .
stage types python3 -m mypy .
if [ "$#" -gt 0 ]; then
    stage tests python3 -m pytest --durations=25 "$@"
    echo "time per stage:$times"
    exit 0
fi
stage unit python3 -m pytest --durations=10 tests/unit
status=0
wait "$first_build" || status=$?
cat "$first_log"
[ "$status" -eq 0 ] || exit "$status"
# The second lab's NetworkManagers build meanwhile, at the lowest priority: the first lab
# keeps the CPUs it needs, the build takes what it leaves (about four minutes of them each).
nm_log=$(mktemp /var/tmp/mgmt-vrf-nm-build.XXXXXX)
nice -n 19 sh lab/build-networkmanager.sh 1.40.16 1.48.10 1.54.0 >"$nm_log" 2>&1 &
nm_build=$!
# The first lab: cgroup v2, hosts shaped like AlmaLinux 9.2 (NetworkManager 1.42.4 with
# ifcfg-rh), the whole suite of the lab and the deploy. It runs beside the second lab below
# (each in its own VM, run directory and ports): a lab VM leaves the CPUs idle for about 40%
# of its time, waiting on the hosts' timers, and the two labs together fill that. Its output
# is printed whole when it ends, not mixed with the second lab's.
first_lab_log=$(mktemp /var/tmp/mgmt-vrf-first-lab.XXXXXX)
(
    t0=$(date +%s)
    status=0
    python3 -m pytest --durations=25 tests/lab tests/e2e || status=$?
    echo "stage lab, beside the second: $(($(date +%s) - t0)) s"
    exit "$status"
) >"$first_lab_log" 2>&1 &
first_lab=$!
# Then the second lab, cgroup v1 (where the one above is cgroup v2 like AlmaLinux 9), whose
# hosts run AlmaLinux 8's `ip`: lab1 is shaped like AlmaLinux 8.10 (NetworkManager 1.40.16,
# ifcfg-rh), lab2 like 9.5 (1.48.10), lab3 like 10.1 (1.54.0, keyfiles only) and lab4 like an
# AlmaLinux 8 host without NetworkManager (the legacy network-scripts). The tests of those
# versions and that backend, a rollout in waves across three of them, and the services
# inside the VRF once more.
status=0
wait "$nm_build" || status=$?
cat "$nm_log"
if [ "$status" -ne 0 ]; then
    wait "$first_lab" || true
    cat "$first_lab_log"
    exit "$status"
fi
# The builds' own figures ("built in N s"), for the summary at the end.
times="$times
$(sed -n 's/^lab: NetworkManager \(.*\) built in \([0-9]*\) s.*/stage build-networkmanager \1, beside: \2 s/p' "$first_log" "$nm_log")"
rm -f "$first_log" "$nm_log"
second_status=0
stage build-iproute2 sh lab/build-iproute2.sh || second_status=$?
if [ "$second_status" -eq 0 ]; then
    stage el8-lab env LAB_CGROUP=v1 LAB_NETWORK=networkmanager LAB_NM=1.40.16,1.48.10,1.54.0,none \
        LAB_IPROUTE2=5.18.0 LAB_HOSTS=4 \
        LAB_RUN_DIR="$PWD/lab/run-el8" LAB_BASE_PORT=2300 python3 -m pytest --durations=10 \
        tests/networkmanager tests/e2e/test_services_lab.py || second_status=$?
fi
first_status=0
wait "$first_lab" || first_status=$?
echo "--- the first lab (tests/lab tests/e2e), which ran beside the second:"
cat "$first_lab_log"
times="$times
$(grep '^stage lab, beside' "$first_lab_log")"
rm -f "$first_lab_log"
echo "time per stage:$times"
[ "$first_status" -eq 0 ] || exit "$first_status"
exit "$second_status"
