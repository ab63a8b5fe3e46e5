"""The deploy's pyinfra facts, by the names a checkout has always used:

    pyinfra inventory.py fact facts.vrf.VrfHostState --json
    pyinfra inventory.py fact facts.vrf.RouteTable table=10

They are mgmt_vrf.pyinfra.facts' own (as `pip install` users name them); subclassed only so
that pyinfra, which names a fact after its module, prints them as facts.vrf.*.
"""

from mgmt_vrf.pyinfra import facts


class VrfHostState(facts.VrfHostState):
    __doc__ = facts.VrfHostState.__doc__


class VrfDevices(facts.VrfDevices):
    __doc__ = facts.VrfDevices.__doc__


class RouteTable(facts.RouteTable):
    __doc__ = facts.RouteTable.__doc__
