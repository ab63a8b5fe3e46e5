#!/bin/sh
# Builds the NetworkManager the lab's NetworkManager mode runs: NetworkManager 1.42.4 (what
# AlmaLinux 9.2 ships) with the ifcfg-rh settings plugin, from Debian 12's source package.
# Debian's own daemon has no ifcfg-rh plugin and does not export the symbols that plugin
# needs, so both are built here, configured the way RHEL builds them (ifcfg-rh as the
# default settings plugin, internal DHCP) with the features a lab host has no use for off.
# nmcli and nm-online are Debian's, of the same version (they talk to the daemon over D-Bus).
#
# Output: lab/cache/networkmanager-1.42.4/ (whatever LAB_RUN_DIR is); a second run finds it
# there and does nothing. Safe to run again; starts no service.
set -eu
cd "$(dirname "$0")/.."
version=1.42.4
out=${LAB_NM_DIR:-$PWD/lab/cache/networkmanager-$version}
if [ -f "$out/complete" ]; then
    echo "lab: NetworkManager $version already built in $out"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
# apt-get source needs the source index of the archives the machine installs from: its own
# deb entries (deb822 stanzas and one-line ones), turned into deb-src. No mirror is named here.
src=/etc/apt/sources.list.d/mgmt-vrf-lab-src.sources
if [ ! -f "$src" ]; then
    own_list=${src%.sources}.list
    for f in /etc/apt/sources.list.d/*.sources; do
        if [ -f "$f" ] && [ "$f" != "$src" ]; then
            sed 's/^Types:.*$/Types: deb-src/' "$f"
            echo
        fi
    done | $SUDO tee /var/tmp/mgmt-vrf-lab-src.sources >/dev/null
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        if [ -f "$f" ] && [ "$f" != "$own_list" ]; then
            sed -n 's/^[[:space:]]*deb[[:space:]]/deb-src /p' "$f"
        fi
    done | $SUDO tee "$own_list" >/dev/null
    $SUDO mv /var/tmp/mgmt-vrf-lab-src.sources "$src"
    $SUDO apt-get update -qq </dev/null
fi
$SUDO apt-get install -y -qq --no-install-recommends dpkg-dev meson ninja-build pkg-config gcc \
    xsltproc \
    libglib2.0-dev libudev-dev libndp-dev libdbus-1-dev uuid-dev libnm0 libreadline8 </dev/null >/dev/null

work=$(mktemp -d /var/tmp/lab-networkmanager.XXXXXX)
trap 'rm -rf "$work"' EXIT
chmod 755 "$work"
cd "$work"
# As root, apt warns that its sandbox user cannot write here; the download is the same.
apt-get source -qq network-manager </dev/null 2>&1 >/dev/null | grep -v '^W: Download is performed unsandboxed' >&2 || true
apt-get download -qq network-manager </dev/null 2>&1 | grep -v '^W: Download is performed unsandboxed' >&2 || true
s=$work/network-manager-$version
[ -d "$s" ] || { echo "lab: no network-manager-$version source in $work" >&2; exit 1; }

echo "lab: building NetworkManager $version with ifcfg-rh (a few minutes)"
t0=$(date +%s)
meson setup -Dprefix=/usr -Dsysconfdir=/etc -Dlocalstatedir=/var \
    -Dlibdir=lib/x86_64-linux-gnu \
    -Difcfg_rh=true -Dconfig_plugins_default=ifcfg-rh -Difupdown=false \
    -Dconfig_dhcp_default=internal -Ddhclient=no -Ddhcpcd=no -Ddhcpcanon=no \
    -Dsession_tracking=no -Dsession_tracking_consolekit=false -Dsuspend_resume=consolekit \
    -Dsystemd_journal=false -Dconfig_logging_backend_default=syslog \
    -Dpolkit=false -Dselinux=false -Dlibaudit=no -Dwext=false -Dwifi=false -Dppp=false \
    -Dmodem_manager=false -Dofono=false -Dconcheck=false -Dteamdctl=false -Dovs=false \
    -Dnmcli=false -Dnmtui=false -Dnm_cloud_setup=false -Dbluez5_dun=false -Debpf=false \
    -Dintrospection=false -Dvapi=false -Ddocs=false -Dtests=no -Dfirewalld_zone=false \
    -Dlibpsl=false -Dcrypto=null -Dqt=false -Dreadline=none -Dmore_asserts=no \
    -Dsystemdsystemunitdir=no -Dudev_dir=no \
    "$s" build >meson.log 2>&1 || { tail -30 meson.log >&2; exit 1; }
plugin=src/core/settings/plugins/ifcfg-rh/libnm-settings-plugin-ifcfg-rh.so
ninja -C build src/core/NetworkManager "$plugin" >ninja.log 2>&1 || { tail -30 ninja.log >&2; exit 1; }

rm -rf "$out"
mkdir -p "$out"
cp build/src/core/NetworkManager "build/$plugin" "$out/"
# D-Bus policies: the daemon's name, and the one the ifcfg-rh plugin takes.
cp "$s/src/core/org.freedesktop.NetworkManager.conf" \
    "$s/src/core/settings/plugins/ifcfg-rh/nm-ifcfg-rh.conf" "$out/"
dpkg-deb -x network-manager_*.deb deb
cp deb/usr/bin/nmcli deb/usr/bin/nm-online "$out/"
# Where the daemon looks for its plugins (compiled in), for the lab to place the plugin there.
sed -n 's/^#define NMPLUGINDIR "\(.*\)"$/\1/p' build/config-extra.h >"$out/plugindir"
[ -s "$out/plugindir" ] || { echo "lab: NMPLUGINDIR not found in build/config-extra.h" >&2; exit 1; }
"$out/NetworkManager" --version >"$out/complete"
echo "lab: NetworkManager $(cat "$out/complete") built in $(($(date +%s) - t0)) s: $out"
