"""Fleet benchmark: how long runs over the whole lab fleet take, and what they cost the hosts.

    python -m bench.fleet                       # 50 hosts
    python -m bench.fleet --hosts 50 --also 10  # and the same runs at 10 hosts, for memory

Boots a fresh lab and measures, in one go so the figures are ratios on the same machine
state: a floor (`pyinfra inventory.py exec -- true`), a first converge, a no-change
converge, a dry run and the drift report. For each: wall time, ratio to the floor, remote
commands per host (as logged by each host's sshd, see lab/README.md), the controller's peak
RSS. `--also N` gives N more hosts to the same lab and repeats every run on them. Prints a
Markdown report (also written to bench/out/figures.md, with figures.json and each run's
log) and takes the lab down, unless --keep.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict
from importlib.metadata import version
from pathlib import Path

from bench import figures
from lab import client
from lab import topology as t
from lab.errors import LabError
from lab.paths import run_dir

ROOT = Path(__file__).resolve().parents[1]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.fleet", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    p.add_argument("--hosts", type=int, default=50, help="fleet size measured (default 50)")
    p.add_argument(
        "--also",
        type=int,
        action="append",
        default=[],
        metavar="N",
        help="repeat every run on N more hosts of the same lab (repeatable)",
    )
    p.add_argument(
        "--parallel",
        type=int,
        default=10,
        help="pyinfra --parallel for every pyinfra run (default 10; 0: pyinfra's own default)",
    )
    p.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="rounds of floor, no-change converge, dry run and report; medians shown (default 3)",
    )
    p.add_argument(
        "--rollback-timeout",
        type=int,
        default=None,
        metavar="S",
        help="rollback_timeout for every host of the measured fleet (default: the lab's, 120)",
    )
    p.add_argument(
        "--changes-at-once",
        type=int,
        default=None,
        metavar="N",
        help="changes_at_once for every host of the measured fleet (default: the deploy's, 10)",
    )
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "out", help="logs and figures")
    p.add_argument("--timeout", type=float, default=1800, help="seconds allowed per run")
    p.add_argument("--keep", action="store_true", help="leave the lab running at the end")
    p.add_argument(
        "--replace", action="store_true", help="take down a lab already running in LAB_RUN_DIR"
    )
    return p


def _argv(words: list[str]) -> list[str]:
    # This interpreter, whatever `pyinfra` or `python` the PATH would find.
    if words[0] == "pyinfra":
        return [sys.executable, "-m", "pyinfra", *words[1:]]
    if words[0] == "python":
        return [sys.executable, *words[1:]]
    return words


def timed(
    argv: list[str], env: dict[str, str], log: Path, timeout: float
) -> tuple[float, int, int]:
    """Runs argv from the checkout root; (wall seconds, exit code, peak RSS in KiB)."""
    with log.open("wb") as out:
        t0 = time.monotonic()
        proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        timer = threading.Timer(timeout, _kill_group, (proc.pid,))
        timer.start()
        try:
            # wait4, not wait: its rusage is this child's alone (and its own children's),
            # where RUSAGE_CHILDREN would mix in every process this benchmark ever ran.
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            # Its own session keeps it from ^C: take it down with us.
            _kill_group(proc.pid)
            raise
        finally:
            timer.cancel()
        seconds = time.monotonic() - t0
    code = os.waitstatus_to_exitcode(status)
    proc.returncode = code  # reaped here; Popen must not try again
    return seconds, code, usage.ru_maxrss


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def measure(
    kind: str, hosts: tuple[str, ...], fleet: Path, args: argparse.Namespace, log: Path
) -> figures.Measurement:
    env = {**os.environ, "MGMT_VRF_FLEET": str(fleet)}
    client.command_counts(reset=True)
    load = os.getloadavg()[0]
    argv = _argv(figures.command(kind, args.parallel))
    seconds, code, rss = timed(argv, env, log, args.timeout)
    counts = client.command_counts(reset=True)
    output = log.read_text(errors="replace")
    return figures.Measurement(
        kind=kind,
        hosts=hosts,
        seconds=seconds,
        exit_code=code,
        peak_rss_kib=rss,
        counts=counts,
        outcome=figures.outcome(kind, output),
        load=load,
        rolled_back=figures.rolled_back(output),
    )


def _say(text: str) -> None:
    print(f"bench: {text}", file=sys.stderr, flush=True)


def _progress(size: int, m: figures.Measurement) -> None:
    low, high = m.commands
    _say(
        f"{size} hosts: {figures.TITLES[m.kind]}: {m.seconds:.1f} s, exit {m.exit_code}, "
        f"{low}-{high} commands/host, {m.peak_rss_kib / 1024:.0f} MiB, {m.outcome}"
    )


def _command_line(argv: list[str]) -> str:
    lab_env = [
        f"{k}={shlex.quote(os.environ[k])}" for k in sorted(os.environ) if k.startswith("LAB_")
    ]
    return " ".join([*lab_env, "python -m bench.fleet", *map(shlex.quote, argv)])


def run(args: argparse.Namespace, argv: list[str]) -> int:
    sizes = [args.hosts, *args.also]
    if min(sizes) < 1 or len(set(sizes)) != len(sizes):
        raise LabError("fleet sizes must be positive and different from each other")
    if args.repeat < 1:
        raise LabError("--repeat must be at least 1")
    if client.running():
        if not args.replace:
            raise LabError(
                f"a lab is already running in {run_dir()}; the benchmark boots its own. Stop "
                "it (`python -m lab down`), pass --replace, or point LAB_RUN_DIR and "
                "LAB_BASE_PORT at a second lab"
            )
        _say("taking down the running lab (--replace)")
        client.down()
    total = sum(sizes)
    _say(f"booting a fresh lab of {total} hosts")
    boot = client.up(total)
    try:
        lab_run = run_dir()
        init = json.loads((lab_run / "hosts.json").read_text()).get("init", "?")
        _say(f"lab up in {boot:.0f} s ({init} per host)")
        lab_fleet = (lab_run / "fleet.toml").read_text()
        results: dict[int, dict[str, figures.Figure]] = {}
        first = 1
        for size in sizes:
            hosts = tuple(t.host_name(i) for i in range(first, first + size))
            first += size
            logs = args.out / f"{size}-hosts"
            shutil.rmtree(logs, ignore_errors=True)
            logs.mkdir(parents=True)
            fleet = logs / "fleet.toml"
            fleet.write_text(
                figures.with_defaults(
                    figures.fleet_subset(lab_fleet, hosts),
                    rollback_timeout=args.rollback_timeout,
                    changes_at_once=args.changes_at_once,
                )
            )
            # Untimed: the first session on a fresh host reads its shell and tools from
            # cold caches, a cost the floor would otherwise carry alone.
            warm = measure("floor", hosts, fleet, args, logs / "warmup.log")
            _say(f"{size} hosts ({hosts[0]}..{hosts[-1]}): warm-up {warm.seconds:.1f} s")
            samples: dict[str, list[figures.Measurement]] = {k: [] for k, _ in figures.KINDS}
            samples["first"].append(measure("first", hosts, fleet, args, logs / "first.log"))
            _progress(size, samples["first"][-1])
            # The floor is measured in the same rounds as the runs it is compared with, on
            # the same converged hosts, so a change of load hits both alike. Each round
            # starts one later in the order, so no run always follows the same other one.
            kinds = ("floor", "nochange", "dry", "report")
            for i in range(1, args.repeat + 1):
                shift = (i - 1) % len(kinds)
                for kind in kinds[shift:] + kinds[:shift]:
                    m = measure(kind, hosts, fleet, args, logs / f"{kind}-{i}.log")
                    samples[kind].append(m)
                    _progress(size, m)
            runs = {k: figures.Figure(k, tuple(v)) for k, v in samples.items()}
            results[size] = runs
    finally:
        if args.keep:
            _say(f"lab left running ({run_dir()}); `python -m lab down` stops it")
        else:
            client.down()
    meta = figures.Meta(
        command=_command_line(argv),
        when=time.strftime("%Y-%m-%d %H:%M %Z"),
        machine=(
            f"{os.cpu_count()} CPUs, Linux {platform.release()}, Python "
            f"{platform.python_version()}, pyinfra {version('pyinfra')}"
        ),
        lab=f"{total} hosts booted in {boot:.0f} s, {init} per host, qemu TCG",
        parallel=args.parallel,
    )
    text = figures.render(results, args.hosts, meta)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "figures.md").write_text(text)
    (args.out / "figures.json").write_text(
        json.dumps(
            {
                "meta": asdict(meta),
                "results": {
                    str(size): {kind: [asdict(m) for m in f.samples] for kind, f in runs.items()}
                    for size, runs in results.items()
                },
            },
            indent=1,
        )
        + "\n"
    )
    print(text, end="")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _parser().parse_args(argv)
    try:
        return run(args, argv)
    except LabError as e:
        print(f"bench: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
