"""The deploy's pyinfra operation, by the name a checkout has always used:

    from operations.vrf import converge

It is mgmt_vrf.pyinfra.operations.converge, as `pip install` users import it.
"""

from mgmt_vrf.pyinfra.operations import converge

__all__ = ["converge"]
