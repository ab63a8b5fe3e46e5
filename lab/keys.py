"""SSH keys of the lab: the controller's client key, and host keys for the VM and each host.

All live in the run directory; known_hosts pins every one of them, so host-key
checking stays on for the lab's users (pyinfra included).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from lab import topology as t
from lab.errors import LabError


def _keygen(path: Path, comment: str) -> None:
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
            check=True,
            stdin=subprocess.DEVNULL,
            capture_output=True,
        )
    except FileNotFoundError as e:
        raise LabError("ssh-keygen not found; run lab/install-deps.sh (openssh-client)") from e
    path.chmod(0o600)


def client_key(run: Path) -> Path:
    return run / "id_ed25519"


def known_hosts(run: Path) -> Path:
    return run / "known_hosts"


def ensure(run: Path, hosts: int) -> None:
    _keygen(client_key(run), "lab-controller")
    _keygen(run / "vm_host_ed25519_key", "lab-vm")
    lines = [f"[127.0.0.1]:{t.control_port()} {_pub(run / 'vm_host_ed25519_key')}"]
    for index in range(1, hosts + 1):
        name = t.host_name(index)
        key = run / "hosts" / name / "ssh_host_ed25519_key"
        _keygen(key, name)
        lines.append(f"[127.0.0.1]:{t.host_port(index)} {_pub(key)}")
    known_hosts(run).write_text("\n".join(lines) + "\n")


def _pub(key: Path) -> str:
    kind, blob = key.with_name(key.name + ".pub").read_text().split()[:2]
    return f"{kind} {blob}"
