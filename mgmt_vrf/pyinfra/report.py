"""Fleet drift report: which hosts differ from their spec. Reads only, changes nothing.

    mgmt-vrf-report                  # one line per host, then totals
    mgmt-vrf-report --json           # for monitoring
    mgmt-vrf-report --limit lab1     # some hosts (names, groups or globs)
    mgmt-vrf-report --parallel 10    # at most 10 hosts at once (default: all)

(`python -m mgmt_vrf_report` in a checkout.) A host whose ssh connection fails is tried once
more after the others: it is reported unreachable only if that fails too.

The last run's record of the same fleet file (see mgmt_vrf.rollout) follows the totals: when
it ran, how many hosts it confirmed, rolled back or left untouched, and why.

Exit status: 0 every host converged, 1 some host drifted, 2 a host was unreachable, refused
or failed (or the fleet file is broken). The inventory is ./inventory.py (in a checkout, the
project's own, which reads the fleet file of $MGMT_VRF_FLEET) unless --inventory names
another pyinfra inventory file; each host's spec comes from its data (mgmt_vrf.pyinfra.hostspec).

This is the thin pyinfra side: it loads the inventory the way the pyinfra CLI does, reads the
combined fact from every host in parallel, and hands each host's plan to mgmt_vrf.drift.
"""

from __future__ import annotations

# paramiko blocks unless sockets are cooperative; the pyinfra CLI patches the same way.
from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import contextlib  # noqa: E402
import fnmatch  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from typing import NoReturn  # noqa: E402

import gevent  # noqa: E402
from pyinfra.api import Config, Inventory, State  # noqa: E402
from pyinfra.api.exceptions import ConnectError  # noqa: E402
from pyinfra.api.facts import get_fact  # noqa: E402
from pyinfra.api.host import Host  # noqa: E402
from pyinfra.context import ctx_config, ctx_host, ctx_inventory, ctx_state  # noqa: E402
from pyinfra_cli.inventory import make_inventory  # noqa: E402

from mgmt_vrf import drift, paths  # noqa: E402
from mgmt_vrf.plan import plan  # noqa: E402
from mgmt_vrf.preflight import host_problems  # noqa: E402
from mgmt_vrf.rollout import latest_record, outcome_lines, records_dir, summary  # noqa: E402

from .facts import VrfHostState  # noqa: E402
from .hostspec import HostDataError, host_spec  # noqa: E402
from .inventory_data import FLEET_FILE_DATA_KEY  # noqa: E402

# Long enough for a slow host to answer the probe, short enough that a wedged one does not
# hold up the report: the other hosts are read meanwhile anyway.
FACT_TIMEOUT = 120


def _give_up(message: str) -> NoReturn:
    print(f"mgmt-vrf report: {message}", file=sys.stderr)
    # 2, like an unreachable host: monitoring must not read a usage error as "no drift".
    raise SystemExit(drift.EXIT_TROUBLE)


def _select(inventory: Inventory, limits: Sequence[str]) -> list[Host]:
    hosts = list(inventory)
    if not limits:
        return hosts
    chosen: list[Host] = []
    for pattern in limits:
        group = inventory.get_group(pattern, None) if pattern in inventory.groups else None
        matched = list(group) if group else [h for h in hosts if fnmatch.fnmatch(h.name, pattern)]
        if not matched:
            known = ", ".join(sorted(h.name for h in hosts))
            _give_up(
                f"--limit {pattern}: no host or group of that name in the inventory "
                f"(hosts: {known})"
            )
        chosen += [h for h in matched if h not in chosen]
    return [h for h in hosts if h in chosen]


def check_host(state: State, host: Host) -> drift.HostReport:
    try:
        spec = host_spec(host)
    except HostDataError as exc:
        return drift.refused(host.name, list(exc.messages))

    address = host.data.get("ssh_hostname") or host.name
    port = host.data.get("ssh_port")
    target = f"{address}:{port}" if port else str(address)
    try:
        host.connect(show_errors=False, raise_exceptions=True)
    except ConnectError as exc:
        reason = str(exc.args[0]) if exc.args else "no reason given"
        return drift.unreachable(host.name, f"no ssh connection to {target}: {reason}")
    if not host.connected:
        return drift.unreachable(host.name, f"no ssh connection to {target}")

    with ctx_state.use(state), ctx_host.use(host):
        found = get_fact(
            state,
            host,
            VrfHostState,
            kwargs={**paths.probe_arguments(spec), "_timeout": FACT_TIMEOUT},
            apply_failed_hosts=False,
        )
    if found is None:
        return drift.failed(
            host.name,
            "connected, but the combined fact failed (lost connection, or the probe exited "
            f"non-zero); see `pyinfra inventory.py fact {VrfHostState.name} --limit "
            f"{host.name}` for the host's own error",
        )
    problems = host_problems(spec, found)
    if problems:
        return drift.refused(host.name, problems)
    return drift.from_plan(plan(spec, found), host.name)


def _guarded(state: State, host: Host) -> drift.HostReport:
    # One host's surprise must not hide the verdict on the others.
    try:
        return check_host(state, host)
    except Exception as exc:  # noqa: BLE001
        return drift.failed(host.name, f"{type(exc).__name__}: {exc}")
    finally:
        if host.connected:
            # A host that dropped mid-read has nothing left to close; its verdict stands.
            with contextlib.suppress(Exception):
                host.disconnect()


def run(
    inventory_file: str, limits: Sequence[str], parallel: int = 0
) -> tuple[list[drift.HostReport], str]:
    """Every chosen host's report, and the fleet file the inventory read (if it says)."""
    config = Config(PARALLEL=parallel) if parallel else Config()
    ctx_config.set(config)
    state = State()
    ctx_state.set(state)  # pyinfra's inventory loader records the file it runs in the state
    inventory = make_inventory(inventory_file, cwd=os.getcwd())
    ctx_inventory.set(inventory)
    hosts = _select(inventory, limits)
    if not hosts:
        _give_up(f"the inventory {inventory_file} has no hosts")
    state.init(inventory, config)
    for host in hosts:
        state.activate_host(host)
    reports = _check_all(state, hosts)
    # A burst of handshakes can time out on hosts that are fine (their sshd or the path is
    # busy): a host is called unreachable only if a second try, after the burst, fails too.
    again = [i for i, report in enumerate(reports) if report.status == "unreachable"]
    for i, report in zip(again, _check_all(state, [hosts[i] for i in again]), strict=True):
        reports[i] = report
    return reports, str(hosts[0].data.get(FLEET_FILE_DATA_KEY) or "")


def _check_all(state: State, hosts: Sequence[Host]) -> list[drift.HostReport]:
    jobs = [state.pool.spawn(_guarded, state, host) for host in hosts]
    gevent.joinall(jobs)
    return [job.get() for job in jobs]


def main(
    argv: Sequence[str] | None = None,
    prog: str = "mgmt-vrf-report",
    inventory: str = "inventory.py",
) -> int:
    """The command line; a checkout's `python -m mgmt_vrf_report` passes its own inventory."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Which hosts differ from the fleet file. Reads only, changes nothing.",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument(
        "--limit", action="append", default=[], metavar="HOST", help="host, group or glob"
    )
    parser.add_argument(
        "--inventory",
        default=inventory,
        help=f"pyinfra inventory file (default: {inventory})",
    )
    parser.add_argument(
        "--parallel",
        type=int,
        default=0,
        metavar="N",
        help="hosts read at once (default: all, as pyinfra does)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="show pyinfra's own log")
    args = parser.parse_args(argv)
    if args.parallel < 0:
        _give_up(f"--parallel {args.parallel}: give a number of hosts, 0 for all")

    # pyinfra logs every failed connection at length; the report's line per host says it once.
    logging.basicConfig(level=logging.INFO if args.verbose else logging.CRITICAL, stream=sys.stderr)
    reports, fleet = run(args.inventory, args.limit, args.parallel)
    last = latest_record(records_dir(os.environ), fleet) if fleet else None
    names = [report.host for report in reports]
    if args.json:
        data = drift.render_json(reports)
        if last is not None:
            data["last_run"] = {"record": str(last[0]), **last[1]}
        print(json.dumps(data, indent=2))
    else:
        lines = drift.render_text(reports)
        if last is not None:
            lines += [f"{summary(last[1])} (record: {last[0]})", *outcome_lines(last[1], names)]
        print("\n".join(lines))
    return drift.exit_code(reports)


if __name__ == "__main__":
    sys.exit(main())
