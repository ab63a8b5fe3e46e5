"""Where the files we manage live on an AlmaLinux host."""

from __future__ import annotations

from .model import HostSpec

NETWORK_SCRIPTS = "/etc/sysconfig/network-scripts"
SYSTEM_CONNECTIONS = "/etc/NetworkManager/system-connections"
SYSCTL_DROPIN = "/etc/sysctl.d/90-mgmt-vrf.conf"
CONVERGE_SCRIPT = "/usr/local/sbin/mgmt-vrf-converge"
UNIT_NAME = "mgmt-vrf.service"
UNIT = f"/etc/systemd/system/{UNIT_NAME}"
UNIT_WANTS_LINK = f"/etc/systemd/system/multi-user.target.wants/{UNIT_NAME}"
# Backups live outside the profile directories: NetworkManager would load a copy left there.
BACKUP_DIR = "/var/lib/mgmt-vrf/backup"


def ifcfg(device: str) -> str:
    return f"{NETWORK_SCRIPTS}/ifcfg-{device}"


def route4(device: str) -> str:
    return f"{NETWORK_SCRIPTS}/route-{device}"


def route6(device: str) -> str:
    return f"{NETWORK_SCRIPTS}/route6-{device}"


def keyfile(vrf: str) -> str:
    return f"{SYSTEM_CONNECTIONS}/{vrf}.nmconnection"


def backup_path(path: str, sha256: str) -> str:
    """Content-addressed: a second backup of the same content is the same file, never a loss."""
    return f"{BACKUP_DIR}{path}.{sha256[:12]}"


def managed_paths(spec: HostSpec) -> list[str]:
    """Every file the plan may write or remove on this host, for the combined fact to read."""
    paths = [SYSCTL_DROPIN, CONVERGE_SCRIPT, UNIT]
    for vrf in spec.vrfs:
        paths.append(keyfile(vrf.name))
        for port in vrf.ports:
            paths += [ifcfg(port), route4(port), route6(port)]
    return list(dict.fromkeys(paths))


# One change at a time per host: the scripts, saved files and status of the current run.
RUN_DIR = "/var/lib/mgmt-vrf/run"
APPLY_SCRIPT = f"{RUN_DIR}/apply.sh"
ROLLBACK_SCRIPT = f"{RUN_DIR}/rollback.sh"
# Exists while a rollback is armed; whoever renames it first (confirm or rollback) wins.
ARMED = f"{RUN_DIR}/armed"
CONFIRMED = f"{RUN_DIR}/confirmed"
ROLLING_BACK = f"{RUN_DIR}/rolling-back"
APPLY_STATUS = f"{RUN_DIR}/apply.status"
APPLY_PID = f"{RUN_DIR}/apply.pid"
ROLLBACK_STATUS = f"{RUN_DIR}/rollback.status"
RUN_LOG = f"{RUN_DIR}/log"
# Copies of every file the run replaces or removes, at their own path below this directory.
SAVED_DIR = f"{RUN_DIR}/saved"
STAGING_DIR = f"{RUN_DIR}/staging"
ROLLBACK_UNIT = "mgmt-vrf-rollback"
