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
# Runs a command (a service's, or one typed by hand) inside a VRF.
EXEC_WRAPPER = "/usr/local/sbin/mgmt-vrf-exec"
SYSTEMD_DIR = "/etc/systemd/system"
# Last in name order among a unit's drop-ins, so `systemctl edit`'s override.conf cannot
# undo the ExecStart= that puts the service in its VRF.
DROPIN_NAME = "zz-mgmt-vrf.conf"
# Per VRF, what its programs see as /etc/resolv.conf (bind-mounted by mgmt-vrf-exec), like
# `ip netns exec` does with /etc/netns/NAME/.
VRF_CONFIG_DIR = "/etc/mgmt-vrf"
# Mounts the VRFs' resolv.conf again after the host's /etc/resolv.conf is replaced.
RESOLV_WATCH = "mgmt-vrf-resolv.path"
RESOLV_SERVICE = "mgmt-vrf-resolv.service"
RESOLV_PATH_UNIT = f"/etc/systemd/system/{RESOLV_WATCH}"
RESOLV_SERVICE_UNIT = f"/etc/systemd/system/{RESOLV_SERVICE}"
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


def resolv_conf(vrf: str) -> str:
    return f"{VRF_CONFIG_DIR}/{vrf}/resolv.conf"


def dropin(unit: str) -> str:
    return f"{SYSTEMD_DIR}/{unit}.d/{DROPIN_NAME}"


def dropin_unit(path: str) -> str | None:
    """The unit a drop-in of ours belongs to, or None for any other path."""
    head, sep, name = path.rpartition("/")
    if name != DROPIN_NAME or not head.startswith(SYSTEMD_DIR + "/") or not head.endswith(".d"):
        return None
    unit = head[len(SYSTEMD_DIR) + 1 : -2]
    return unit if unit and "/" not in unit else None


def backup_path(path: str, sha256: str) -> str:
    """Content-addressed: a second backup of the same content is the same file, never a loss."""
    return f"{BACKUP_DIR}{path}.{sha256[:12]}"


def managed_paths(spec: HostSpec) -> list[str]:
    """Every file the plan may write or remove on this host, for the combined fact to read."""
    paths = [SYSCTL_DROPIN, CONVERGE_SCRIPT, UNIT, EXEC_WRAPPER]
    paths += [RESOLV_PATH_UNIT, RESOLV_SERVICE_UNIT]
    paths += [dropin(unit) for unit in spec.service_vrfs]
    for vrf in spec.vrfs:
        paths += [keyfile(vrf.name), resolv_conf(vrf.name)]
        for port in vrf.ports:
            paths += [ifcfg(port), route4(port), route6(port)]
    return list(dict.fromkeys(paths))


def resolv_watch(spec: HostSpec) -> list[str]:
    """The path unit that keeps the VRFs' resolv.conf mounted, when a VRF has nameservers."""
    return [RESOLV_WATCH] if spec.resolved_vrfs else []


def probe_arguments(spec: HostSpec) -> dict[str, list[str]]:
    """The combined fact's arguments for this host: its files, ports and services."""
    return {
        "paths": managed_paths(spec),
        "ports": sorted({port for vrf in spec.vrfs for port in vrf.ports}),
        "units": sorted(spec.service_vrfs) + resolv_watch(spec),
    }


# One change at a time per host: the scripts, saved files and status of the current run.
RUN_DIR = "/var/lib/mgmt-vrf/run"
APPLY_SCRIPT = f"{RUN_DIR}/apply.sh"
ROLLBACK_SCRIPT = f"{RUN_DIR}/rollback.sh"
# Exists while a rollback is armed; whoever renames it first (confirm or rollback) wins.
ARMED = f"{RUN_DIR}/armed"
# Beside ARMED, in /run, which a reboot empties: a boot-time run that finds ARMED without
# it knows the host went down while armed; with it, the unit was only started by hand (or
# pulled in by a service) during a run, which it must leave alone.
ARMED_THIS_BOOT = "/run/mgmt-vrf-armed"
CONFIRMED = f"{RUN_DIR}/confirmed"
ROLLING_BACK = f"{RUN_DIR}/rolling-back"
APPLY_STATUS = f"{RUN_DIR}/apply.status"
APPLY_PID = f"{RUN_DIR}/apply.pid"
ROLLBACK_STATUS = f"{RUN_DIR}/rollback.status"
RUN_LOG = f"{RUN_DIR}/log"
# Copies of every file the run replaces or removes, at their own path below this directory.
SAVED_DIR = f"{RUN_DIR}/saved"
# Which profile NetworkManager had active on each device before the change ("UUID:DEVICE").
NM_ACTIVE = f"{RUN_DIR}/nm-active"
STAGING_DIR = f"{RUN_DIR}/staging"
# Armed at the start at the hard bound (apply_timeout + rollback_timeout from then), so a
# hung apply still rolls back.
ROLLBACK_UNIT = "mgmt-vrf-rollback"
# Armed when the apply ends, at rollback_timeout from then: the confirmation window.
WINDOW_UNIT = "mgmt-vrf-rollback-window"
# When the rollback is due (seconds since the epoch, by the host's clock): the earlier of
# the two timers. The controller follows it instead of guessing from its own clock.
DEADLINE = f"{RUN_DIR}/deadline"
# pids of the sleeping shells that stand in for the timers where systemd does not run.
SLEEPERS = f"{RUN_DIR}/sleepers"
