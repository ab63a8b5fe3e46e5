"""Runs inside the lab VM as root: builds the namespaces and answers the controller.

`init RUN_DIR` is the VM's PID 1 (started by vminit.sh); every other verb is run by
the controller over the VM's control sshd. Output of `status` is JSON on stdout.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from lab import topology as t  # noqa: E402
from lab.guest import blog  # noqa: E402
from lab.paths import (  # noqa: E402
    BLOG_RELEASE,
    KEYFILE_ONLY,
    NETWORKMANAGER_RELEASES,
    host_networkmanager,
)

STATE = Path("/.lab/state")
GUEST = Path(__file__).resolve().parent
# The agent's own cgroup2 tree (cgroup.kill, cgroup.events); on a v1 boot it is mounted
# aside, where the hosts' systemd does not look for it.
CGROUP2 = {"v1": Path("/run/lab-cgroup2/lab"), "v2": Path("/sys/fs/cgroup/lab")}
# On a v1 boot each host's systemd manages its own subtree of the named systemd hierarchy.
SYSTEMD_V1 = Path("/sys/fs/cgroup/systemd/lab")
# "systemd": each host boots Debian's systemd in a systemd-nspawn container;
# "runner": hostboot.py stands in for it (lighter, for very large labs).
MODE = {"init": "systemd", "cgroup": "v2", "network": "script"}
LAB_NETWORK_UNIT = f"""[Unit]
Description=Lab network bring-up (stands in for NetworkManager)
DefaultDependencies=no
After=systemd-sysctl.service
Before=network.target network-online.target
Wants=network.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh {GUEST / "lab-network.sh"}

[Install]
WantedBy=multi-user.target
"""
# The network mode "networkmanager": units as AlmaLinux's NetworkManager package ships them
# (upstream 1.42's, paths as on EL), the daemon built by lab/build-networkmanager.sh.
NM_UNIT = """[Unit]
Description=Network Manager
Documentation=man:NetworkManager(8)
Wants=network.target
After=network-pre.target dbus.service
Before=network.target

[Service]
Type=dbus
BusName=org.freedesktop.NetworkManager
ExecReload=/usr/bin/busctl call org.freedesktop.NetworkManager /org/freedesktop/NetworkManager \
org.freedesktop.NetworkManager Reload u 0
ExecStart=/usr/sbin/NetworkManager --no-daemon
Restart=on-failure
KillMode=process
LimitNOFILE=65536

[Install]
WantedBy=multi-user.target
Also=NetworkManager-wait-online.service
"""
NM_WAIT_ONLINE_UNIT = """[Unit]
Description=Network Manager Wait Online
Documentation=man:nm-online(1) man:NetworkManager(8)
Requires=NetworkManager.service
After=NetworkManager.service
Before=network-online.target

[Service]
Type=oneshot
ExecStart=/usr/bin/nm-online -s -q
RemainAfterExit=yes
Environment=NM_ONLINE_TIMEOUT=60

[Install]
WantedBy=network-online.target
"""
NM_CONF = """# Configuration file for NetworkManager.
#
# See "man 5 NetworkManager.conf" for details.
#
# The directory /etc/NetworkManager/conf.d/ can contain additional .conf
# files. See "man 5 NetworkManager.conf" for details.

[main]
#plugins=ifcfg-rh

[logging]
# When debugging NetworkManager, enabling debug logging is of great help.
#level=DEBUG
#domains=ALL
"""

MASKED_UNITS = (
    "modprobe@.service",
    "sys-kernel-debug.mount",
    "sys-kernel-tracing.mount",
    "sys-kernel-config.mount",
    "sys-fs-fuse-connections.mount",
    "dev-hugepages.mount",
    "dev-mqueue.mount",
    "user@.service",
    "console-getty.service",
    "getty@.service",
    "systemd-tmpfiles-clean.timer",
    "e2scrub_reap.service",
    "systemd-update-utmp.service",
    "systemd-update-utmp-runlevel.service",
    # What the VM or systemd-nspawn already did: users, /dev, mounts, modules.
    "systemd-sysusers.service",
    "systemd-tmpfiles-setup-dev.service",
    "systemd-remount-fs.service",
    "systemd-modules-load.service",
    "kmod-static-nodes.service",
    # The journal stays in /run: nothing to flush.
    "systemd-journal-flush.service",
    # /run/user/0 at every root login (its start and stop are two more processes per session):
    # made once at boot instead (RUNTIME_DIR below).
    "user-runtime-dir@.service",
)
RUNTIME_DIR = "d /run/user/0 0700 root root -\n"
# Generators run at every boot before any unit loads; only rc.local's matters to a host (the
# blog's fix is an rc.local). The others read this machine's fstab and init scripts, or the
# kernel's command line, which are not the host's.
KEPT_GENERATORS = ("systemd-rc-local-generator",)
GENERATOR_DIR = Path("/usr/lib/systemd/system-generators")
# Debian's ssh.service checks its configuration before each start, and sshd re-executes itself
# for every connection: two sshd starts that cost a boot and each session dearly under
# emulation. `-r` keeps one sshd that forks.
SSH_DROPIN = """[Service]
ExecStartPre=
ExecStart=
ExecStart=/usr/sbin/sshd -D -r
"""
NSPAWN = (
    "systemd-nspawn",
    "--quiet",
    "--register=no",
    "--keep-unit",
    "--boot",
    "--console=passive",
    "--link-journal=no",
    "--resolv-conf=off",
    "--timezone=off",
    "--capability=all",
    # ip vrf exec loads a BPF program into the host's cgroup.
    "--system-call-filter=bpf",
)
MODULES = (
    "vrf",
    "veth",
    "dummy",
    "nf_tables",
    "nft_chain_nat",
    "nf_nat",
    "nf_conntrack",
    "nft_ct",
    "nft_redir",
)


def cgroup_dir() -> Path:
    return CGROUP2[MODE["cgroup"]]


def sh(*argv: str, check: bool = True, quiet: bool = False) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(argv, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {r.stderr.strip() or r.stdout.strip()}")
    if not quiet and r.returncode != 0:
        print(f"agent: {' '.join(argv)}: {r.stderr.strip()}", file=sys.stderr)
    return r


def ip_batch(lines: list[str], netns: str | None = None) -> None:
    argv = ["ip"] + (["-n", netns] if netns else []) + ["-batch", "-"]
    r = subprocess.run(argv, input="\n".join(lines) + "\n", capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"ip batch in {netns or 'root'}: {r.stderr.strip()}")


def write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def append_log(path: str | Path) -> int:
    """A file descriptor for a child's output; the child keeps it open, we need not."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)


def set_sysctl(path: str, value: str) -> None:
    Path("/proc/sys", path).write_text(value + "\n")


def config(run: Path) -> dict[str, object]:
    return json.loads((run / "vm.json").read_text())


# --- base layer --------------------------------------------------------------------


OS_RELEASE = """NAME="AlmaLinux"
VERSION="{version} ({name})"
ID="almalinux"
ID_LIKE="rhel centos fedora"
VERSION_ID="{version}"
PLATFORM_ID="platform:el{major}"
PRETTY_NAME="AlmaLinux {version} ({name})"
ANSI_COLOR="0;34"
LOGO="fedora-logo-icon"
CPE_NAME="cpe:/o:almalinux:almalinux:{major}::baseos"
HOME_URL="https://almalinux.org/"
"""


ROOT_BASH_PROFILE = """# .bash_profile

# Get the aliases and functions
if [ -f ~/.bashrc ]; then
\t. ~/.bashrc
fi
"""

ROOT_BASHRC = """# .bashrc

# User specific aliases and functions

alias rm='rm -i'
alias cp='cp -i'
alias mv='mv -i'
"""


def opaque(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    os.setxattr(path, "trusted.overlay.opaque", b"y")


def build_base(run: Path) -> None:
    """The layer every host shares above the machine's root: what makes it look like EL8."""
    base = STATE / "base"
    write_release(base, *BLOG_RELEASE)
    write(base / "usr/lib/lab/network.batch", "\n".join(host_network_batch()) + "\n")
    units = base / "usr/lib/systemd/system"
    write(units / "lab-network.service", LAB_NETWORK_UNIT)
    enable(base, "ssh.service")
    # What brings a host's links up comes with the layer of that host: its NetworkManager, or
    # (no NetworkManager) the lab's own script.
    enable(STATE / "net-script", "lab-network.service")
    if MODE["network"] == "networkmanager":
        for version, built in networkmanager_builds(run).items():
            layer = STATE / f"nm-{version}"
            install_networkmanager(layer, built)
            write_release(layer, *NETWORKMANAGER_RELEASES[version])
            if version in KEYFILE_ONLY:
                install_keyfiles(layer, built)
    iproute2 = str(config(run).get("iproute2") or "")
    if iproute2:
        # /sbin, /bin and /usr/sbin all lead to /usr/bin/ip on this machine's merged /usr.
        (base / "usr/bin").mkdir(parents=True, exist_ok=True)
        (base / "usr/bin/ip").symlink_to(Path(iproute2) / "ip")
    # Units that only cost boot time in a container under emulation (kernel modules, debug
    # filesystems, a per-login user manager, consoles, periodic cleanups).
    (base / "etc/systemd/system").mkdir(parents=True, exist_ok=True)
    for unit in MASKED_UNITS:
        (base / "etc/systemd/system" / unit).symlink_to("/dev/null")
    generators = base / "etc/systemd/system-generators"
    generators.mkdir(parents=True, exist_ok=True)
    for generator in sorted(GENERATOR_DIR.iterdir()) if GENERATOR_DIR.is_dir() else ():
        if generator.name not in KEPT_GENERATORS:
            (generators / generator.name).symlink_to("/dev/null")
    write(base / "etc/systemd/system/ssh.service.d/lab.conf", SSH_DROPIN)
    write(base / "etc/tmpfiles.d/lab-runtime-dir.conf", RUNTIME_DIR)
    # A login's message of the day runs scripts (run-parts, uname) at every session.
    pam = Path("/etc/pam.d/sshd")
    if pam.is_file():
        lines = pam.read_text().splitlines(keepends=True)
        write(base / "etc/pam.d/sshd", "".join(x for x in lines if "pam_motd.so" not in x))
    # AlmaLinux calls it sshd.service; Debian's unit declares that name as its alias.
    (base / "etc/systemd/system/sshd.service").symlink_to("/lib/systemd/system/ssh.service")
    # Only the host's own key: the machine's other host keys would be shared by all hosts.
    # Every session request passes through session.sh, which logs it on the host (see
    # `sessions`) and then runs it unchanged: benchmarks count the commands a run costs.
    write(
        base / "etc/ssh/sshd_config.d/lab.conf",
        "HostKey /etc/ssh/ssh_host_ed25519_key\n"
        f"ForceCommand . {shlex.quote(str(GUEST / 'session.sh'))}\n",
    )
    for name, text in blog.clean_ifcfg().items():
        write(base / "etc/sysconfig/network-scripts" / name, text)
    (base / "etc/NetworkManager/system-connections").mkdir(parents=True, exist_ok=True)
    (base / "etc/NetworkManager/system-connections").chmod(0o700)
    # The machine's own units and sysctl files are not the host's: hide them.
    opaque(base / "etc/systemd/system")
    (base / "etc/systemd/system/multi-user.target.wants").mkdir(exist_ok=True)
    opaque(base / "etc/sysctl.d")
    (base / "etc/sysctl.d/99-sysctl.conf").symlink_to("../sysctl.conf")
    write(
        base / "etc/sysctl.conf", "# sysctl settings are defined through files in /etc/sysctl.d/\n"
    )
    opaque(base / "usr/lib/sysctl.d")
    (base / "var/lib").mkdir(parents=True, exist_ok=True)
    (base / "usr/local/sbin").mkdir(parents=True, exist_ok=True)
    (base / "usr/libexec").mkdir(parents=True, exist_ok=True)
    # root's home as EL8 creates it; this machine's /root (toolchains, history) is not the host's.
    opaque(base / "root")
    (base / "root").chmod(0o550)
    write(base / "root/.bash_profile", ROOT_BASH_PROFILE)
    write(base / "root/.bashrc", ROOT_BASHRC)
    write(base / "root/.bash_logout", "# ~/.bash_logout\n")
    ssh = base / "root/.ssh"
    ssh.mkdir(parents=True, exist_ok=True)
    ssh.chmod(0o700)
    write(ssh / "authorized_keys", (run / "id_ed25519.pub").read_text(), 0o600)


def write_release(layer: Path, version: str, codename: str) -> None:
    release = {"version": version, "name": codename, "major": version.split(".")[0]}
    write(layer / "etc/os-release", OS_RELEASE.format(**release))
    for name in ("redhat-release", "almalinux-release"):
        write(layer / "etc" / name, "AlmaLinux release {version} ({name})\n".format(**release))


def install_keyfiles(layer: Path, built: Path) -> None:
    """The clean host's profiles as keyfiles written by that NetworkManager's own nmcli (as an
    AlmaLinux 10 installer leaves them), and no ifcfg file: it could not read one."""
    opaque(layer / "etc/sysconfig/network-scripts")
    connections = layer / "etc/NetworkManager/system-connections"
    connections.mkdir(parents=True, exist_ok=True)
    connections.chmod(0o700)
    env = {**os.environ, "LD_LIBRARY_PATH": str(built)}
    for name, args in blog.clean_profiles().items():
        r = subprocess.run(
            [str(built / "nmcli"), "--offline", "connection", "add", *args],
            env=env,
            capture_output=True,
            text=True,
        )
        if r.returncode != 0:
            raise RuntimeError(f"nmcli --offline for {name}: {r.stderr.strip()}")
        write(connections / f"{name}.nmconnection", r.stdout, 0o600)


def enable(layer: Path, unit: str) -> None:
    """`unit` (in /usr/lib/systemd/system) starts at boot on the hosts with this layer."""
    wants = layer / "usr/lib/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    (wants / unit).symlink_to(f"../{unit}")


def networkmanager_builds(run: Path) -> dict[str, Path]:
    """Each NetworkManager version the lab's hosts run, with its build."""
    return {str(b["version"]): Path(str(b["dir"])) for b in nm_list(run) if b["dir"]}


def nm_list(run: Path) -> list[dict[str, object]]:
    builds = config(run).get("networkmanager") or []
    assert isinstance(builds, list)
    return builds


def host_layers(run: Path, index: int) -> list[Path]:
    """The layers above the shared base of host `index`: its NetworkManager's, or the lab's
    own script's on a host without one."""
    versions = [str(b["version"]) for b in nm_list(run)]
    version = host_networkmanager(versions, index) if versions else None
    if MODE["network"] != "networkmanager" or version is None:
        return [STATE / "net-script"]
    return [STATE / f"nm-{version}"]


def install_networkmanager(base: Path, built: Path) -> None:
    """NetworkManager with the ifcfg-rh plugin where AlmaLinux has it, owning eth0..eth2 from
    the host's ifcfg files and keyfiles; the lab's own addressing script is not enabled.
    `base`: the layer of the hosts that run this build."""
    units = base / "usr/lib/systemd/system"
    write(units / "NetworkManager.service", NM_UNIT)
    enable(base, "NetworkManager.service")
    write(units / "NetworkManager-wait-online.service", NM_WAIT_ONLINE_UNIT)
    (units / "network-online.target.wants").mkdir(parents=True, exist_ok=True)
    (units / "network-online.target.wants/NetworkManager-wait-online.service").symlink_to(
        "../NetworkManager-wait-online.service"
    )
    ifcfg = built / "libnm-settings-plugin-ifcfg-rh.so"
    if ifcfg.exists():
        plugins = base / (built / "plugindir").read_text().strip().lstrip("/")
        plugins.mkdir(parents=True, exist_ok=True)
        (plugins / ifcfg.name).symlink_to(ifcfg)
    if (built / "libnm.so.0").exists():
        # nmcli built with its own libnm (not Debian's, of another version): where the
        # host's loader finds it.
        lib = base / "usr/lib/x86_64-linux-gnu"
        lib.mkdir(parents=True, exist_ok=True)
        (lib / "libnm.so.0").symlink_to(built / "libnm.so.0")
    (base / "usr/sbin").mkdir(parents=True, exist_ok=True)
    (base / "usr/sbin/NetworkManager").symlink_to(built / "NetworkManager")
    (base / "usr/bin").mkdir(parents=True, exist_ok=True)
    for tool in ("nmcli", "nm-online"):
        (base / "usr/bin" / tool).symlink_to(built / tool)
    for policy in ("org.freedesktop.NetworkManager.conf", "nm-ifcfg-rh.conf"):
        if (built / policy).exists():
            write(base / "usr/share/dbus-1/system.d" / policy, (built / policy).read_text())
    write(base / "etc/NetworkManager/NetworkManager.conf", NM_CONF)
    for d in ("etc/NetworkManager/conf.d", "var/lib/NetworkManager", "usr/lib/NetworkManager"):
        (base / d).mkdir(parents=True, exist_ok=True)


# --- root namespace and control sshd ------------------------------------------------


def setup_root(run: Path, max_hosts: int) -> None:
    for m in MODULES:
        sh("modprobe", m, check=False)
    # Forwarding only per interface: new namespaces copy the root namespace's "all" and
    # "default" IPv4 settings, and hosts must start with kernel defaults.
    set_sysctl("net/ipv4/conf/eth0/forwarding", "1")
    first, last = t.host_port(1), t.host_port(max_hosts)
    marks = ", ".join(f"{t.host_port(i)} : {t.host_port(i)}" for i in range(1, max_hosts + 1))
    rules = f"""
table ip lab {{
    chain lab_mark {{
        type filter hook prerouting priority mangle; policy accept;
        iifname "eth0" tcp dport {first}-{last} meta mark set tcp dport map {{ {marks} }}
    }}
    chain lab_dnat {{
        type nat hook prerouting priority dstnat; policy accept;
        iifname "eth0" tcp dport {first}-{last} dnat to {t.MGMT.host4}:22
    }}
}}
"""
    r = subprocess.run(["nft", "-f", "-"], input=rules, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"nft: {r.stderr}")
    cgroup_dir().mkdir(exist_ok=True)
    if MODE["cgroup"] == "v1":
        SYSTEMD_V1.mkdir(exist_ok=True)


def start_control_sshd(run: Path) -> None:
    etc = Path("/run/lab-vm")
    shutil.copy(run / "vm_host_ed25519_key", etc / "host_key")
    (etc / "host_key").chmod(0o600)
    write(Path("/root/.ssh/authorized_keys"), (run / "id_ed25519.pub").read_text(), 0o600)
    Path("/root/.ssh").chmod(0o700)
    # The VM's root is this machine's, under an overlay: bash would source the controller's
    # own ~/.bashrc (pyenv and the like) for every command sent over ssh, seconds each under
    # emulation. The overlay's copy is the VM's alone.
    write(Path("/root/.bashrc"), "# lab VM root namespace: no shell setup\n")
    Path("/run/sshd").mkdir(exist_ok=True)
    subprocess.Popen(
        [
            "/usr/sbin/sshd",
            "-D",
            "-e",
            "-f",
            "/dev/null",
            "-h",
            str(etc / "host_key"),
            "-o",
            f"Port={t.control_port()}",
            "-o",
            "PermitRootLogin=prohibit-password",
            "-o",
            "UsePAM=no",
            "-o",
            "PidFile=/run/sshd-control.pid",
            "-o",
            "Subsystem=sftp /usr/lib/openssh/sftp-server",
            "-o",
            "MaxStartups=100",
            "-o",
            "MaxSessions=100",
        ],
        stdout=append_log("/run/lab-vm/sshd.log"),
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )


# --- hosts --------------------------------------------------------------------------


def host_dir(name: str) -> Path:
    return STATE / "hosts" / name


def router_exists(name: str) -> bool:
    return Path(f"/run/netns/{t.router_ns(name)}").exists()


def create_router(index: int) -> None:
    name = t.host_name(index)
    gw = t.router_ns(name)
    port = t.host_port(index)
    up = t.uplink_root_if(index)
    sh("ip", "netns", "add", gw)
    ip_batch([f"link add {up} type veth peer name uplink netns {gw}"])
    set_sysctl(f"net/ipv4/conf/{up}/forwarding", "1")
    ip_batch(
        [
            f"address add {t.UPLINK_ROOT4}/32 dev {up}",
            f"link set dev {up} up",
            f"route add default via {t.UPLINK_ROUTER4} dev {up} onlink table {port}",
            f"rule add fwmark {port} lookup {port} pref 100",
        ]
    )
    ip_batch(
        [
            "link set lo up",
            f"address add {t.ROUTER_FAR6}/128 dev lo",
            f"address add {t.UPLINK_ROUTER4}/32 dev uplink",
            "link set dev uplink up",
            f"route add {t.UPLINK_ROOT4}/32 dev uplink",
            f"route add default via {t.UPLINK_ROOT4} dev uplink onlink",
        ],
        gw,
    )
    sh(
        "ip",
        "netns",
        "exec",
        gw,
        "sysctl",
        "-q",
        "-w",
        "net.ipv4.ip_forward=1",
        "net.ipv6.conf.all.forwarding=1",
        "net.ipv4.conf.all.rp_filter=0",
    )
    # Each gateway answers only on its own segment, as separate routers would: a host
    # whose management routes are gone cannot reach the management gateway via eth0.
    onlink = "\n".join(
        f'        ip{"6" if v6 else ""} daddr {addr} iifname != "{seg.gw_if}" drop'
        for seg in t.SEGMENTS
        for v6, addr in ((False, seg.gw4), (True, seg.gw6))
    )
    rules = f"""
table inet lab {{
    chain input {{
        type filter hook input priority filter; policy accept;
{onlink}
    }}
}}
"""
    r = subprocess.run(
        ["ip", "netns", "exec", gw, "nft", "-f", "-"], input=rules, capture_output=True, text=True
    )
    if r.returncode != 0:
        raise RuntimeError(f"nft in {gw}: {r.stderr}")
    reply = f'echo "{gw} $SOCAT_SOCKADDR from $SOCAT_PEERADDR"'
    for listen in (
        f"TCP4-LISTEN:{t.GATEWAY_TCP_PORT}",
        f"TCP6-LISTEN:{t.GATEWAY_TCP_PORT},ipv6only=1",
    ):
        subprocess.Popen(
            ["ip", "netns", "exec", gw, "socat", f"{listen},fork,reuseaddr", f"SYSTEM:{reply}"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    for seg in t.SEGMENTS:
        if seg.role in t.DNS_SEGMENTS:
            start_nameserver(gw, seg)


def start_nameserver(gw: str, seg: t.Segment) -> None:
    """dnsmasq on one gateway's addresses, answering only DNS_NAME (with those addresses).
    bind-dynamic: the segment's link comes and goes with the host's reboots."""
    subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            gw,
            "dnsmasq",
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--bind-dynamic",
            f"--listen-address={seg.gw4}",
            f"--listen-address={seg.gw6}",
            f"--host-record={t.DNS_NAME},{seg.gw4},{seg.gw6}",
            "--user=root",
            "--group=root",
            "--pid-file=",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def host_network_batch() -> list[str]:
    lines = ["link set lo up"]
    for seg in t.SEGMENTS:
        lines += [
            f"link set dev {seg.host_if} up",
            f"address add {seg.host4_cidr} dev {seg.host_if}",
            f"address add {seg.host6_cidr} dev {seg.host_if} nodad",
        ]
    lines += [
        f"route add default via {t.SERVICE.gw4} dev eth0 proto static metric {t.MAIN_METRIC}",
        f"route add ::/0 via {t.SERVICE.gw6} dev eth0 proto static metric {t.MAIN_METRIC}",
    ]
    return lines


def prepare_host_files(run: Path, name: str) -> None:
    d = host_dir(name)
    for sub in ("upper", "work", "root"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    upper = d / "upper"
    keys = run / "hosts" / name
    if not (upper / "etc/ssh/ssh_host_ed25519_key").exists():
        for suffix, mode in (("", 0o600), (".pub", 0o644)):
            src = keys / f"ssh_host_ed25519_key{suffix}"
            write(upper / f"etc/ssh/ssh_host_ed25519_key{suffix}", src.read_text(), mode)
        write(upper / "etc/hostname", f"{name}\n")
        write(upper / "etc/machine-id", os.urandom(16).hex() + "\n", 0o444)


def start_host(run: Path, index: int) -> None:
    name = t.host_name(index)
    gw = t.router_ns(name)
    d = host_dir(name)
    prepare_host_files(run, name)
    sh("ip", "netns", "add", name)
    links = []
    router = []
    for i, seg in enumerate(t.SEGMENTS):
        links.append(
            f"link add {seg.gw_if} address {t.mac(index, i, True)} type veth "
            f"peer name {seg.host_if} netns {name} address {t.mac(index, i, False)}"
        )
        router += [
            f"address add {seg.gw4}/{seg.prefix4} dev {seg.gw_if}",
            f"address add {seg.gw6}/{seg.prefix6} dev {seg.gw_if} nodad",
            f"link set dev {seg.gw_if} up",
        ]
    ip_batch(links + router, gw)
    cg = cgroup_dir() / name
    cg.mkdir(exist_ok=True)
    v1 = SYSTEMD_V1 / name if MODE["cgroup"] == "v1" else None
    if v1 is not None:
        v1.mkdir(exist_ok=True)

    def enter_cgroup() -> None:
        (cg / "cgroup.procs").write_text(str(os.getpid()))
        if v1 is not None:
            (v1 / "cgroup.procs").write_text(str(os.getpid()))

    if MODE["init"] == "systemd":
        root = d / "root"
        lower = ":".join(map(str, [*host_layers(run, index), STATE / "base", "/.lab/ro"]))
        if not os.path.ismount(root):
            sh(
                "mount", "-t", "overlay", f"lab-{name}", "-o",
                f"lowerdir={lower},upperdir={d / 'upper'},workdir={d / 'work'}",
                str(root),
            )  # fmt: skip
        proc = subprocess.Popen(
            [*NSPAWN, f"--directory={root}", f"--network-namespace-path=/run/netns/{name}",
             f"--machine={name}"],
            stdin=subprocess.DEVNULL,
            stdout=(log := append_log(d / "init.log")),
            stderr=subprocess.STDOUT,
            preexec_fn=enter_cgroup,
            start_new_session=True,
            # /proc/sys/net is the host's own (its network namespace); the rest is the VM's.
            env={**os.environ, "SYSTEMD_NSPAWN_API_VFS_WRITABLE": "network"},
        )  # fmt: skip
        os.close(log)
        write(d / "unshare.pid", f"{proc.pid}\n")
        return
    write(d / "network.batch", "\n".join(host_network_batch()) + "\n")

    proc = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            name,
            "unshare",
            "--mount",
            "--pid",
            "--fork",
            "--uts",
            "--cgroup",
            "--ipc",
            "/bin/sh",
            str(GUEST / "hostinit.sh"),
            name,
            str(STATE),
        ],
        stdin=subprocess.DEVNULL,
        stdout=(log := append_log(d / "init.log")),
        stderr=subprocess.STDOUT,
        preexec_fn=enter_cgroup,
        start_new_session=True,
    )
    os.close(log)
    write(d / "unshare.pid", f"{proc.pid}\n")


def host_pid(name: str) -> int | None:
    if MODE["init"] == "systemd":
        try:
            tree = SYSTEMD_V1 if MODE["cgroup"] == "v1" else cgroup_dir()
            pids = (tree / name / "payload/init.scope/cgroup.procs").read_text().split()
        except OSError:
            return None
        return int(pids[0]) if pids else None
    try:
        upid = int((host_dir(name) / "unshare.pid").read_text())
        children = Path(f"/proc/{upid}/task/{upid}/children").read_text().split()
    except (OSError, ValueError):
        return None
    return int(children[0]) if children else None


def host_ready(name: str) -> bool:
    pid = host_pid(name)
    marker = "run/sshd.pid" if MODE["init"] == "systemd" else "run/lab/ready"
    return pid is not None and Path(f"/proc/{pid}/root/{marker}").exists()


def wait_ready(names: list[str], timeout: float) -> list[str]:
    deadline = time.monotonic() + timeout
    pending = list(names)
    while pending and time.monotonic() < deadline:
        pending = [n for n in pending if not host_ready(n)]
        if pending:
            time.sleep(0.2)
    return pending


def stop_host(name: str) -> None:
    cg = cgroup_dir() / name
    if cg.exists():
        (cg / "cgroup.kill").write_text("1")
        deadline = time.monotonic() + 10
        while "populated 1" in (cg / "cgroup.events").read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
    root = host_dir(name) / "root"
    if os.path.ismount(root):
        sh("umount", "-l", str(root))
    # Delete the gateway ends ourselves: the host's namespace can outlive `ip netns del`
    # for minutes (an orphaned TCP socket that cannot send, e.g. after a wrong VRF
    # gateway, holds a reference), and with it the veth names the next boot needs.
    gw = t.router_ns(name)
    if router_exists(name):
        for seg in t.SEGMENTS:
            sh("ip", "-n", gw, "link", "del", "dev", seg.gw_if, check=False, quiet=True)
    if Path(f"/run/netns/{name}").exists():
        sh("ip", "netns", "del", name)


def existing_hosts() -> list[str]:
    hosts = STATE / "hosts"
    if not hosts.is_dir():
        return []
    return sorted((p.name for p in hosts.iterdir()), key=t.host_index)


def ensure_hosts(run: Path, count: int, timeout: float = 600) -> None:
    started = []
    for index in range(1, count + 1):
        name = t.host_name(index)
        if not router_exists(name):
            create_router(index)
        if not Path(f"/run/netns/{name}").exists():
            start_host(run, index)
            started.append(name)
    missing = wait_ready(started, timeout)
    if missing:
        raise RuntimeError(f"hosts did not finish booting: {', '.join(missing)}")


def boot(run: Path, names: list[str], wipe: bool = False) -> None:
    """Stops the hosts, then starts them all before waiting for any: a boot is mostly waiting
    (units, sshd), so several at once take little longer than one. `wipe` also drops every
    file written on the host, but its identity (host key, hostname, machine id)."""
    for name in names:
        stop_host(name)
        if wipe:
            wipe_files(name)
    for name in names:
        start_host(run, t.host_index(name))
    missing = wait_ready(names, 120 + 30 * (len(names) - 1))
    if missing:
        raise RuntimeError(
            f"{', '.join(missing)} did not finish booting; see "
            f"{host_dir(missing[0])}/init.log in the VM"
        )


def wipe_files(name: str) -> None:
    upper = host_dir(name) / "upper"
    keep = {
        "etc/ssh/ssh_host_ed25519_key",
        "etc/ssh/ssh_host_ed25519_key.pub",
        "etc/hostname",
        "etc/machine-id",
    }
    saved = {
        k: ((upper / k).read_bytes(), (upper / k).stat().st_mode)
        for k in keep
        if (upper / k).exists()
    }
    shutil.rmtree(upper)
    shutil.rmtree(host_dir(name) / "work")
    for k, (data, mode) in saved.items():
        (upper / k).parent.mkdir(parents=True, exist_ok=True)
        (upper / k).write_bytes(data)
        (upper / k).chmod(mode)


def host_root(name: str) -> Path:
    pid = host_pid(name)
    if pid is None:
        raise RuntimeError(f"{name} is not running; try `python -m lab reboot {name}`")
    return Path(f"/proc/{pid}/root")


def seed_broken(run: Path, names: list[str]) -> None:
    for name in names:
        scripts = host_root(name) / "etc/sysconfig/network-scripts"
        for fname, text in blog.broken_files().items():
            write(scripts / fname, text)
    boot(run, names)


def cut(name: str) -> None:
    gw = t.router_ns(name)
    if is_cut(name):
        return
    rules = """
table inet labcut {
    chain forward {
        type filter hook forward priority filter; policy accept;
        iifname "mgmt" drop
        oifname "mgmt" drop
    }
}
"""
    r = subprocess.run(
        ["ip", "netns", "exec", gw, "nft", "-f", "-"], input=rules, capture_output=True, text=True
    )
    if r.returncode != 0:
        raise RuntimeError(f"nft in {gw}: {r.stderr}")


def wait_for(name: str, path: str, within: float, text: str | None = None) -> bool:
    """Whether `path` appeared on the host (holding `text`, if given) within `within`
    seconds. Read from the VM, so it answers while the host is cut or its sshd is down;
    polled often, so callers act on the moment the run writes it, without racing it."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        pid = host_pid(name)
        if pid is not None:
            found = Path(f"/proc/{pid}/root{path}")
            with contextlib.suppress(OSError):  # not there yet, or gone with a reboot
                if text in found.read_text(errors="replace") if text else found.exists():
                    return True
        time.sleep(0.05)
    return False


def cut_when(name: str, path: str, within: float) -> None:
    """Cut as soon as `path` exists on the host: tests cut the controller's path at a chosen
    moment of a run (a file the run writes)."""
    if not wait_for(name, path, within):
        raise RuntimeError(f"{path} did not appear on {name} within {within:g} s; nothing was cut")
    cut(name)


def in_host(pid: int, command: str) -> list[str]:
    """argv running a shell command in every namespace of the host whose init is `pid`."""
    return ["nsenter", "-t", str(pid), "-a", "sh", "-c", command]


def inside(name: str, command: str) -> int:
    """Runs a shell command on the host from the VM: it reaches a cut host, or one whose
    sshd is down. Output goes to the caller; returns its exit code."""
    pid = host_pid(name)
    if pid is None:
        raise RuntimeError(f"{name} is not running; try `python -m lab reboot {name}`")
    return subprocess.run(in_host(pid, command)).returncode


def heal(name: str) -> None:
    if is_cut(name):
        sh("ip", "netns", "exec", t.router_ns(name), "nft", "delete", "table", "inet", "labcut")


def is_cut(name: str) -> bool:
    r = sh(
        "ip",
        "netns",
        "exec",
        t.router_ns(name),
        "nft",
        "list",
        "table",
        "inet",
        "labcut",
        check=False,
        quiet=True,
    )
    return r.returncode == 0


SESSION_LOG = "run/lab-sessions.log"


def sessions(reset: bool) -> dict[str, list[str] | None]:
    """Per host, the session requests its sshd received (None: the host is not running).

    The log lives in the host's /run, so a reboot or reset of the host also empties it.
    """
    out: dict[str, list[str] | None] = {}
    for name in existing_hosts():
        pid = host_pid(name)
        if pid is None:
            out[name] = None
            continue
        log = Path(f"/proc/{pid}/root") / SESSION_LOG
        path = log
        if reset:
            # Renamed before it is read: a session that arrives while we read appends to a
            # new file and is counted next time rather than dropped with this one.
            path = log.with_name(f"{log.name}.{os.getpid()}")
            try:
                log.rename(path)
            except FileNotFoundError:
                out[name] = []
                continue
        try:
            out[name] = path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            out[name] = []
        if reset:
            path.unlink(missing_ok=True)
    return out


def status() -> dict[str, object]:
    hosts = {}
    for name in existing_hosts():
        pid = host_pid(name)
        vrfs = []
        if Path(f"/run/netns/{name}").exists():
            r = sh(
                "ip", "-n", name, "-j", "-d", "link", "show", "type", "vrf", check=False, quiet=True
            )
            try:
                vrfs = [link["ifname"] for link in json.loads(r.stdout or "[]") if "ifname" in link]
            except ValueError:
                vrfs = []
        hosts[name] = {
            "running": pid is not None,
            "ready": host_ready(name),
            "cut": is_cut(name) if router_exists(name) else None,
            "vrfs": vrfs,
            "port": t.host_port(t.host_index(name)),
        }
    return {"hosts": hosts, "uptime": float(Path("/proc/uptime").read_text().split()[0])}


HOST_DIAGNOSTICS = (
    "systemctl --failed --no-legend --no-pager",
    "journalctl -b --no-pager -n 40 -o short-monotonic",
    "ip -br address",
    "ip rule",
    "ip route show table all type unicast",
)
RUNNER_DIAGNOSTICS = HOST_DIAGNOSTICS[2:]


def _tail(path: Path, lines: int) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as e:
        return f"({e.strerror})"


def diagnostics() -> str:
    """What a failed lab test leaves for whoever reads CI's log: the VM's load and memory,
    its kernel's last words, and per host its init's log, its failed units and journal,
    and its addresses, rules and routes. Each look is bounded; none may hang the report."""
    out = []

    def run(title: str, argv: list[str]) -> None:
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=20)
            text = (r.stdout + r.stderr).rstrip()
        except (OSError, subprocess.TimeoutExpired) as e:
            text = f"({e})"
        out.append(f"--- {title}\n{text}")

    out.append(f"--- VM load: {Path('/proc/loadavg').read_text().strip()}")
    run("VM memory", ["free", "-m"])
    run("VM kernel log (last 40 lines)", ["sh", "-c", "dmesg | tail -n 40"])
    for name in existing_hosts():
        pid = host_pid(name)
        out.append(
            f"--- {name}: init log (last 20 lines)\n{_tail(host_dir(name) / 'init.log', 20)}"
        )
        if pid is None:
            out.append(f"--- {name}: not running")
            continue
        looks = HOST_DIAGNOSTICS if MODE["init"] == "systemd" else RUNNER_DIAGNOSTICS
        for look in looks:
            run(f"{name}: {look}", in_host(pid, look))
    return "\n".join(out)


# --- entry points -------------------------------------------------------------------


def init(run: Path) -> None:
    console = os.open("/dev/console", os.O_WRONLY)
    os.dup2(console, 1)
    os.dup2(console, 2)
    try:
        cfg = config(run)
        os.environ["LAB_BASE_PORT"] = str(cfg.get("base_port", 2200))
        MODE["init"] = str(cfg.get("init", "runner"))
        MODE["cgroup"] = str(cfg.get("cgroup", "v2"))
        MODE["network"] = str(cfg.get("network", "script"))
        STATE.mkdir(parents=True, exist_ok=True)
        ip_batch(
            [
                "link set dev lo up",
                "link set dev eth0 up",
                f"address add {t.VM4}/{t.VM_PREFIX} dev eth0",
            ]
        )
        Path("/run/lab-vm").mkdir(exist_ok=True)
        write(Path("/run/lab-vm/run-dir"), f"{run}\n")
        start_control_sshd(run)
        sh("mount", "-t", "tmpfs", "-o", "mode=755", "labstate", str(STATE))
        setup_root(run, int(str(cfg["max_hosts"])))
        build_base(run)
        t0 = time.monotonic()
        ensure_hosts(run, int(str(cfg["hosts"])))
        print(f"lab: {cfg['hosts']} hosts ready in {time.monotonic() - t0:.1f}s", flush=True)
        write(Path("/run/lab-vm/ready"), "ok\n")
    except Exception as e:  # noqa: BLE001 - PID 1 must survive to be debugged
        print(f"lab: VM setup failed: {type(e).__name__}: {e}", flush=True)
        write(Path("/run/lab-vm/failed"), f"{type(e).__name__}: {e}\n")
    while True:
        try:
            os.wait()
        except ChildProcessError:
            time.sleep(1)


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: agent.py VERB ...", file=sys.stderr)
        return 2
    verb, args = argv[0], argv[1:]
    if verb == "init":
        init(Path(args[0]))
        return 0
    run = Path(Path("/run/lab-vm/run-dir").read_text().strip())
    os.environ["LAB_BASE_PORT"] = str(config(run).get("base_port", 2200))
    MODE["init"] = str(config(run).get("init", "runner"))
    MODE["cgroup"] = str(config(run).get("cgroup", "v2"))
    MODE["network"] = str(config(run).get("network", "script"))
    try:
        if verb == "ensure-hosts":
            ensure_hosts(run, int(args[0]))
        elif verb == "reboot":
            boot(run, args)
        elif verb == "reset":
            boot(run, args, wipe=True)
        elif verb == "seed-broken":
            seed_broken(run, args)
        elif verb == "cut" and len(args) == 4 and args[1] == "--when":
            cut_when(args[0], args[2], float(args[3]))
        elif verb == "cut":
            cut(args[0])
        elif verb == "inside" and len(args) == 2:
            return inside(args[0], args[1])
        elif verb == "wait" and len(args) in (3, 4):
            text = args[3] if len(args) == 4 else None
            if not wait_for(args[0], args[1], float(args[2]), text):
                what = args[1] if text is None else f"{text!r} in {args[1]}"
                print(f"lab (in VM): {what} did not appear on {args[0]} within {args[2]} s")
                return 1
        elif verb == "heal":
            heal(args[0])
        elif verb == "status":
            print(json.dumps(status()))
        elif verb == "diagnostics":
            print(diagnostics())
        elif verb == "sessions":
            print(json.dumps(sessions(reset=args[:1] == ["--reset"])))
        elif verb == "wait-ready":
            return 0 if Path("/run/lab-vm/ready").exists() else 1
        else:
            print(f"agent: unknown verb {verb}", file=sys.stderr)
            return 2
    except (RuntimeError, ValueError, OSError) as e:
        print(f"lab (in VM): {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
