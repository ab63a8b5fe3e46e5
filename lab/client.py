"""The lab as a Python API: what the CLI, the tests and the benchmarks call."""

from __future__ import annotations

import json
import shlex
import subprocess
import time
from pathlib import Path

from lab import fleet, keys, vm
from lab import topology as t
from lab.errors import LabError
from lab.paths import run_dir

BOOT_TIMEOUT = 900.0
MIN_SLOTS = 10


def up(hosts: int = 3) -> float:
    """Starts the lab, or reuses a running one, with at least `hosts` hosts; returns seconds."""
    if hosts < 1:
        raise LabError("--hosts must be at least 1")
    t0 = time.monotonic()
    run = run_dir()
    state = vm.read_state(run)
    if state is not None:
        if hosts > state.max_hosts:
            raise LabError(
                f"the running lab has room for {state.max_hosts} hosts, {hosts} asked; "
                "run `python -m lab down` first"
            )
        vm.agent("ensure-hosts", str(hosts), timeout=BOOT_TIMEOUT)
        hosts = max(hosts, state.hosts)
        _record_hosts(run, hosts)
    else:
        state = vm.start(hosts, max(hosts, MIN_SLOTS))
        try:
            vm.wait_ready(state, BOOT_TIMEOUT)
        except LabError:
            vm.stop()
            raise
    fleet.write(run, hosts)
    return time.monotonic() - t0


def _record_hosts(run: Path, hosts: int) -> None:
    path = run / "vm.json"
    data = json.loads(path.read_text())
    data["hosts"] = hosts
    path.write_text(json.dumps(data) + "\n")


def down() -> bool:
    stopped = vm.stop()  # ends the shared ssh connections too
    run = run_dir()
    if run.exists():
        for p in run.iterdir():
            if p.name == "cache":
                continue
            if p.is_dir():
                _rmtree(p)
            else:
                p.unlink()
    return stopped


def _rmtree(p: Path) -> None:
    import shutil

    shutil.rmtree(p, ignore_errors=True)


def running() -> bool:
    return vm.read_state(run_dir()) is not None


def require_running() -> vm.VmState:
    state = vm.read_state(run_dir())
    if state is None:
        raise LabError("the lab is not running; start it with `python -m lab up`")
    return state


def host_names() -> list[str]:
    state = require_running()
    return [t.host_name(i) for i in range(1, state.hosts + 1)]


def check_host(name: str) -> int:
    try:
        index = t.host_index(name)
    except ValueError as e:
        raise LabError(str(e)) from e
    state = require_running()
    if index > state.hosts:
        raise LabError(
            f"{name} is not in the lab (it has lab1..lab{state.hosts}); use `up --hosts {index}`"
        )
    return index


def ssh_argv(
    name: str, command: list[str] | str | None = None, tty: bool = False, shared: bool = False
) -> list[str]:
    index = check_host(name)
    run = run_dir()
    share = vm.shared_options(run, name) if shared else []
    argv = ["ssh", *vm.ssh_options(run), *share, "-p", str(t.host_port(index))]
    if tty:
        argv.append("-t")
    argv.append("root@127.0.0.1")
    if command:
        argv.append(command if isinstance(command, str) else _join(command))
    return argv


def _join(command: list[str]) -> str:
    # One argument is a shell command line as typed; several are quoted word by word.
    return command[0] if len(command) == 1 else shlex.join(command)


def ssh(
    name: str, command: list[str] | str, timeout: float | None = 60, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Runs a command on a host over ssh, through one shared connection per host."""
    run = run_dir()
    had = vm.has_shared(run, name)
    result = vm.run_ssh(ssh_argv(name, command, shared=True), timeout, input)
    if (
        result.returncode == 255
        and had
        and not vm.has_shared(run, name)
        and not result.stdout
        and "mux_client_request_session" in result.stderr
    ):
        # The shared connection was already dead when the command asked it for a session:
        # the command never started, so it runs once, on a connection of its own.
        result = vm.run_ssh(ssh_argv(name, command), timeout, input)
    return result


def new_connections(names: list[str] | None = None) -> None:
    """The next command to these hosts (default: all) opens a new ssh connection.

    A connection opened before a host's network changed keeps the routing it began with
    (one from before a VRF existed answers through the main table); a test that looks at
    where a session's packets go wants a session from after the change."""
    run = run_dir()
    for name in names if names is not None else host_names():
        vm.close_shared(run, name)


def gw(
    name: str, command: list[str] | str, timeout: float | None = 60
) -> subprocess.CompletedProcess[str]:
    """Runs a command in the host's router namespace (the three gateways and the uplink)."""
    check_host(name)
    cmd = command if isinstance(command, str) else _join(command)
    return vm.vm_run(f"ip netns exec {t.router_ns(name)} sh -c {shlex.quote(cmd)}", timeout=timeout)


def vm_command(
    command: list[str] | str, timeout: float | None = 60
) -> subprocess.CompletedProcess[str]:
    require_running()
    return vm.vm_run(command if isinstance(command, str) else _join(command), timeout=timeout)


def _boot(verb: str, names: tuple[str, ...]) -> None:
    for name in names:
        check_host(name)
        vm.close_shared(run_dir(), name)
    # Several hosts boot at once (the agent waits for all): allow each its own minutes.
    vm.agent(verb, *names, timeout=300 + 60 * (len(names) - 1))


def reboot(*names: str) -> None:
    """Wipe the hosts' network state and run their boot path (all at once); files are kept."""
    _boot("reboot", names)


def reset(*names: str) -> None:
    """Like reboot, and also drop every file written on the hosts."""
    _boot("reset", names)


def seed_broken(*names: str) -> None:
    """The blog's broken state on the hosts: its six ifcfg files, then a reboot."""
    _boot("seed-broken", names)


def cut(name: str, when: str | None = None, within: float = 300) -> None:
    """Break the controller's path to the host; with `when`, only once that absolute path
    exists on the host (the call blocks until then, or fails after `within` seconds)."""
    check_host(name)
    vm.close_shared(run_dir(), name)
    if when is None:
        vm.agent("cut", name)
    else:
        vm.agent("cut", name, "--when", when, str(within), timeout=within + 60)


def wait_for(name: str, path: str, within: float = 300, text: str | None = None) -> None:
    """Block until the absolute `path` exists on the host (and holds `text`, if given), read
    from inside the VM (so a cut host answers too); LabError after `within` seconds."""
    check_host(name)
    vm.agent(
        "wait", name, path, str(within), *([] if text is None else [text]), timeout=within + 60
    )


def inside(
    name: str, command: list[str] | str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Runs a command on the host from inside the VM, not over ssh: it reaches a cut host
    too (tests act on a host in the middle of a change, while the controller waits)."""
    check_host(name)
    cmd = command if isinstance(command, str) else _join(command)
    return vm.agent_run("inside", name, cmd, timeout=timeout)


def heal(name: str) -> None:
    check_host(name)
    vm.close_shared(run_dir(), name)
    vm.agent("heal", name)


def status() -> dict[str, object]:
    require_running()
    data: dict[str, object] = json.loads(vm.agent("status"))
    return data


def diagnostics() -> str:
    """Everything that helps explain a failed lab test, as text: this machine's load, whether
    the VM still runs, the end of its console, and (if it answers) what it sees of itself
    and of each host. Each look is bounded in time: it runs when something already broke."""
    run = run_dir()
    parts = [
        f"lab diagnostics ({run})",
        f"--- controller load: {Path('/proc/loadavg').read_text().strip()}",
    ]
    state = vm.read_state(run)
    parts.append(f"--- VM: {'running, pid ' + str(state.pid) if state else 'not running'}")
    parts.append(f"--- VM console (last 60 lines)\n{vm.console_tail(run, 60)}")
    if state is not None:
        # Its own connection: a shared one may be what broke.
        r = vm.agent_run("diagnostics", timeout=120, shared=False)
        if r.returncode == 0:
            parts.append(r.stdout.rstrip())
        else:
            parts.append(f"--- VM does not answer: exit {r.returncode}: {r.stderr.strip()}")
            parts.append(f"--- qemu monitor\n{vm.hang_report(run)}")
    return "\n".join(parts)


def sessions(reset: bool = False) -> dict[str, list[str]]:
    """Per running host, the ssh session requests it received, one line each, oldest first.

    Logged by each host's sshd (`exec COMMAND`, `sftp PROGRAM` or `shell`) since the host
    booted or since the last `reset=True`, which empties the logs as it reads them.
    """
    require_running()
    data: dict[str, list[str] | None] = json.loads(
        vm.agent("sessions", *(["--reset"] if reset else []))
    )
    return {name: lines for name, lines in data.items() if lines is not None}


def command_counts(reset: bool = False) -> dict[str, int]:
    """Per running host, how many ssh session requests (commands, sftp, shells) it received."""
    return {name: len(lines) for name, lines in sessions(reset).items()}


def known_hosts() -> Path:
    return keys.known_hosts(run_dir())
