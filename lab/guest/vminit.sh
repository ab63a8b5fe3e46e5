#!/bin/sh
# PID 1 of the lab VM after switch_root: kernel filesystems, then the Python agent.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mkdir -p /dev/pts /dev/shm
mount -t devpts -o ptmxmode=0666 devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs -o mode=755 tmpfs /run
mount -t tmpfs -o mode=1777 tmpfs /tmp
# v1: the legacy hierarchies an AlmaLinux 8 boot has (no cgroup2 in /sys/fs/cgroup, so the
# hosts' systemd runs in legacy mode too); the agent keeps its own cgroup2 for bookkeeping.
if grep -q 'lab\.cgroup=v1' /proc/cmdline; then
    mount -t tmpfs -o mode=755 cgroup /sys/fs/cgroup
    mkdir /sys/fs/cgroup/systemd
    mount -t cgroup -o none,name=systemd cgroup /sys/fs/cgroup/systemd
    for c in $(awk 'NR > 1 && $4 == 1 { print $1 }' /proc/cgroups); do
        mkdir "/sys/fs/cgroup/$c"
        mount -t cgroup -o "$c" cgroup "/sys/fs/cgroup/$c"
    done
    mkdir /run/lab-cgroup2
    mount -t cgroup2 cgroup2 /run/lab-cgroup2
else
    mount -t cgroup2 cgroup2 /sys/fs/cgroup
fi
hostname labvm
run=$(sed -n 's/.*lab\.run=\([^ ]*\).*/\1/p' /proc/cmdline)
here=$(dirname "$0")
exec /usr/bin/python3 "$here/agent.py" init "$run"
