#!/bin/sh
# Installs everything the deploy, the lab and the tests need on a Debian 12 machine.
# Safe to run again: pip and apt only fetch what is missing. The project itself is not
# installed: pyinfra and pytest run it from this checkout.
set -eu
cd "$(dirname "$0")/.."

deps=$(python3 -c '
import tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
print("\n".join(project["dependencies"] + project["optional-dependencies"]["test"]))')
# shellcheck disable=SC2086 # one requirement per line, none with spaces
echo "$deps" | python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore -r /dev/stdin
sh lab/install-deps.sh
