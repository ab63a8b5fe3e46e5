#!/bin/sh
# First process of a lab host, already inside its own network, mount, PID, UTS and
# cgroup namespaces: builds the host's filesystem view and hands over to hostboot.py.
set -e
name=$1
state=$2
guest=$(dirname "$0")
r=$state/hosts/$name
mount --make-rprivate /
mount -t overlay "lab-$name" -o "lowerdir=$state/base:/.lab/ro,upperdir=$r/upper,workdir=$r/work" "$r/root"
mount -t proc proc "$r/root/proc"
mount -t sysfs sysfs "$r/root/sys"
mount -t cgroup2 cgroup2 "$r/root/sys/fs/cgroup"
mount --rbind /dev "$r/root/dev"
mount -t devpts -o newinstance,ptmxmode=0666,mode=620 devpts "$r/root/dev/pts"
mount --bind "$r/root/dev/pts/ptmx" "$r/root/dev/ptmx"
mount -t tmpfs tmpfs "$r/root/dev/shm"
mount -t tmpfs -o mode=755 tmpfs "$r/root/run"
mount -t tmpfs -o mode=1777 tmpfs "$r/root/tmp"
mkdir -p "$r/root/run/lab"
cp "$r/network.batch" "$r/root/run/lab/network.batch"
hostname "$name"
exec chroot "$r/root" /usr/bin/python3 "$guest/hostboot.py" "$name"
