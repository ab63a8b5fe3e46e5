"""Benchmarks of the deploy against the lab; `python -m bench.fleet` is the fleet benchmark."""
