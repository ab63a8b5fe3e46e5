"""`python -m lab COMMAND`: start, inspect, break and stop the lab."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable

from lab import client
from lab.errors import LabError
from lab.paths import run_dir


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m lab", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the lab, or reuse the running one")
    up.add_argument("--hosts", type=int, default=3, help="number of hosts (default 3)")
    sub.add_parser("down", help="stop the VM and remove the run state")
    sub.add_parser(
        "diagnostics", help="what explains a failure: load, VM console, each host's journal"
    )
    st = sub.add_parser("status", help="what runs, per host")
    st.add_argument("--json", action="store_true")
    for name, text in (
        ("ssh", "ssh into a host (through its management segment); after --, run one command"),
        ("gw", "run a command in a host's router namespace (its three gateways)"),
        ("inside", "run a command on a host from the VM, not over ssh: a cut host answers"),
    ):
        s = sub.add_parser(name, help=text)
        s.add_argument("host")
        s.add_argument("cmd", nargs=argparse.REMAINDER)
    v = sub.add_parser("vm", help="run a command in the VM's root namespace (controller side)")
    v.add_argument("cmd", nargs=argparse.REMAINDER)
    cm = sub.add_parser(
        "commands", help="per host, the ssh session requests it received (counted on the host)"
    )
    cm.add_argument("--reset", action="store_true", help="empty the logs after reading them")
    cm.add_argument("--lines", action="store_true", help="print each request, not only counts")
    cm.add_argument("--json", action="store_true")
    for name, text in (
        ("reboot", "wipe the host's network state and run its boot path; files are kept"),
        ("reset", "like reboot, and also drop every file written on the host"),
        ("cut", "break the controller's ssh path through the host's management segment"),
        ("heal", "restore the controller's ssh path"),
        ("seed-broken", "put the blog's broken state on a host (six ifcfg files, extra defaults)"),
    ):
        s = sub.add_parser(name, help=text)
        s.add_argument("host")
    return p


def _cmd(words: list[str]) -> list[str]:
    return words[1:] if words[:1] == ["--"] else words


def _passthrough(r: client.subprocess.CompletedProcess[str]) -> int:
    sys.stdout.write(r.stdout)
    sys.stderr.write(r.stderr)
    return r.returncode


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _dispatch(args)
    except LabError as e:
        print(f"lab: {e}", file=sys.stderr)
        return 1


def _dispatch(args: argparse.Namespace) -> int:
    c = args.command
    if c == "up":
        seconds = client.up(args.hosts)
        run = run_dir()
        print(f"lab: {len(client.host_names())} hosts up ({seconds:.1f}s)")
        print(f"lab: fleet file {run / 'fleet.toml'}")
        print("lab: reach a host with `python -m lab ssh lab1`")
        return 0
    if c == "down":
        print("lab: stopped" if client.down() else "lab: was not running; run state removed")
        return 0
    if c == "diagnostics":
        print(client.diagnostics())
        return 0
    if c == "status":
        if not client.running():
            print(json.dumps({"running": False}) if args.json else "lab: not running")
            return 3
        data = client.status()
        if args.json:
            print(json.dumps({"running": True, **data}))
            return 0
        print(f"lab: running, VM up {data['uptime']:.0f}s")
        hosts = data["hosts"]
        assert isinstance(hosts, dict)
        for name, h in hosts.items():
            flags = [
                "ready" if h["ready"] else ("booting" if h["running"] else "stopped"),
                "CUT" if h["cut"] else "",
                ("vrf " + ",".join(h["vrfs"])) if h["vrfs"] else "",
            ]
            print(f"  {name}  port {h['port']}  " + "  ".join(f for f in flags if f))
        return 0
    if c == "commands":
        logs = client.sessions(reset=args.reset)
        if args.json:
            print(json.dumps(logs if args.lines else {n: len(v) for n, v in logs.items()}))
            return 0
        for name, lines in logs.items():
            print(f"{name}  {len(lines)}")
            if args.lines:
                print("".join(f"    {line}\n" for line in lines), end="")
        return 0
    if c == "ssh":
        cmd = _cmd(args.cmd)
        if cmd:
            r = client.ssh(args.host, cmd, timeout=None)
            return _passthrough(r)
        argv = client.ssh_argv(args.host, tty=True)
        os.execvp(argv[0], argv)
    if c == "gw":
        return _passthrough(
            client.gw(args.host, _cmd(args.cmd) or ["ip", "-br", "address"], timeout=None)
        )
    if c == "inside":
        return _passthrough(client.inside(args.host, _cmd(args.cmd) or ["true"], timeout=3600))
    if c == "vm":
        return _passthrough(
            client.vm_command(_cmd(args.cmd) or ["ip", "-br", "address"], timeout=None)
        )
    actions: dict[str, Callable[[str], None]] = {
        "reboot": client.reboot,
        "reset": client.reset,
        "cut": client.cut,
        "heal": client.heal,
        "seed-broken": client.seed_broken,
    }
    actions[c](args.host)
    print(f"lab: {c} {args.host}: done")
    return 0
