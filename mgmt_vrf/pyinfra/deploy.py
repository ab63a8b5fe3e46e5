"""The management VRF as a pyinfra deploy, for a pyinfra project's own deploy file.

    from mgmt_vrf.pyinfra.deploy import management_vrf
    management_vrf()

Each host's spec comes from its data (see mgmt_vrf.pyinfra.hostspec): the project's
inventory.py puts it there from a fleet file, or an inventory of your own gives each host
(or group) ``mgmt_vrf = {"interfaces": {...}, "vrfs": {...}}``, the keys of a fleet file's
host table.
"""

from __future__ import annotations

from weakref import WeakKeyDictionary

from pyinfra import host
from pyinfra.api import Inventory, deploy
from pyinfra.api.exceptions import PyinfraError

from mgmt_vrf.model import HostSpec
from mgmt_vrf.rollout import ALL_AT_ONCE, Rollout

from .hostspec import HostDataError, inventory_rollout, inventory_specs
from .operations import converge


class HostDataRefused(PyinfraError):
    """pyinfra prints a PyinfraError as one message, without a traceback, and stops."""


# pyinfra runs a deploy once per host: the inventory is checked on the first, not every time.
_CHECKED: WeakKeyDictionary[Inventory, tuple[dict[str, HostSpec], Rollout]] = WeakKeyDictionary()


@deploy("Management VRF")
def management_vrf() -> None:
    """
    Converge the host's management VRFs to the spec in its data, under the armed rollback.

    **Example:**

    .. code:: python

        from mgmt_vrf.pyinfra.deploy import management_vrf
        management_vrf()

    The first host to reach this checks every active host's data: a mistake anywhere stops
    the run before any host is changed, with every problem listed.
    """
    checked = _CHECKED.get(host.inventory)
    if checked is None:
        checked = _CHECKED[host.inventory] = _checked_inventory()
    specs, rollout = checked
    converge(name="Converge management VRFs", spec=specs[host.name], rollout=rollout)


def _checked_inventory() -> tuple[dict[str, HostSpec], Rollout]:
    hosts = host.inventory.get_active_hosts()
    if host.name not in {active.name for active in hosts}:
        hosts.append(host.inventory.get_host(host.name))
    messages: list[str] = []
    specs: dict[str, HostSpec] = {}
    rollout = ALL_AT_ONCE
    try:
        specs = inventory_specs(hosts)
    except HostDataError as exc:
        messages += exc.messages
    try:
        rollout = inventory_rollout(hosts)
    except HostDataError as exc:
        messages += exc.messages
    if not messages:
        return specs, rollout
    count = len(messages)
    raise HostDataRefused(
        "\n".join(
            [
                f"mgmt-vrf: {count} {'problem' if count == 1 else 'problems'} in the "
                "inventory's host data; no host was changed:",
                *(f"  {message}" for message in messages),
            ]
        )
    )
