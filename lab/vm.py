"""Starts, watches and stops the lab's qemu VM, and runs commands in it over SSH."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from lab import initramfs, keys
from lab import topology as t
from lab.errors import LabError
from lab.paths import (
    GUEST_DIR,
    NO_NETWORKMANAGER,
    cache_dir,
    iproute2_dir,
    networkmanager_dir,
    networkmanager_versions,
    run_dir,
)

QEMU = "qemu-system-x86_64"
VIRTFS_OPTIONS = "security_model=passthrough,readonly=on,multidevs=remap"
# Magic SysRq keys the monitor presses when the VM stops answering, each making the kernel
# print to the console what explains a hang: "8" lets the console show those printouts
# (the boot's `quiet` hides them), "w" the tasks blocked in the kernel and where, "l" what
# each CPU runs, "m" memory.
HANG_SYSRQ_KEYS = ("8", "w", "l", "m")
# The console's log level under `quiet`: restored once those printouts are in.
QUIET_SYSRQ_KEY = "4"
# The firmware's screen resets and colours, and the monitor's line editing, would only
# garble a CI log.
_ESCAPES = re.compile(r"\x1b(\[[0-9;?]*[A-Za-z]|c)")


def ssh_options(run: Path) -> list[str]:
    return [
        "-F", "/dev/null",
        "-i", str(keys.client_key(run)),
        "-o", "IdentitiesOnly=yes",
        "-o", f"UserKnownHostsFile={keys.known_hosts(run)}",
        "-o", "StrictHostKeyChecking=yes",
        "-o", "BatchMode=yes",
        "-o", "ConnectTimeout=30",
        "-o", "ServerAliveInterval=5",
        "-o", "ServerAliveCountMax=3",
        "-o", "LogLevel=ERROR",
    ]  # fmt: skip


@dataclass
class VmState:
    pid: int
    hosts: int
    max_hosts: int


def read_state(run: Path) -> VmState | None:
    try:
        data = json.loads((run / "vm.json").read_text())
        pid = int((run / "qemu.pid").read_text())
    except (OSError, ValueError):
        return None
    if not _alive(pid):
        return None
    # The running lab's ports win over the environment of whoever asks.
    os.environ["LAB_BASE_PORT"] = str(data.get("base_port", t.base_port()))
    return VmState(pid, int(data["hosts"]), int(data["max_hosts"]))


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    # A pid reused by another program is not our VM; a zombie is a VM that exited.
    if "\nState:\tZ" in status:
        return False
    try:
        return b"qemu-system" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


SYSTEMD_MAX_HOSTS = 10


def init_mode(hosts: int = 0) -> str:
    """systemd per host up to SYSTEMD_MAX_HOSTS; beyond, the lighter boot runner (scale mode)."""
    mode = os.environ.get("LAB_INIT", "auto")
    if mode == "auto":
        return "systemd" if hosts <= SYSTEMD_MAX_HOSTS else "runner"
    if mode not in ("systemd", "runner"):
        raise LabError(f"LAB_INIT={mode!r}: use 'auto' (default), 'systemd' or 'runner'")
    return mode


def cgroup_mode() -> str:
    """v2 (unified, AlmaLinux 9's default) or v1 (legacy hierarchies, AlmaLinux 8's default)."""
    mode = os.environ.get("LAB_CGROUP", "v2")
    if mode not in ("v1", "v2"):
        raise LabError(f"LAB_CGROUP={mode!r}: use 'v2' (default) or 'v1'")
    return mode


def network_mode(init: str) -> str:
    """networkmanager (a real NetworkManager reads the host's profiles, as on AlmaLinux; the
    default wherever the hosts run systemd) or script (the lab's lab-network.sh brings the
    links up, as on a host with the legacy network-scripts and no NetworkManager; the default
    of the larger fleets, whose hosts run the lighter boot runner)."""
    mode = os.environ.get("LAB_NETWORK", "auto")
    if mode == "auto":
        mode = "networkmanager" if init == "systemd" else "script"
    if mode not in ("script", "networkmanager"):
        raise LabError(
            f"LAB_NETWORK={mode!r}: use 'networkmanager', 'script' or 'auto' (default: "
            "networkmanager on systemd hosts, script beyond)"
        )
    if mode == "networkmanager":
        if init != "systemd":
            raise LabError(
                "LAB_NETWORK=networkmanager needs systemd on the hosts: at most "
                f"{SYSTEMD_MAX_HOSTS} hosts and LAB_INIT unset or 'systemd'"
            )
        for version in networkmanager_versions():
            if version == NO_NETWORKMANAGER:
                continue
            if not (networkmanager_dir(version) / "complete").exists():
                raise LabError(
                    f"LAB_NETWORK=networkmanager: no NetworkManager {version} build in "
                    f"{networkmanager_dir(version)}; run `sh lab/build-networkmanager.sh "
                    f"{version}` first (one to three minutes)"
                )
    return mode


def memory_mib(hosts: int) -> int:
    # Measured: about 25 MiB per host (sshd, hostboot, overlay) plus the VM's own base.
    return max(1024, 768 + 40 * hosts)


def start(hosts: int, max_hosts: int) -> VmState:
    run = run_dir()
    run.mkdir(parents=True, exist_ok=True)
    kernel = initramfs.find_kernel()
    initrd = initramfs.build(kernel, cache_dir())
    keys.ensure(run, max_hosts)
    ports = [t.control_port()] + [t.host_port(i) for i in range(1, max_hosts + 1)]
    busy = [p for p in ports if not _port_free(p)]
    if busy:
        raise LabError(
            f"ports {busy} on 127.0.0.1 are in use; stop what holds them, or set LAB_BASE_PORT "
            "to another base (the lab uses base..base+hosts)"
        )
    (run / "vm.json").write_text(
        json.dumps(
            {
                "hosts": hosts,
                "max_hosts": max_hosts,
                "base_port": t.base_port(),
                "init": init_mode(hosts),
                "cgroup": cgroup_mode(),
                "network": network_mode(init_mode(hosts)),
                # Host N runs the N-th version (the last one beyond the list).
                "networkmanager": [
                    {
                        "version": v,
                        "dir": "" if v == NO_NETWORKMANAGER else str(networkmanager_dir(v)),
                    }
                    for v in networkmanager_versions()
                ],
                "iproute2": str(iproute2_dir() or ""),
            }
        )
        + "\n"
    )
    fwd = ",".join(f"hostfwd=tcp:127.0.0.1:{p}-{t.VM4}:{p}" for p in ports)
    netdev = (
        f"user,id=n0,restrict=on,ipv6=off,net={t.SLIRP_NET},host={t.CONTROLLER4},"
        f"dhcpstart={t.VM4},{fwd}"
    )
    monitor_sock = _socket(run, "monitor")
    append = (
        f"console=ttyS0 quiet panic=-1 sysrq_always_enabled lab.init={GUEST_DIR / 'vminit.sh'} "
        f"lab.run={run} lab.cgroup={cgroup_mode()}"
    )
    argv = [
        QEMU, "-accel", "tcg,thread=multi", "-cpu", "max", "-smp", str(min(2, os.cpu_count() or 1)),
        "-m", str(memory_mib(max_hosts)), "-nographic", "-no-reboot",
        "-monitor", f"unix:{monitor_sock},server=on,wait=off" if monitor_sock else "none",
        "-serial", f"file:{run / 'console.log'}",
        "-kernel", str(kernel.vmlinuz), "-initrd", str(initrd), "-append", append,
        "-netdev", netdev, "-device", "virtio-net-pci,netdev=n0",
        "-virtfs", f"local,path=/,mount_tag=hostroot,{VIRTFS_OPTIONS}",
    ]  # fmt: skip
    try:
        with open(run / "qemu.log", "w") as log:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
    except FileNotFoundError as e:
        raise LabError(f"{QEMU} not found; run lab/install-deps.sh") from e
    # Popen can return before the child has called exec; until then it is not "qemu".
    deadline = time.monotonic() + 10
    while proc.poll() is None and not _alive(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    (run / "qemu.pid").write_text(f"{proc.pid}\n")
    return VmState(proc.pid, hosts, max_hosts)


def console_tail(run: Path, lines: int = 25) -> str:
    text = ""
    for name in ("qemu.log", "console.log"):
        with contextlib.suppress(OSError):
            text += (run / name).read_text(errors="replace")
    text = _ESCAPES.sub("", text)
    return "\n".join(text.splitlines()[-lines:])


def monitor(run: Path, *commands: str, timeout: float = 10) -> str | None:
    """What qemu's human monitor answers to `commands`, or None if it cannot be reached.

    It answers whatever the guest does: the one way to look into a VM that has stopped
    answering ssh."""
    path = _socket(run, "monitor")
    if path is None or not path.exists():
        return None
    out = b""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(str(path))
            for command in (*commands, ""):
                # Each answer ends with the next prompt; the banner with the first.
                while not out.endswith(b"(qemu) "):
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    out += chunk
                if command:
                    s.sendall(command.encode() + b"\n")
                    out += b"\n"
    except OSError as e:
        return f"{out.decode(errors='replace')}\n(monitor: {e})"
    text = _ESCAPES.sub("", out.decode(errors="replace"))
    # The monitor echoes each command as it is typed, and prompts: only its answers count.
    lines = text.replace("\r", "").splitlines()
    return "\n".join(
        line
        for line in lines
        if line.strip() not in ("", "(qemu)") and not any(line.endswith(c) for c in commands)
    )


def hang_report(run: Path, settle: float = 5) -> str:
    """Has the kernel print its blocked tasks, CPUs and memory to the console (it does so
    even when no process in the VM runs any more), then returns qemu's view and that
    console's end."""
    answer = monitor(run, "info status")
    if answer is None:
        return "(qemu's monitor cannot be reached)"
    for key in HANG_SYSRQ_KEYS:
        # One key at a time, each after the last one's release (qemu holds a key 100 ms):
        # sent back to back, a key was lost now and then (no "Show Blocked State").
        monitor(run, f"sendkey alt-sysrq-{key}")
        time.sleep(0.3)
    time.sleep(settle)  # the emulated serial console prints slowly
    monitor(run, f"sendkey alt-sysrq-{QUIET_SYSRQ_KEY}")
    return (
        f"{answer.strip()}\n--- VM console after SysRq (last 150 lines)\n{console_tail(run, 150)}"
    )


def wait_ready(state: VmState, timeout: float) -> None:
    run = run_dir()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(state.pid):
            raise LabError(f"the lab VM exited while booting; last output:\n{console_tail(run)}")
        if "lab: VM setup failed" in console_tail(run, 200):
            raise LabError(f"the lab VM could not set up the hosts:\n{console_tail(run)}")
        r = vm_run(
            "test -e /run/lab-vm/ready || { cat /run/lab-vm/failed 2>/dev/null; exit 3; }",
            timeout=30,
            shared=False,
        )
        if r.returncode == 0:
            return
        if r.returncode == 3 and r.stdout.strip():
            raise LabError(f"the lab VM could not set up the hosts: {r.stdout.strip()}")
        time.sleep(1)
    raise LabError(
        f"the lab VM was not ready within {timeout:.0f}s; last output:\n{console_tail(run)}"
    )


def _socket(run: Path, name: str) -> Path | None:
    path = run / f"{name}.sock"
    # A Unix socket path holds at most 107 bytes, and ssh first binds PATH.<16 random
    # characters>; from a deeper run directory, no sharing.
    return path if len(str(path)) <= 88 else None


def shared_options(run: Path, name: str) -> list[str]:
    """ssh options that share one long-lived connection per name: the first command opens it
    and leaves it running (ControlPersist), the next ones ride on it.

    Under emulation each new ssh connection costs the VM a second or more (key exchange,
    sshd's re-exec). Whoever cuts or reboots what is behind the connection closes it first
    (close_shared); run_ssh() keeps its stderr off a pipe the connection would hold open."""
    sock = _socket(run, name)
    if sock is None:
        return []
    return ["-o", "ControlMaster=auto", "-o", f"ControlPath={sock}", "-o", "ControlPersist=yes"]


def run_ssh(
    argv: list[str], timeout: float | None = None, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    # A shared connection opened by this call outlives it and keeps the stderr it was given:
    # a pipe there would never reach end of file. A file does not care.
    with tempfile.TemporaryFile() as err:
        try:
            r = subprocess.run(
                argv,
                stdout=subprocess.PIPE,
                stderr=err,
                input=None if input is None else input.encode(),
                timeout=timeout,
            )
        except subprocess.TimeoutExpired as e:
            return subprocess.CompletedProcess(
                argv, 255, stdout="", stderr=f"ssh timed out after {e.timeout}s"
            )
        err.seek(0)
        return subprocess.CompletedProcess(
            argv,
            r.returncode,
            stdout=r.stdout.decode(errors="replace"),
            stderr=err.read().decode(errors="replace"),
        )


def has_shared(run: Path, name: str) -> bool:
    sock = _socket(run, name)
    return sock is not None and sock.exists()


def close_shared(run: Path, name: str | None = None) -> None:
    """Ends the shared connection `name`, or all of them."""
    socks = [run / f"{name}.sock"] if name else sorted(run.glob("*.sock"))
    for sock in socks:
        if sock.exists():
            # A master that does not answer is left to die with its connection (it checks
            # the server every 5 s); it must not stop the caller, such as `down`.
            with contextlib.suppress(subprocess.TimeoutExpired, OSError):
                subprocess.run(
                    ["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "root@127.0.0.1"],
                    capture_output=True,
                    timeout=10,
                )


def vm_run(
    command: str, timeout: float | None = None, input: str | None = None, shared: bool = True
) -> subprocess.CompletedProcess[str]:
    """Runs a shell command in the VM's root namespace; ``shared=False`` while it boots."""
    run = run_dir()
    # The VM's own control path is never cut or rebooted: one connection serves all.
    share = shared_options(run, "control") if shared else []
    argv = [
        "ssh", *ssh_options(run), *share, "-p", str(t.control_port()), "root@127.0.0.1", command
    ]  # fmt: skip
    return run_ssh(argv, timeout, input)


def agent_run(
    *args: str, timeout: float = 300, shared: bool = True
) -> subprocess.CompletedProcess[str]:
    # The VM's own interpreter, as at its boot (vminit.sh), not whatever PATH finds first.
    command = "/usr/bin/python3 -B " + shlex.join([str(GUEST_DIR / "agent.py"), *args])
    return vm_run(command, timeout=timeout, shared=shared)


def agent(*args: str, timeout: float = 300) -> str:
    r = agent_run(*args, timeout=timeout)
    if r.returncode != 0:
        message = (r.stderr.strip() or r.stdout.strip()) or f"lab VM command failed: {args}"
        if r.returncode == 255:
            # ssh itself failed: the VM stopped answering. Its console says why, if anything.
            alive = read_state(run_dir()) is not None
            message += (
                f"\n(the lab VM's ssh did not answer; qemu {'runs' if alive else 'has exited'}; "
                f"its console ends:)\n{console_tail(run_dir())}"
            )
        raise LabError(message)
    return r.stdout


def stop() -> bool:
    run = run_dir()
    close_shared(run)
    try:
        pid = int((run / "qemu.pid").read_text())
    except (OSError, ValueError):
        return False
    if not _alive(pid):
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)
    return True
