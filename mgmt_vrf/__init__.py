"""Pure core of the management-VRF deploy: fleet model, validation, host state, planning.

Nothing in this package imports pyinfra, so it can be read, tested and reused on its own.
"""
