"""PID 1 of a lab host: the boot path of a freshly started AlmaLinux server, in order.

1. sysctl: the net.* keys of /etc/sysctl.d, /run/sysctl.d, /usr/lib/sysctl.d and
   /etc/sysctl.conf, with systemd-sysctl's precedence (only net.* keys: the rest are
   global to the VM and not the host's to change).
2. network: the initial addressing the lab prepared (as NetworkManager would apply it),
   plus main-table defaults from ifcfg-eth1/ifcfg-eth2 when those profiles carry a
   gateway and no VRF= key (NetworkManager's fallback that the blog ran into).
3. network-online: the systemd units enabled in multi-user.target.wants (and
   network-online.target.wants), ordered by After=/Before=, oneshot units waited for.
4. sshd.

This runs instead of systemd: a real systemd per host does not fit the boot budget of
50 hosts under emulation. Results are recorded in /run/lab/units.json.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

LOG = Path("/run/lab/boot.log")
UNIT_DIRS = (
    Path("/etc/systemd/system"),
    Path("/run/systemd/system"),
    Path("/usr/lib/systemd/system"),
)
WANTS = ("multi-user.target.wants", "network-online.target.wants", "default.target.wants")
UNIT_TIMEOUT = 90.0


def log(msg: str) -> None:
    with LOG.open("a") as f:
        f.write(f"{time.strftime('%H:%M:%S')} {msg}\n")


def apply_sysctl() -> None:
    files: dict[str, Path] = {}
    for d in (
        Path("/usr/lib/sysctl.d"),
        Path("/usr/local/lib/sysctl.d"),
        Path("/run/sysctl.d"),
        Path("/etc/sysctl.d"),
    ):
        if d.is_dir():
            for f in d.glob("*.conf"):
                files[f.name] = f
    ordered = [files[k] for k in sorted(files)]
    if Path("/etc/sysctl.conf").is_file() and "99-sysctl.conf" not in files:
        ordered.append(Path("/etc/sysctl.conf"))
    for f in ordered:
        try:
            lines = f.read_text().splitlines()
        except OSError as e:
            log(f"sysctl: cannot read {f}: {e}")
            continue
        for line in lines:
            line = line.strip()
            if not line or line[0] in "#;" or "=" not in line:
                continue
            key, _, value = line.partition("=")
            key = key.strip().lstrip("-").replace("/", ".")
            if not key.startswith("net."):
                continue
            path = Path("/proc/sys") / key.replace(".", "/")
            try:
                path.write_text(value.strip() + "\n")
                log(f"sysctl: {key} = {value.strip()} ({f})")
            except OSError as e:
                log(f"sysctl: {key}: {e} ({f})")


def network() -> None:
    r = subprocess.run(
        ["/bin/sh", str(Path(__file__).resolve().parent / "lab-network.sh")],
        capture_output=True,
        text=True,
    )
    for line in (r.stdout + r.stderr).splitlines():
        log(f"network: {line}")


def find_unit(name: str) -> Path | None:
    for d in UNIT_DIRS:
        p = d / name
        if p.is_file():
            return p
    return None


def parse_unit(path: Path, name: str) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    texts = [path.read_text()]
    for d in UNIT_DIRS:
        dropins = d / f"{name}.d"
        if dropins.is_dir():
            texts += [p.read_text() for p in sorted(dropins.glob("*.conf"))]
    for text in texts:
        text = re.sub(r"\\\n", " ", text)
        for line in text.splitlines():
            line = line.strip()
            if not line or line[0] in "#;[":
                continue
            key, sep, value = line.partition("=")
            if not sep:
                continue
            key = key.strip()
            value = value.strip()
            if value == "":
                values[key] = []
            else:
                values.setdefault(key, []).append(value)
    return values


def enabled_units() -> list[str]:
    names: list[str] = []
    for d in UNIT_DIRS[:2]:
        for wants in WANTS:
            w = d / wants
            if w.is_dir():
                for p in sorted(w.iterdir()):
                    if p.name.endswith(".service") and p.name not in names:
                        names.append(p.name)
    return names


def order(units: dict[str, dict[str, list[str]]]) -> list[str]:
    after: dict[str, set[str]] = {n: set() for n in units}
    for n, u in units.items():
        for dep in " ".join(u.get("After", [])).split():
            if dep in units:
                after[n].add(dep)
        for dep in " ".join(u.get("Before", [])).split():
            if dep in units:
                after[dep].add(n)
    done: list[str] = []
    pending = sorted(units)
    while pending:
        ready = [n for n in pending if after[n] <= set(done)] or pending[:1]
        done.append(ready[0])
        pending.remove(ready[0])
    return done


def environment(u: dict[str, list[str]]) -> dict[str, str]:
    env = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "LANG": "C.UTF-8",
    }
    for spec in u.get("EnvironmentFile", []):
        optional = spec.startswith("-")
        try:
            for line in Path(spec.lstrip("-")).read_text().splitlines():
                m = re.match(r"\s*([A-Za-z_][A-Za-z0-9_]*)=(.*)", line)
                if m:
                    env[m.group(1)] = m.group(2).strip().strip("\"'")
        except OSError:
            if not optional:
                log(f"EnvironmentFile {spec} missing")
    for spec in u.get("Environment", []):
        for item in shlex.split(spec):
            k, _, v = item.partition("=")
            env[k] = v
    return env


def conditions_met(u: dict[str, list[str]]) -> bool:
    for spec in u.get("ConditionPathExists", []):
        negate = spec.startswith("!")
        exists = Path(spec.lstrip("!")).exists()
        if exists == negate:
            return False
    return True


def run_command(line: str, env: dict[str, str], wait: bool, name: str) -> tuple[bool, int | None]:
    ignore = False
    while line and line[0] in "-@+!:":
        ignore = ignore or line[0] == "-"
        line = line[1:]
    argv = [
        re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: env.get(m.group(1) or m.group(2), ""), a)
        for a in shlex.split(line)
    ]
    out = os.open(f"/run/lab/{name}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        proc = subprocess.Popen(
            argv,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    except OSError as e:
        log(f"{name}: cannot run {argv[0]}: {e}")
        return ignore, None
    finally:
        os.close(out)
    if not wait:
        return True, None
    try:
        rc = proc.wait(UNIT_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        log(f"{name}: timed out after {UNIT_TIMEOUT}s")
        return ignore, None
    return rc == 0 or ignore, rc


def run_units() -> None:
    units: dict[str, dict[str, list[str]]] = {}
    for name in enabled_units():
        path = find_unit(name)
        if path is None:
            log(f"{name}: enabled but no unit file")
            continue
        units[name] = parse_unit(path, name)
    results: list[dict[str, object]] = []
    for name in order(units):
        u = units[name]
        if not conditions_met(u):
            results.append({"unit": name, "result": "skipped (condition)"})
            continue
        kind = (u.get("Type") or ["simple"])[-1]
        env = environment(u)
        ok = True
        codes: list[int | None] = []
        for key in ("ExecStartPre", "ExecStart", "ExecStartPost"):
            for line in u.get(key, []):
                wait = key != "ExecStart" or kind in ("oneshot", "forking")
                ok, rc = run_command(line, env, wait, name)
                codes.append(rc)
                if not ok:
                    break
            if not ok:
                break
        result = "success" if ok else "failed"
        log(f"{name}: {result} {codes}")
        results.append({"unit": name, "type": kind, "result": result, "exit_codes": codes})
    Path("/run/lab/units.json").write_text(json.dumps(results, indent=1) + "\n")


def start_sshd() -> None:
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    subprocess.Popen(
        [
            "/usr/sbin/sshd",
            "-D",
            "-e",
            "-h",
            "/etc/ssh/ssh_host_ed25519_key",
            "-o",
            "PidFile=/run/sshd.pid",
        ],
        stdout=os.open("/run/lab/sshd.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644),
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    # sshd writes its pid file once it listens; "ready" must mean ssh answers.
    deadline = time.monotonic() + 20
    while not Path("/run/sshd.pid").exists() and time.monotonic() < deadline:
        time.sleep(0.05)


def main() -> None:
    os.chdir("/")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    steps = (
        ("sysctl", apply_sysctl),
        ("network", network),
        ("units", run_units),
        ("sshd", start_sshd),
    )
    for label, step in steps:
        try:
            step()
        except Exception as e:  # noqa: BLE001 - a failed step must not stop the boot
            log(f"{label}: {type(e).__name__}: {e}")
    Path("/run/lab/ready").write_text(f"{time.time()}\n")
    while True:
        try:
            os.wait()
        except ChildProcessError:
            time.sleep(1)


if __name__ == "__main__":
    main()
