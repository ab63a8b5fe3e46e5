#!/bin/sh
# Runs every test: lint and types, the unit tests, and the lab tests on a real VRF kernel.
# Installs what is missing first, so it works on a fresh machine.
set -eu
cd "$(dirname "$0")/.."
sh scripts/setup.sh
python3 -m ruff format --check .
python3 -m ruff check .
python3 -m mypy .
exec python3 -m pytest --durations=25 "$@"
