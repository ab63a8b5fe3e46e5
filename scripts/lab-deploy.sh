#!/bin/sh
# Starts the project's lab (hosts on a real VRF kernel, reached over real SSH) and converges
# it with the deploy, exactly as a user converges a fleet. Extra arguments go to pyinfra
# (for example --dry). Installs what is missing first, so it works on a fresh machine.
set -eu
cd "$(dirname "$0")/.."
sh scripts/setup.sh
python3 -m lab up
exec pyinfra -y inventory.py deploy.py "$@"
