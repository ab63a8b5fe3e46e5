#!/bin/sh
# Builds a NetworkManager the lab's NetworkManager mode runs, configured the way RHEL builds
# it (ifcfg-rh as the default settings plugin where that release has it, internal DHCP),
# with the features a lab host has no use for off:
#
#   sh lab/build-networkmanager.sh [VERSION ...]      (default: 1.42.4)
#
#   1.40.16  AlmaLinux 8.8 to 8.10   upstream tarball in lab/vendor, ifcfg-rh + keyfile
#   1.42.4   AlmaLinux 9.2           Debian 12's source package, ifcfg-rh + keyfile
#   1.48.10  AlmaLinux 9.5           upstream tarball in lab/vendor, ifcfg-rh + keyfile
#   1.54.0   AlmaLinux 10.1          upstream tarball in lab/vendor, keyfile only
#
# Debian's own daemon has no ifcfg-rh plugin and does not export the symbols that plugin
# needs, so the daemon is always built here. nmcli and nm-online are of the same version:
# Debian's for 1.42.4, built from the same tree (with its libnm) for the others.
#
# Output: lab/cache/networkmanager-VERSION/ (LAB_NM_DIR moves it when one version is asked);
# a second run finds it there and does nothing. Safe to run again; starts no service.
set -eu
cd "$(dirname "$0")/.."
[ "$#" -gt 0 ] || set -- 1.42.4
for version in "$@"; do
    case $version in
    1.40.16 | 1.42.4 | 1.48.10 | 1.54.0) ;;
    *)
        echo "lab: no NetworkManager $version here: build 1.40.16, 1.42.4, 1.48.10 or 1.54.0" >&2
        exit 2
        ;;
    esac
done
if [ "$#" -gt 1 ] && [ -n "${LAB_NM_DIR:-}" ]; then
    echo "lab: LAB_NM_DIR names one directory; build one version at a time with it" >&2
    exit 2
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive

debian_source() {
    # apt-get source needs the source index of the archives the machine installs from: its
    # own deb entries (deb822 stanzas and one-line ones), turned into deb-src. No mirror is
    # named here.
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
    # As root, apt warns that its sandbox user cannot write here; the download is the same.
    apt-get source -qq network-manager </dev/null 2>&1 >/dev/null |
        grep -v '^W: Download is performed unsandboxed' >&2 || true
    apt-get download -qq network-manager </dev/null 2>&1 |
        grep -v '^W: Download is performed unsandboxed' >&2 || true
}

vendor_source() {
    tarball=NetworkManager-$1.tar.xz
    (cd "$repo/lab/vendor" && grep " $tarball\$" SHA256SUMS | sha256sum -c --quiet -) || {
        echo "lab: lab/vendor/$tarball does not match lab/vendor/SHA256SUMS; not building it" >&2
        exit 1
    }
    tar -xJf "$repo/lab/vendor/$tarball"
}

build() {
    version=$1
    out=${LAB_NM_DIR:-$repo/lab/cache/networkmanager-$version}
    if [ -f "$out/complete" ]; then
        echo "lab: NetworkManager $version already built in $out"
        return
    fi
    work=$(mktemp -d /var/tmp/lab-networkmanager.XXXXXX)
    chmod 755 "$work"
    cd "$work"
    # What differs between the releases: where the source comes from, whether the release
    # has ifcfg-rh (EL10 dropped it), and the options a release added or removed.
    ifcfg=true
    nmcli=true
    extra="-Ddhcpcanon=no"
    case $version in
    1.42.4)
        debian_source
        s=$work/network-manager-$version
        nmcli=false
        ;;
    1.54.0)
        vendor_source "$version"
        s=$work/NetworkManager-$version
        ifcfg=false
        extra="-Dnbft=false"
        ;;
    1.48.10)
        vendor_source "$version"
        s=$work/NetworkManager-$version
        # Its copy of systemd has sd_dhcp_duid_set_uuid call a function that copy leaves
        # out; NetworkManager never calls it, but Debian 12's linker will not link the
        # reference (upstream's does). Left unresolved, as dead code.
        extra="$extra -Dc_link_args=-Wl,--unresolved-symbols=ignore-in-object-files"
        ;;
    *)
        vendor_source "$version"
        s=$work/NetworkManager-$version
        ;;
    esac
    [ -d "$s" ] || { echo "lab: no NetworkManager $version source in $work" >&2; exit 1; }
    if $ifcfg; then
        plugins="-Difcfg_rh=true -Dconfig_plugins_default=ifcfg-rh"
    else
        plugins="-Difcfg_rh=false -Dconfig_plugins_default=keyfile"
    fi
    if $nmcli; then
        clients="-Dnmcli=true -Dreadline=libreadline"
    else
        clients="-Dnmcli=false -Dreadline=none"
    fi

    echo "lab: building NetworkManager $version (a few minutes)"
    t0=$(date +%s)
    # -O2 as RHEL builds it (below -O2, 1.48 does not link: code the optimiser drops calls a
    # function its copy of systemd lacks), without debug information, which the lab has no
    # use for. $plugins $clients $extra: lists of options.
    # shellcheck disable=SC2086
    meson setup -Doptimization=2 -Ddebug=false -Dprefix=/usr -Dsysconfdir=/etc -Dlocalstatedir=/var \
        -Dlibdir=lib/x86_64-linux-gnu $plugins $clients $extra -Difupdown=false \
        -Dconfig_dhcp_default=internal -Ddhclient=no -Ddhcpcd=no \
        -Dsession_tracking=no -Dsession_tracking_consolekit=false -Dsuspend_resume=consolekit \
        -Dsystemd_journal=false -Dconfig_logging_backend_default=syslog \
        -Dpolkit=false -Dselinux=false -Dlibaudit=no -Dwext=false -Dwifi=false -Dppp=false \
        -Dmodem_manager=false -Dofono=false -Dconcheck=false -Dteamdctl=false -Dovs=false \
        -Dnmtui=false -Dnm_cloud_setup=false -Dbluez5_dun=false -Debpf=false \
        -Dintrospection=false -Dvapi=false -Ddocs=false -Dtests=no -Dfirewalld_zone=false \
        -Dlibpsl=false -Dcrypto=null -Dqt=false -Dmore_asserts=no \
        -Dsystemdsystemunitdir=no -Dudev_dir=no \
        "$s" build >meson.log 2>&1 || { tail -30 meson.log >&2; exit 1; }
    plugin=src/core/settings/plugins/ifcfg-rh/libnm-settings-plugin-ifcfg-rh.so
    targets=src/core/NetworkManager
    if $ifcfg; then
        targets="$targets $plugin"
    fi
    if $nmcli; then
        targets="$targets src/nmcli/nmcli src/nm-online/nm-online"
    fi
    # shellcheck disable=SC2086 # a list of targets
    ninja -C build $targets >ninja.log 2>&1 || { tail -30 ninja.log >&2; exit 1; }

    rm -rf "$out"
    mkdir -p "$out"
    cp build/src/core/NetworkManager "$s/src/core/org.freedesktop.NetworkManager.conf" "$out/"
    if $ifcfg; then
        # The D-Bus name the ifcfg-rh plugin takes, beside the daemon's own.
        cp "build/$plugin" "$s/src/core/settings/plugins/ifcfg-rh/nm-ifcfg-rh.conf" "$out/"
    fi
    if $nmcli; then
        cp build/src/nmcli/nmcli build/src/nm-online/nm-online "$out/"
        # Their libnm, of the same version: the lab puts it where the host's loader looks.
        cp -L build/src/libnm-client-impl/libnm.so.0 "$out/libnm.so.0"
    else
        dpkg-deb -x network-manager_*.deb deb
        cp deb/usr/bin/nmcli deb/usr/bin/nm-online "$out/"
    fi
    # Where the daemon looks for its plugins (compiled in), for the lab to place ifcfg-rh there.
    sed -n 's/^#define NMPLUGINDIR "\(.*\)"$/\1/p' build/config-extra.h >"$out/plugindir"
    [ -s "$out/plugindir" ] || { echo "lab: NMPLUGINDIR not found in build/config-extra.h" >&2; exit 1; }
    "$out/NetworkManager" --version >"$out/complete"
    echo "lab: NetworkManager $(cat "$out/complete") built in $(($(date +%s) - t0)) s: $out"
    cd "$repo"
    rm -rf "$work"
    work=""
}

repo=$PWD
work=""
trap 'rm -rf "$work"' EXIT
$SUDO apt-get install -y -qq --no-install-recommends dpkg-dev meson ninja-build pkg-config gcc \
    xsltproc libglib2.0-dev libudev-dev libndp-dev libdbus-1-dev uuid-dev libnm0 libreadline8 \
    libreadline-dev </dev/null >/dev/null
for version in "$@"; do
    build "$version"
done
