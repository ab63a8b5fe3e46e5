"""A change as one transaction on the host: armed rollback, detached apply, confirm or undo.

1. `start_command` writes `apply.sh` and `rollback.sh` into the run directory, arms the
   rollback at the hard bound (`apply_timeout + rollback_timeout` from now: a transient
   systemd timer, or a sleeping shell where systemd does not run) and starts `apply.sh`
   detached, so losing our ssh session cannot stop a change half-way.
2. When the apply ends, it arms the confirmation window: the rollback is due
   `rollback_timeout` seconds from then (or at the hard bound, if that comes first). A slow
   apply never eats into the time the controller has to confirm.
3. The controller reconnects over a NEW ssh connection and runs `verify_command`: it waits
   for the apply to end and prints its status, the host's clock and the rollback's deadline
   before the combined probe's output.
4. Converged: `confirm_command` disarms. Anything else: `rollback_now_command`. Not reachable
   again: a timer runs the rollback on the host by itself.

No pyinfra import: mgmt_vrf/pyinfra/operations.py sends these commands.
"""

from __future__ import annotations

import base64
import posixpath
from dataclasses import dataclass
from ipaddress import ip_interface

from . import paths
from .commands import (
    Argv,
    backup,
    backup_and_remove,
    install_staged,
    sh_comment,
    sh_quote,
    to_shell,
)
from .host_commands import Ip
from .plan import Plan, RemoveFile, RunCommand, WriteFile, activated_ports
from .rollback import touched_paths

# Seconds the apply waits before its first change: the ssh command that started it must
# return first, or a change that cuts the session would leave that command hanging.
APPLY_DELAY = 2


_q = sh_quote


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _checked(command: str, what: str) -> str:
    return f"{command} || fail {_q(what)}"


_BATCH_END = "MGMT_VRF_IP_BATCH"
_ANY = {4: "0.0.0.0/0", 6: "::/0"}


def _batch_words(ip: Ip) -> tuple[int | None, tuple[str, ...]]:
    """The words of an `ip` command as a batch line, and the family the line still needs.

    `ip -batch` takes one family for all its lines, so a `-4`/`-6` flag is dropped where an
    address in the line tells ip the family anyway (`default` becomes 0.0.0.0/0 or ::/0).
    """
    family, words = ip.family, ip.words
    if family is None:
        return None, words
    # `default` first: ip reads it as IPv4 unless told otherwise, even before an IPv6 `via`.
    if "default" in words:
        return None, tuple(_ANY[family] if w == "default" else w for w in words)
    for word in words:
        try:
            if ip_interface(word).version == family:
                return None, words
        except ValueError:
            continue
    return family, words


def _batchable(change: RunCommand) -> bool:
    """Consecutive `ip` commands run as one `ip -batch`: one process instead of one each,
    in the same order, stopping at the first that fails."""
    ip = change.command.ip()
    if change.unless is not None or change.best_effort or ip is None or len(ip.words) < 2:
        return False
    # Batch lines are split on blanks by ip itself, with no shell in between.
    if any(not word or any(c.isspace() or c in "'\"\\#" for c in word) for word in ip.words):
        return False
    if ip.words[0].startswith("-"):
        return False  # an option of ip itself, not one the batch would carry
    # A line that still needs -4/-6 runs alone: a flag on the batch would make ip read the
    # other family's addresses in its other lines as errors.
    family, _ = _batch_words(ip)
    return family is None


def _line(change: RunCommand) -> str:
    ip = change.command.ip()
    assert ip is not None  # only batchable changes get here
    return " ".join(_batch_words(ip)[1])


def _ip_batch(batch: list[RunCommand]) -> list[str]:
    if not batch:
        return []
    if len(batch) == 1:
        change = batch[0]
        return [_checked(change.shell, f"{change.why}: {change.shell}")]
    what = "; ".join(dict.fromkeys(c.why for c in batch))
    return [
        f"ip -batch - <<'{_BATCH_END}' || fail {_q(what)}",
        *(_line(c) for c in batch),
        _BATCH_END,
    ]


# The shell function that arms one rollback timer, for the start command and apply.sh alike.
# `arm UNIT AT`: rollback.sh runs at AT (seconds since the epoch, by this host's clock) unless
# a confirmation takes the armed marker first. A wall-clock time, not --on-active: a
# daemon-reload (the apply may do one) restarts a relative timer's count. $run/deadline
# keeps the earliest time armed: callers only ever arm an earlier one.
_ARM = r"""
arm() {
    if [ -d /run/systemd/system ] && command -v systemd-run >/dev/null 2>&1; then
        systemd-run --quiet --unit="$1" --description="mgmt-vrf: undo the unconfirmed change" \
            --on-calendar="$(date -u -d "@$2" '+%Y-%m-%d %H:%M:%S UTC')" \
            --timer-property=AccuracySec=1s /bin/sh "$run/rollback.sh"
    else
        # shellcheck disable=SC2016 # expanded by the inner shell
        nohup sh -c 'sleep "$1"; exec sh "$2"' "$1" "$(($2 - $(date +%s)))" "$run/rollback.sh" \
            >/dev/null 2>&1 </dev/null &
        echo "$!" >>"$run/sleepers"
    fi && printf '%s\n' "$2" >"$run/deadline.new" && mv -f "$run/deadline.new" "$run/deadline"
}
"""

# The sleeping shells of a run where systemd does not run: after a reboot a pid may be
# another process's, so only one still running rollback.sh is stopped.
_STOP_SLEEPERS = r"""
if [ -f "$run/sleepers" ]; then
    while read -r pid; do
        grep -qs rollback.sh "/proc/$pid/cmdline" && kill "$pid" 2>/dev/null
    done <"$run/sleepers"
fi
"""


# apply.sh's last word, done or failed: the confirmation window opens, then the status is
# published, so a controller that sees the apply ended also sees the deadline it must meet.
# @TIMEOUT@ and @WINDOW@ are filled in by _ended().
_ENDED = r"""
ended() {
    at=$(($(date +%s) + @TIMEOUT@))
    if [ -e "$run/armed" ] && [ "$at" -lt "$(cat "$run/deadline" 2>/dev/null || echo 0)" ]; then
        arm @WINDOW@ "$at" || echo "mgmt-vrf: could not arm the confirmation window;" \
            "the rollback stays due at the hard bound"
    fi
    echo "mgmt-vrf: rollback due $(date -u -d "@$(cat "$run/deadline")" +%FT%TZ) unless confirmed"
    status "$1"
}
"""


def _ended(timeout: int) -> str:
    return (
        _ENDED.strip()
        .replace("@TIMEOUT@", str(int(timeout)))
        .replace("@WINDOW@", _q(paths.WINDOW_UNIT))
    )


def apply_functions(timeout: int) -> list[str]:
    """The functions every apply.sh defines: `status`, `arm`, `ended` and `fail`."""
    return [
        'status() { printf \'%s\\n\' "$1" >"$run/apply.status.new" && '
        'mv -f "$run/apply.status.new" "$run/apply.status"; }',
        _ARM.strip(),
        _ended(timeout),
        'fail() { echo "mgmt-vrf: apply failed: $1"; ended "failed: $1"; exit 1; }',
    ]


def apply_script(plan: Plan, timeout: int) -> str:
    """Every change of the plan, in order, stopping at the first failure; at the end, done or
    failed, the rollback is re-armed `timeout` seconds from then."""
    lines = [
        "#!/bin/sh",
        f"# mgmt-vrf apply for {sh_comment(plan.host)}: written by the deploy, undone by "
        "rollback.sh.",
        "set -u",
        f"run={_q(paths.RUN_DIR)}",
        *apply_functions(timeout),
        'echo "mgmt-vrf: apply started $(date -u +%FT%TZ)"',
        f"sleep {APPLY_DELAY}",
        "# Copies for rollback.sh of every file this run replaces or removes.",
    ]
    for path in touched_paths(plan):
        saved = paths.SAVED_DIR + path
        lines.append(
            _checked(
                f"if [ -e {_q(path)} ]; then mkdir -p {_q(posixpath.dirname(saved))} && "
                f"cp -p {_q(path)} {_q(saved)}; fi",
                f"save {path}",
            )
        )
    if activated_ports(plan):
        # For rollback.sh: NetworkManager's choice among several profiles for a device is
        # not in the files, so it is read before the change.
        lines.append(
            f"nmcli -t -f UUID,DEVICE connection show --active >{_q(paths.NM_ACTIVE)} "
            f"|| fail 'read the profiles NetworkManager has active'"
        )
    staging = _q(paths.STAGING_DIR)
    lines.append(f"{{ mkdir -p {staging} && chmod 0700 {staging}; }} || fail 'staging directory'")
    batch: list[RunCommand] = []
    for i, change in enumerate(plan.changes):
        if isinstance(change, RunCommand) and _batchable(change):
            batch.append(change)
            continue
        lines += _ip_batch(batch)
        batch = []
        if isinstance(change, RunCommand):
            if _batchable(change):
                batch.append(change)
            elif change.unless is not None:
                command = _checked(change.shell, f"{change.why}: {change.shell}")
                lines.append(f"if ! {{ {change.unless}; }}; then {command}; fi")
            elif change.best_effort:
                lines.append(
                    f"{change.shell} || echo {_q(f'mgmt-vrf: done already? {change.why}')}"
                )
            else:
                lines.append(_checked(change.shell, f"{change.why}: {change.shell}"))
        elif isinstance(change, RemoveFile):
            argv: Argv = backup_and_remove(change.path, paths.BACKUP_DIR)
            lines.append(_checked(to_shell(argv), f"remove {change.path}"))
        elif isinstance(change, WriteFile):
            staged = posixpath.join(paths.STAGING_DIR, f"{i}-{posixpath.basename(change.path)}")
            if change.old is not None:
                lines.append(
                    _checked(
                        to_shell(backup(change.path, paths.BACKUP_DIR)), f"back up {change.path}"
                    )
                )
            lines.append(
                _checked(
                    f"printf '%s' {_q(_b64(change.content))} | base64 -d >{_q(staged)}",
                    f"stage {change.path}",
                )
            )
            lines.append(
                _checked(
                    to_shell(install_staged(staged, change.path, change.mode)),
                    f"install {change.path}",
                )
            )
    lines += _ip_batch(batch)
    lines += ['echo "mgmt-vrf: apply done $(date -u +%FT%TZ)"', 'ended "done"']
    return "\n".join(lines) + "\n"


# stdin: apply.sh then rollback.sh, $1 and $2 bytes long. $3 seconds to the hard bound, $4
# run dir, $5 the hard bound's timer unit, $6 the window's, $7 the armed marker in /run (see
# paths.ARMED_THIS_BOOT). The scripts come on stdin, not as arguments: Linux caps one
# argument at 128 KiB, which a VRF with a few hundred routes already passes. They are read
# whole before anything else, so a start refused below still drains its input.
_START = (
    r"""
set -u
run=$4
mkdir -p "${run%/*}" || exit 1
incoming=$(mktemp -d "$run.in.XXXXXX") || exit 1
trap 'rm -rf "$incoming"' EXIT
head -c "$1" >"$incoming/apply.sh" && head -c "$2" >"$incoming/rollback.sh" || exit 1
cat >/dev/null
if [ "$(wc -c <"$incoming/apply.sh")" -ne "$1" ] ||
    [ "$(wc -c <"$incoming/rollback.sh")" -ne "$2" ]; then
    echo "mgmt-vrf: the run's scripts arrived incomplete; nothing was changed" >&2
    exit 1
fi
if [ -e "$run/armed" ]; then
    echo "mgmt-vrf: a rollback from an earlier run is still armed ($run/armed);" \
        "wait for it, or confirm that run: mv $run/armed $run/confirmed" >&2
    exit 3
fi
if [ -e "$run/rolling-back" ] && [ ! -e "$run/rollback.status" ]; then
    echo "mgmt-vrf: an earlier run is rolling back now ($run/log); try again in a minute" >&2
    exit 3
fi
"""
    + _STOP_SLEEPERS
    + _ARM
    + r"""
rm -rf "$run.prev" && { [ ! -d "$run" ] || mv "$run" "$run.prev"; } || exit 1
mkdir -m 0700 "$run" || exit 1
mv "$incoming/apply.sh" "$incoming/rollback.sh" "$run/" || exit 1
echo running >"$run/apply.status" && : >"$run/armed" && : >"$7" || exit 1
if [ -d /run/systemd/system ]; then
    systemctl stop "$5.timer" "$5.service" "$6.timer" "$6.service" 2>/dev/null
    systemctl reset-failed "$5.timer" "$5.service" "$6.timer" "$6.service" 2>/dev/null
fi
now=$(date +%s)
arm "$5" "$((now + $3))" || exit 1
# The log's first word: what an operator reading it after a hang needs, when the bound ends.
echo "mgmt-vrf: rollback armed $(date -u -d "@$now" +%FT%TZ)," \
    "due $(date -u -d "@$((now + $3))" +%FT%TZ) at the latest" >>"$run/log"
# Its own session: a rollback that finds it hung stops it with everything it started.
if command -v setsid >/dev/null 2>&1; then
    nohup setsid sh "$run/apply.sh" >>"$run/log" 2>&1 </dev/null &
else
    nohup sh "$run/apply.sh" >>"$run/log" 2>&1 </dev/null &
fi
echo $! >"$run/apply.pid"
echo "mgmt-vrf: armed rollback in $3 s at the latest, apply started"
"""
)


@dataclass(frozen=True)
class Start:
    """The start command and what it reads on stdin."""

    argv: Argv
    stdin: str


def start_command(plan: Plan, rollback: str, timeout: int, apply_timeout: int) -> Start:
    """The rollback is armed at the hard bound, `apply_timeout + timeout` seconds from now;
    the apply itself moves it to `timeout` seconds after it ends."""
    script = apply_script(plan, timeout)
    argv = (
        "sh",
        "-c",
        _START,
        "mgmt-vrf-start",
        str(len(script.encode())),
        str(len(rollback.encode())),
        str(apply_timeout + timeout),
        paths.RUN_DIR,
        paths.ROLLBACK_UNIT,
        paths.WINDOW_UNIT,
        paths.ARMED_THIS_BOOT,
    )
    # pyinfra's ssh connector ends what it writes to stdin with a newline if it has none:
    # the two byte counts leave it out of rollback.sh.
    return Start(argv, script + rollback)


STATUS_MARKER = "##mgmt-vrf-run##"

# $1 seconds to wait for the apply, $2 run dir; prints the run's state, then the probe runs.
_WAIT = r"""
i=0
while [ "$(cat "$2/apply.status" 2>/dev/null)" = running ] && [ "$i" -lt "$1" ]; do
    sleep 1
    i=$((i + 1))
done
printf '%s apply=%s\n' "$3" "$(cat "$2/apply.status" 2>/dev/null)"
printf '%s clock=%s\n' "$3" "$(date +%s)"
printf '%s deadline=%s\n' "$3" "$(cat "$2/deadline" 2>/dev/null)"
for f in armed confirmed rolling-back rollback.status; do
    [ -e "$2/$f" ] && printf '%s has=%s\n' "$3" "$f"
done
true
"""


def wait_command(wait: int) -> str:
    """Waits up to `wait` seconds for the apply to end, then prints the run's state."""
    return to_shell(("sh", "-c", _WAIT, "mgmt-vrf-wait", str(wait), paths.RUN_DIR, STATUS_MARKER))


def verify_command(probe: str) -> str:
    """The run's state, then the combined probe's output, in one round trip."""
    return wait_command(0) + "; " + probe


@dataclass(frozen=True)
class RunStatus:
    apply: str  # "running", "done", "failed: ...", or "" when no status was found
    armed: bool
    confirmed: bool
    rolling_back: bool
    rolled_back: bool  # the rollback script finished
    # The host's clock when it answered, and when its rollback is due by that clock
    # (seconds since the epoch); None when the host did not say.
    clock: int | None = None
    deadline: int | None = None

    @property
    def applied(self) -> bool:
        return self.apply == "done"

    @property
    def ended(self) -> bool:
        return self.apply != "running"

    @property
    def seconds_left(self) -> int | None:
        """Until the host's rollback is due, by the host's own clock (no clock sync needed)."""
        if self.clock is None or self.deadline is None:
            return None
        return self.deadline - self.clock


def parse_run_status(lines: list[str]) -> RunStatus:
    apply = ""
    numbers: dict[str, int] = {}
    has: set[str] = set()
    prefix = STATUS_MARKER + " "
    for line in lines:
        if not line.startswith(prefix):
            continue
        key, _, value = line[len(prefix) :].partition("=")
        if key == "apply":
            apply = value.strip()
        elif key == "has":
            has.add(value.strip())
        elif key in ("clock", "deadline") and value.strip().isdigit():
            numbers[key] = int(value.strip())
    return RunStatus(
        apply=apply,
        armed="armed" in has,
        confirmed="confirmed" in has,
        rolling_back="rolling-back" in has,
        rolled_back="rollback.status" in has,
        clock=numbers.get("clock"),
        deadline=numbers.get("deadline"),
    )


# $1 run dir, $2 and $3 the timer units. Exit 3: too late, the rollback claimed the run first.
_CONFIRM = (
    r"""
run=$1
if ! mv "$run/armed" "$run/confirmed" 2>/dev/null; then
    echo "mgmt-vrf: too late to confirm, the rollback has started" >&2
    exit 3
fi
if [ -d /run/systemd/system ]; then
    systemctl stop "$2.timer" "$3.timer" 2>/dev/null
fi
"""
    + _STOP_SLEEPERS
    + r"""
rm -rf "$run/staging"
echo "mgmt-vrf: change confirmed, rollback disarmed"
"""
)


def confirm_command() -> Argv:
    return (
        "sh",
        "-c",
        _CONFIRM,
        "mgmt-vrf-confirm",
        paths.RUN_DIR,
        paths.ROLLBACK_UNIT,
        paths.WINDOW_UNIT,
    )


def rollback_now_command() -> Argv:
    """Detached: the rollback may cut the session that asks for it."""
    return (
        "sh",
        "-c",
        'nohup sh "$1/rollback.sh" >/dev/null 2>&1 </dev/null & echo "mgmt-vrf: rollback started"',
        "mgmt-vrf-rollback",
        paths.RUN_DIR,
    )
