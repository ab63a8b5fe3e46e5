"""Rollout benchmark: a fleet in waves, one host of which cuts its own ssh.

    python -m bench.waves                              # 10 hosts, waves of 1, 3 and 6
    python -m bench.waves --hosts 10 --waves 1,3,6 --cut 3

Boots a fresh lab, reads every host's combined fact, then converges the fleet with
`[rollout] waves = [...]` and, for the `--cut`-th host, a management gateway that does not
exist (its change cuts its ssh, so it rolls back). Then checks what the rollout promises,
each line "met" or "missed": the canary confirmed; the cut host rolled back; nothing after
its wave started; every host never started is byte for byte as before (its combined fact,
which carries every file we own whole, the links and the tables); the run's record says
all of it. Then the fleet file, fixed, resumes: every host left converges, in waves again,
and the hosts already confirmed report no change. Prints a Markdown report (also
bench/out/waves/report.md, with each run's log and record) and takes the lab down, unless
--keep. CI runs the 3-host form of this (tests/networkmanager/test_rollout_lab.py).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.fleet import ROOT, timed
from lab import client
from lab import topology as t
from lab.errors import LabError
from lab.paths import run_dir
from mgmt_vrf.rollout import RECORDS_ENV

WRONG_GW4 = "203.0.113.99"
CUT_ROLLBACK_TIMEOUT = 30
CUT_CONNECT_TIMEOUT = 5


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.waves", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    p.add_argument("--hosts", type=int, default=10, help="fleet size (default 10)")
    p.add_argument("--waves", default="1,3,6", help="wave sizes, comma-separated (default 1,3,6)")
    p.add_argument(
        "--cut", type=int, default=3, help="which host (1-based) cuts its ssh (default 3)"
    )
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "waves")
    p.add_argument("--timeout", type=float, default=1800, help="seconds allowed per run")
    p.add_argument("--keep", action="store_true", help="leave the lab running at the end")
    return p


def _say(text: str) -> None:
    print(f"bench: {text}", file=sys.stderr, flush=True)


def cut_fleet(text: str, host: str) -> str:
    """The host's management gateway moved to an address nobody answers, with a short
    window and a short handshake: its change cuts the controller's path."""
    good = f'[hosts.{host}.vrfs.mgmt0]\ntable = 10\nports = ["eth2"]\ngateway4 = "203.0.113.1"'
    if good not in text:
        raise LabError(f"the lab's fleet file has no mgmt0 table of the usual shape for {host}")
    text = text.replace(good, good.replace("203.0.113.1", WRONG_GW4))
    head = f"[hosts.{host}]\n"
    keys = (
        f"rollback_timeout = {CUT_ROLLBACK_TIMEOUT}\nssh_connect_timeout = {CUT_CONNECT_TIMEOUT}\n"
    )
    return text.replace(head, head + keys)


def with_rollout(text: str, waves: list[int]) -> str:
    return f"[rollout]\nwaves = {json.dumps(waves)}\n\n{text}"


def states(fleet: Path, hosts: list[str], log: Path, timeout: float) -> dict[str, Any]:
    """Every host's combined fact, in one pyinfra run (its log: the run's stderr)."""
    limits = [w for host in hosts for w in ("--limit", host)]
    argv = [sys.executable, "-m", "pyinfra", "inventory.py", "fact", "facts.vrf.VrfHostState"]
    env = {**os.environ, "MGMT_VRF_FLEET": str(fleet)}
    run = subprocess.run(
        [*argv, "--json", *limits],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    log.write_text(run.stderr)
    if run.returncode != 0:
        raise LabError(f"reading the hosts' facts failed (exit {run.returncode}); see {log}")
    (by_host,) = json.loads(run.stdout).values()
    missing = set(hosts) - set(by_host)
    if missing:
        raise LabError(f"no combined fact from {', '.join(sorted(missing))}; see {log}")
    return dict(by_host)


def converge(
    fleet: Path, hosts: list[str], records: Path, log: Path, timeout: float
) -> tuple[float, int, dict[str, Any]]:
    """(wall seconds, exit code, the run's record)."""
    limits = [w for host in hosts for w in ("--limit", host)]
    argv = [sys.executable, "-m", "pyinfra", "inventory.py", "deploy.py", "-y", *limits]
    records.mkdir(parents=True, exist_ok=True)
    for old in records.glob("*.json"):
        old.unlink()
    env = {**os.environ, "MGMT_VRF_FLEET": str(fleet), RECORDS_ENV: str(records)}
    seconds, code, _ = timed(argv, env, log, timeout)
    (path,) = sorted(records.glob("*.json"))
    record = json.loads(path.read_text())
    path.rename(log.with_suffix(".record.json"))
    return seconds, code, record


def check(verdicts: list[tuple[str, bool]], what: str, ok: bool) -> None:
    verdicts.append((what, ok))
    _say(f"{what}: {'met' if ok else 'MISSED'}")


def _table(record: dict[str, Any]) -> list[str]:
    lines = [
        "| host | wave | changes | outcome | started | ended |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for e in record["hosts"]:
        lines.append(
            f"| {e['host']} | {e['wave'] or '-'} | {e['changes']} | {e['outcome']} | "
            f"{e['started'] or '-'} | {e['ended'] or '-'} |"
        )
    return lines


def run(args: argparse.Namespace) -> int:
    waves = [int(w) for w in args.waves.split(",")]
    if args.hosts < 3 or not 2 <= args.cut <= args.hosts or min(waves) < 1:
        raise LabError("give at least 3 hosts, a --cut host after the canary, waves of 1 or more")
    if client.running():
        raise LabError(f"a lab is already running in {run_dir()}; stop it (`python -m lab down`)")
    args.out.mkdir(parents=True, exist_ok=True)
    hosts = [t.host_name(i) for i in range(1, args.hosts + 1)]
    cut = hosts[args.cut - 1]
    _say(f"booting a fresh lab of {args.hosts} hosts")
    boot = client.up(args.hosts)
    try:
        lab_fleet = (run_dir() / "fleet.toml").read_text()
        fixed = args.out / "fixed.toml"
        fixed.write_text(with_rollout(lab_fleet, waves))
        wrong = args.out / "cut.toml"
        wrong.write_text(with_rollout(cut_fleet(lab_fleet, cut), waves))
        records = args.out / "records"
        before = states(wrong, hosts, args.out / "before.log", args.timeout)
        _say(f"lab up in {boot:.0f} s; facts read; converging in waves {waves}, {cut} cuts")
        first = converge(wrong, hosts, records, args.out / "cut-run.log", args.timeout)
        _say(f"first run: {first[0]:.0f} s, exit {first[1]}")
        outcomes = {e["host"]: e for e in first[2]["hosts"]}
        cut_wave = outcomes[cut]["wave"]
        never = [h for h in hosts if outcomes[h]["outcome"] == "not started"]
        after = states(wrong, never + [cut], args.out / "after.log", args.timeout)
        second = converge(fixed, hosts, records, args.out / "resume-run.log", args.timeout)
        _say(f"resumed run: {second[0]:.0f} s, exit {second[1]}")
    finally:
        if args.keep:
            _say(f"lab left running ({run_dir()}); `python -m lab down` stops it")
        else:
            client.down()

    verdicts: list[tuple[str, bool]] = []
    check(
        verdicts, f"the canary {hosts[0]} confirmed", outcomes[hosts[0]]["outcome"] == "confirmed"
    )
    check(verdicts, f"{cut} rolled back", outcomes[cut]["outcome"] == "rolled back")
    check(
        verdicts,
        f"the rollout stopped at {cut}, wave {cut_wave}",
        first[2]["stopped"] == f"{cut} rolled back in wave {cut_wave}" and first[1] != 0,
    )
    later = [h for h in hosts if (outcomes[h]["wave"] or 0) > cut_wave]
    check(
        verdicts,
        f"no host after wave {cut_wave} started ({len(later)} hosts)",
        bool(later) and set(later) == set(never),
    )
    check(
        verdicts,
        f"{len(never)} hosts never started, and {cut}, are as before, byte for byte",
        all(after[h] == before[h] for h in [*never, cut]),
    )
    resumed = {e["host"]: e for e in second[2]["hosts"]}
    confirmed_first = [h for h in hosts if outcomes[h]["outcome"] == "confirmed"]
    check(
        verdicts,
        "the fixed fleet resumes: the hosts left confirm in waves, the others have no change",
        second[1] == 0
        and all(resumed[h]["outcome"] == "unchanged" for h in confirmed_first)
        and all(resumed[h]["outcome"] == "confirmed" for h in [*never, cut])
        and resumed[cut]["wave"] == 1,
    )
    lines = [
        f"# Rollout benchmark: {args.hosts} hosts in waves of {args.waves}, {cut} cuts",
        "",
        f"`python -m bench.waves --hosts {args.hosts} --waves {args.waves} --cut {args.cut}`, "
        f"{time.strftime('%Y-%m-%d %H:%M %Z')}, {os.cpu_count()} CPUs, load "
        f"{os.getloadavg()[0]:.1f}; lab of {args.hosts} hosts booted in {boot:.0f} s (qemu TCG).",
        "",
        f"## The run that cuts: {first[0]:.0f} s, exit {first[1]}",
        "",
        *_table(first[2]),
        "",
        f"## The fixed fleet file resumes: {second[0]:.0f} s, exit {second[1]}",
        "",
        *_table(second[2]),
        "",
        "## Targets",
        "",
        *(f"- {what}: {'met' if ok else 'missed'}" for what, ok in verdicts),
        "",
    ]
    text = "\n".join(lines)
    (args.out / "report.md").write_text(text)
    print(text, end="")
    return 0 if all(ok for _, ok in verdicts) else 1


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return run(args)
    except LabError as e:
        print(f"bench: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
