#!/bin/sh
# PID 1 of the lab VM after switch_root: kernel filesystems, then the Python agent.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mkdir -p /dev/pts /dev/shm
mount -t devpts -o ptmxmode=0666 devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs -o mode=755 tmpfs /run
mount -t tmpfs -o mode=1777 tmpfs /tmp
hostname labvm
run=$(sed -n 's/.*lab\.run=\([^ ]*\).*/\1/p' /proc/cmdline)
here=$(dirname "$0")
exec /usr/bin/python3 "$here/agent.py" init "$run"
