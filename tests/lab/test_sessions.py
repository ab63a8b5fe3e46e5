"""Each lab host counts the ssh session requests it receives, and passes them on unchanged.

The fleet benchmark's command counts come from these logs, so they must count exactly one
per request, whatever its kind, and the wrapper behind them must not show.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

from lab import client, vm
from lab.pytest_fixture import Lab


def sessions(host: str) -> list[str]:
    """The host's requests since the last call (reads and empties every host's log)."""
    return client.sessions(reset=True)[host]


def test_each_command_is_one_request(lab: Lab) -> None:
    host = lab.hosts[0]
    sessions(host)
    for _ in range(3):
        assert lab.ssh(host, "true").returncode == 0
    assert client.command_counts()[host] == 3
    assert sessions(host) == ["exec true"] * 3
    assert sessions(host) == []


def test_an_sftp_upload_is_one_request(lab: Lab, tmp_path: Path) -> None:
    host = lab.hosts[-1]
    data = os.urandom(300_000)
    local = tmp_path / "blob"
    local.write_bytes(data)
    sessions(host)
    r = subprocess.run(
        ["sftp", *vm.ssh_options(lab.run), "-P", str(lab.port(host)), "-b", "-", "root@127.0.0.1"],
        input=f"put {local} /tmp/lab-sessions-blob\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert sessions(host) == ["sftp /usr/lib/openssh/sftp-server"]
    copied = lab.check(host, "sha256sum < /tmp/lab-sessions-blob; rm /tmp/lab-sessions-blob")
    assert copied.split()[0] == hashlib.sha256(data).hexdigest()


def test_the_wrapper_is_invisible(lab: Lab) -> None:
    host = lab.hosts[0]
    sessions(host)
    # Exit status, binary stdin and stdout, and the command's own view of its shell.
    assert lab.ssh(host, "exit 7").returncode == 7
    data = bytes(range(256)) * 1000
    raw = subprocess.run(client.ssh_argv(host, "cat"), input=data, capture_output=True, timeout=60)
    assert raw.returncode == 0 and raw.stdout == data
    out = lab.check(host, 'echo "$0 ${SSH_ORIGINAL_COMMAND-unset} $SHLVL"; printf "a\\nb"')
    assert out == "bash unset 1\na\nb"
    # No command: a login shell, reading its commands from stdin.
    r = subprocess.run(
        client.ssh_argv(host), input="shopt -q login_shell && echo login; exit 3\n",
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert (r.returncode, r.stdout) == (3, "login\n")
    logged = sessions(host)
    assert logged[0] == "exec exit 7"
    assert logged[1] == "exec cat"
    assert logged[2] == 'exec echo "$0 ${SSH_ORIGINAL_COMMAND-unset} $SHLVL"; printf "a\\nb"'
    assert logged[3] == "shell"
    assert len(logged) == 4


def test_a_multiline_command_is_one_line(lab: Lab) -> None:
    host = lab.hosts[0]
    sessions(host)
    assert lab.check(host, "echo one\necho two") == "one\ntwo\n"
    assert sessions(host) == ["exec echo one\\necho two"]
