"""Pure core of the management-VRF deploy: fleet model, validation, host state, planning.

Nothing in it imports pyinfra (only its subpackage mgmt_vrf.pyinfra, the thin adapters:
facts, the operation, a @deploy and the drift report), so it can be read, tested and reused
on its own.
"""
