"""Commands as argument vectors, and the few shell snippets we run through `sh -c`.

Values never get spliced into shell text: a snippet is a constant and the values reach it as
positional parameters, so quoting each argument (shlex / pyinfra's QuoteString) is enough.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence

Argv = tuple[str, ...]

# $1 = file, $2 = backup root. The copy is named after its content's sha256, so backing up
# the same content twice is one file and different contents never overwrite each other.
_BACKUP = (
    '[ -e "$1" ] || exit 0; d="$2$(dirname "$1")"; mkdir -p "$d" && chmod 0700 "$2" && '
    'cp -p "$1" "$d/$(basename "$1").$(sha256sum "$1" | cut -c1-12)"'
)
_BACKUP_AND_REMOVE = _BACKUP + ' && rm -f "$1"'
# $1 = staged upload, $2 = destination, $3 = mode: root-owned with its final mode from the
# first byte on, then the staged copy goes away.
_INSTALL = 'install -D -o root -g root -m "$3" "$1" "$2" && rm -f "$1"'


def backup(path: str, backup_root: str) -> Argv:
    return ("sh", "-c", _BACKUP, "mgmt-vrf-backup", path, backup_root)


def backup_and_remove(path: str, backup_root: str) -> Argv:
    return ("sh", "-c", _BACKUP_AND_REMOVE, "mgmt-vrf-backup", path, backup_root)


def install_staged(staged: str, dest: str, mode: str) -> Argv:
    return ("sh", "-c", _INSTALL, "mgmt-vrf-install", staged, dest, mode)


def sh_quote(value: object) -> str:
    """The one way a value enters shell text, in every script and file a shell reads: one
    word, whatever it holds. Fleet names are limited to characters that need no quoting,
    so this is the second wall, there for the key nobody has thought of yet."""
    return shlex.quote(str(value))


def sh_comment(text: object) -> str:
    """`text` for the rest of a `#` comment line. A comment ends at a newline, whatever the
    quoting, so every character that is not printable is shown escaped instead."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))


def to_shell(argv: Sequence[str]) -> str:
    return " ".join(sh_quote(arg) for arg in argv)
