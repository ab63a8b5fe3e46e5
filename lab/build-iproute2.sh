#!/bin/sh
# Builds the `ip` of AlmaLinux 8 (iproute 5.18.0) from the upstream tarball in lab/vendor,
# linked as RHEL links it where Debian 12 has the library (libmnl for the kernel's extended
# error messages, libcap, libelf; not libbpf, whose Debian version 5.18 predates). The lab's
# AlmaLinux 8 shaped hosts (LAB_IPROUTE2=5.18.0) run it as their `ip`.
#
# Output: lab/cache/iproute2-5.18.0/ip (LAB_IPROUTE2_DIR moves it); a second run finds it
# there and does nothing. Starts no service.
set -eu
cd "$(dirname "$0")/.."
version=5.18.0
tarball=$PWD/lab/vendor/iproute2-$version.tar.xz
out=${LAB_IPROUTE2_DIR:-$PWD/lab/cache/iproute2-$version}
if [ -f "$out/complete" ]; then
    echo "lab: iproute2 $version already built in $out"
    exit 0
fi
(cd lab/vendor && grep " iproute2-$version.tar.xz\$" SHA256SUMS | sha256sum -c --quiet -) || {
    echo "lab: $tarball does not match lab/vendor/SHA256SUMS; not building it" >&2
    exit 1
}

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get install -y -qq --no-install-recommends gcc make pkg-config libmnl-dev libcap-dev \
    libelf-dev </dev/null >/dev/null

work=$(mktemp -d /var/tmp/lab-iproute2.XXXXXX)
trap 'rm -rf "$work"' EXIT
echo "lab: building iproute2 $version (about a minute)"
t0=$(date +%s)
tar -xJf "$tarball" -C "$work"
s=$work/iproute2-$version
(cd "$s" && ./configure >"$work/configure.log" 2>&1) || { tail -30 "$work/configure.log" >&2; exit 1; }
make -C "$s" -j"$(nproc)" SUBDIRS="lib ip" >"$work/make.log" 2>&1 || { tail -30 "$work/make.log" >&2; exit 1; }
"$s/ip/ip" -V | grep -q "iproute2-$version" || { echo "lab: the built ip is not $version" >&2; exit 1; }

rm -rf "$out"
mkdir -p "$out"
cp "$s/ip/ip" "$out/ip"
touch "$out/complete"
echo "lab: iproute2 $version built in $(($(date +%s) - t0)) s: $out"
