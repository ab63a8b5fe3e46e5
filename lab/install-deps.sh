#!/bin/sh
# Installs what the lab and the tests need on a Debian 12 machine (shellcheck: the unit
# tests check every generated script with it; GLib: they compare our keyfile reader with
# GLib's own). Safe to run again.
# It never starts services on this machine: a temporary policy-rc.d refuses
# every start that package scripts request (exit 101), unless one already exists.
set -eu

PACKAGES="qemu-system-x86 qemu-utils linux-image-amd64 busybox-static openssh-server openssh-client \
iproute2 iputils-ping systemd systemd-container dbus nftables socat kmod procps psmisc tcpdump curl \
shellcheck libglib2.0-0 dnsmasq-base"

need=""
for p in $PACKAGES; do
    if ! dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
        need="$need $p"
    fi
done

if [ -z "$need" ]; then
    echo "lab: all packages present"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

created_policy=""
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod 755 /usr/sbin/policy-rc.d
    created_policy=1
fi
cleanup() {
    if [ -n "$created_policy" ]; then
        $SUDO rm -f /usr/sbin/policy-rc.d
    fi
}
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
# $need is a list of package names, split into words on purpose.
# shellcheck disable=SC2086
if ! $SUDO apt-get install -y --no-install-recommends $need </dev/null; then
    $SUDO apt-get update </dev/null
    $SUDO apt-get install -y --no-install-recommends $need </dev/null
fi
echo "lab: installed$need"
