"""pyinfra facts for the management VRF deploy.

Query them by hand with e.g. `pyinfra inventory.py fact facts.vrf.VrfDevices`.
"""
