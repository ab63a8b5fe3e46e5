#!/bin/sh
# Starts the project's lab (hosts on a real VRF kernel running NetworkManager, reached over
# real SSH) and converges it with the deploy, exactly as a user converges a fleet. Extra
# arguments go to pyinfra (for example --dry). Installs what is missing first, so it works
# on a fresh machine.
set -eu
cd "$(dirname "$0")/.."
sh scripts/setup.sh
# The hosts run AlmaLinux's NetworkManager (the build script's default unless LAB_NM names
# others; `none` needs no build): built once (a minute or two), then kept in lab/cache.
if [ "${LAB_NETWORK:-auto}" != script ]; then
    # shellcheck disable=SC2046 # one version per word
    sh lab/build-networkmanager.sh $(echo "${LAB_NM:-}" | tr , '\n' | grep -vx none)
fi
python3 -m lab up
exec pyinfra -y inventory.py deploy.py "$@"
