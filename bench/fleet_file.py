"""A big fleet file: how long it takes to load and validate, and what a dry run of one of its
hosts spends its time on.

    python -m bench.fleet_file --hosts 10000

Writes a fleet file of that many hosts shaped like the lab's (each host its own three
interfaces with IPv4 and IPv6 addresses, its service defaults and a VRF with two gateways;
the IPv6 addresses differ from host to host), then measures, in this one run:

- `load_fleet` of it, `--rounds` times in this process, median and spread;
- one more load under cProfile: the share of the TOML parser, of `ipaddress` and of the
  rest (our checks and merges);
- with a lab running (`python -m lab up`): the lab's fleet file with the big one's hosts
  added, and `pyinfra inventory.py deploy.py --dry --limit lab1` on it under cProfile, in a
  fresh process, as a user runs it: the whole inventory is loaded and one real host is
  planned over ssh; the time is split between the fleet file's parser and checks, the rest
  of our code, pyinfra and everything else. The added hosts are never contacted.

Targets: the load takes at most 2 s; the one-host dry run is not dominated by our code
(the fleet file and our modules together under half of it). Figures depend on the machine
and its load, which is printed with them.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from lab import topology  # noqa: E402
from lab.paths import run_dir  # noqa: E402
from mgmt_vrf.fleet_file import load_fleet  # noqa: E402

LOAD_TARGET_S = 2.0
OURS_AT_MOST = 0.5
HEAD = '[defaults]\nssh_user = "root"\nssh_connect_timeout = 90\n'


def host_name(index: int) -> str:
    return f"alma{index:05d}"


def fleet_text(hosts: int, head: str = HEAD) -> str:
    """The lab's fleet shape, `hosts` times after `head`; IPv6 addresses unique per host.
    They are reached at 192.0.2.1 (a documentation address) on ports of their own."""
    out = [head]
    for i in range(1, hosts + 1):
        name, hi, lo = host_name(i), i // 256, i % 256
        out.append(
            f"""
[hosts.{name}]
ssh_address = "192.0.2.1"
ssh_port = {1024 + i}

[hosts.{name}.interfaces.eth0]
ipv4 = "198.51.100.10/25"
gateway4 = "198.51.100.1"
ipv6 = "2001:db8:100:{hi:x}::{lo:x}:10/64"
gateway6 = "2001:db8:100:{hi:x}::1"
main_default = true

[hosts.{name}.interfaces.eth1]
ipv4 = "192.0.2.10/25"
ipv6 = "2001:db8:52:{hi:x}::{lo:x}:10/64"

[hosts.{name}.interfaces.eth2]
ipv4 = "203.0.113.10/25"
ipv6 = "2001:db8:1:{hi:x}::{lo:x}:10/64"

[hosts.{name}.vrfs.mgmt0]
table = 10
ports = ["eth2"]
gateway4 = "203.0.113.1"
gateway6 = "2001:db8:1:{hi:x}::1"
"""
        )
    return "".join(out)


def _bucket(filename: str, name: str) -> str:
    path = filename.replace("\\", "/")
    # tomli's compiled parser shows as a built-in: `<built-in method tomli._parser.loads>`.
    if "/tomli/" in path or "/tomllib/" in path or "tomli." in name:
        return "TOML parser"
    if path.endswith("/ipaddress.py"):
        return "ipaddress"
    if "/pyinfra/" in path or "/pyinfra_cli/" in path:
        return "pyinfra"
    if path.startswith(str(ROOT)) and "/site-packages/" not in path:
        return "our code"
    return "other (stdlib, paramiko, gevent, ...)"


def shares(stats: pstats.Stats) -> dict[str, float]:
    """Seconds of own time per bucket: every function's time counted once, where it runs."""
    out: dict[str, float] = {}
    raw = stats.stats  # type: ignore[attr-defined]
    for (filename, _line, name), (_cc, _nc, tottime, _ct, _callers) in raw.items():
        key = _bucket(filename, name)
        out[key] = out.get(key, 0.0) + tottime
    return out


def _share_lines(seconds: dict[str, float], total: float) -> Iterable[str]:
    for key, value in sorted(seconds.items(), key=lambda kv: -kv[1]):
        yield f"  {key}: {value:.2f} s ({value / total:.0%})"


def measure_load(path: Path, rounds: int) -> list[str]:
    times = []
    hosts = 0
    for _ in range(rounds):
        start = time.perf_counter()
        fleet = load_fleet(path)
        times.append(time.perf_counter() - start)
        # Freed outside the timing: the next round would pay for this one's deallocation.
        hosts = len(fleet.hosts)
        del fleet
    median = statistics.median(times)
    profile = cProfile.Profile()
    profile.enable()
    fleet = load_fleet(path)
    profile.disable()
    del fleet
    stats = pstats.Stats(profile)
    seconds = shares(stats)
    total = sum(seconds.values())
    verdict = "met" if median <= LOAD_TARGET_S else "MISSED"
    return [
        f"load_fleet, {hosts} hosts, {rounds} rounds: median {median:.2f} s "
        f"(spread {min(times):.2f}-{max(times):.2f} s)",
        f"one load under cProfile ({total:.2f} s of own time, profiling slows it):",
        *_share_lines(seconds, total),
        f"- {verdict}: loading and validating {hosts} hosts takes at most "
        f"{LOAD_TARGET_S:.0f} s ({median:.2f} s)",
    ]


def measure_dry_run(hosts: int, out: Path, lab_fleet: Path) -> list[str]:
    target = f"the one-host dry run is not dominated by our code (at most {OURS_AT_MOST:.0%})"
    if not lab_fleet.exists():
        return [f"- not measured: {target}: no lab is running (`python -m lab up` first)"]
    path = out / "lab-fleet.toml"
    path.write_text(fleet_text(hosts, head=lab_fleet.read_text()))
    prof = out / "dry-run.prof"
    host = topology.host_name(1)
    command = [sys.executable, "-m", "cProfile", "-o", str(prof), "-m", "pyinfra"]
    command += ["inventory.py", "deploy.py", "--dry", "--limit", host]
    env = {**os.environ, "MGMT_VRF_FLEET": str(path)}
    start = time.perf_counter()
    run = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if run.returncode != 0:
        return [
            f"- MISSED: {target}: the dry run failed (exit {run.returncode})",
            run.stderr[-2000:],
        ]
    stats = pstats.Stats(str(prof))
    seconds = shares(stats)
    total = sum(seconds.values())
    ours = sum(seconds.get(key, 0.0) for key in ("our code", "TOML parser", "ipaddress"))
    verdict = "met" if ours <= OURS_AT_MOST * total else "MISSED"
    return [
        f"dry run of {host} in an inventory of {hosts + 1}+ hosts: {wall:.2f} s wall under "
        f"cProfile ({total:.2f} s of own time):",
        *_share_lines(seconds, total),
        f"- {verdict}: {target} (the fleet file's parser and checks and our modules: "
        f"{ours / total:.0%} of it)",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fleet_file", description=__doc__)
    parser.add_argument("--hosts", type=int, default=10000, help="fleet size (default 10000)")
    parser.add_argument("--rounds", type=int, default=5, help="timed loads (default 5)")
    parser.add_argument("--out", type=Path, default=None, help="keep the fleet file and profile")
    parser.add_argument(
        "--lab-fleet",
        type=Path,
        default=None,
        help="the running lab's fleet file (default: the one `python -m lab up` wrote)",
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="mgmt-vrf-bench-") as scratch:
        out = args.out or Path(scratch)
        out.mkdir(parents=True, exist_ok=True)
        path = out / "fleet.toml"
        path.write_text(fleet_text(args.hosts))
        load = os.getloadavg()[0]
        lines = [f"fleet file of {args.hosts} hosts, {path.stat().st_size} bytes; load {load:.2f}"]
        lines += measure_load(path, args.rounds)
        lines += measure_dry_run(args.hosts, out, args.lab_fleet or run_dir() / "fleet.toml")
    print("\n".join(lines))
    return 0 if not any(line.startswith("- MISSED") for line in lines) else 1


if __name__ == "__main__":
    sys.exit(main())
