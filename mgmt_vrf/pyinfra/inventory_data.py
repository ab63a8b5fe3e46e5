"""The fleet file as a pyinfra inventory: groups of hosts, each with its host data.

    groups = inventory_groups(load_fleet("fleet.toml"))

What pyinfra's ssh connector reads from host data, and where the spec travels in it, lives
here, not in the core: `mgmt_vrf.fleet_file` knows the fleet file, this module pyinfra.
Plain data only, no pyinfra import: inventory.py builds the groups before pyinfra connects.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mgmt_vrf.fleet_file import ALL_HOSTS_GROUP, SSH_CONNECTOR_KEYS, Fleet
from mgmt_vrf.model import HostSpec
from mgmt_vrf.rollout import ALL_AT_ONCE, Rollout

SPEC_DATA_KEY = "mgmt_vrf_spec"
FLEET_FILE_DATA_KEY = "mgmt_vrf_fleet_file"
# The run's waves: the fleet file's [rollout], the same object in every host's data.
ROLLOUT_DATA_KEY = "mgmt_vrf_rollout"

# pyinfra connects to every host at once by default, and a burst of handshakes can fail on
# hosts that are fine (seen at 50 hosts at once on the lab: "No existing session"). Each
# host gets two more tries, spread out so the retries are no burst of their own.
CONNECT_RETRY_DATA = {
    "ssh_connect_retries": 2,
    "ssh_connect_retry_min_delay": 1.0,
    "ssh_connect_retry_max_delay": 5.0,
}


def host_data(
    spec: HostSpec, fleet_file: str | Path, rollout: Rollout | None = None
) -> dict[str, Any]:
    """The pyinfra host data for one host: connector keys (only those given) plus our spec.

    pyinfra keeps host data as plain Python objects (no JSON round trip), so the HostSpec
    itself travels in the data; `spec_from_data` still accepts the dict form.
    """
    data: dict[str, Any] = {"ssh_hostname": spec.ssh.address, **CONNECT_RETRY_DATA}
    for attr in SSH_CONNECTOR_KEYS:
        value = getattr(spec.ssh, attr)
        if value is not None:
            data[f"ssh_{attr}"] = value
    if spec.ssh.connect_timeout is not None:
        # paramiko's own: the TCP connect and the key exchange share `timeout`.
        seconds = spec.ssh.connect_timeout
        data["ssh_paramiko_connect_kwargs"] = {"timeout": seconds, "banner_timeout": seconds}
    data[SPEC_DATA_KEY] = spec
    data[FLEET_FILE_DATA_KEY] = str(Path(fleet_file).resolve())
    if rollout is not None and rollout != ALL_AT_ONCE:
        data[ROLLOUT_DATA_KEY] = rollout
    return data


def inventory_groups(fleet: Fleet) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """pyinfra groups: one per fleet group plus ALL_HOSTS_GROUP, as (name, data) tuples."""
    data = {spec.name: host_data(spec, fleet.source, fleet.rollout) for spec in fleet.hosts}
    groups: dict[str, list[tuple[str, dict[str, Any]]]] = {
        ALL_HOSTS_GROUP: [(spec.name, data[spec.name]) for spec in fleet.hosts]
    }
    for group, names in fleet.groups.items():
        groups[group] = [(name, data[name]) for name in names]
    return groups
