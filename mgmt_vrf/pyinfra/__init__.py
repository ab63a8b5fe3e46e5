"""The pyinfra side of the management-VRF deploy: facts, the operation, a @deploy, the report.

    from mgmt_vrf.pyinfra.deploy import management_vrf
    management_vrf()

Everything here is a thin adapter over the pure core in `mgmt_vrf`. Importing this package
imports nothing of pyinfra by itself: the report must patch gevent before pyinfra loads.
"""
