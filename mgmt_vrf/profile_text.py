"""Read and edit the text of a host's own connection profiles, keeping what we do not own.

Two formats, each read the way its real reader reads it, and edited the way that reader's
own writer edits it (NetworkManager's shvar.c for ifcfg, GLib's GKeyFile for keyfiles):

- a key set again keeps its line (its place in the file); earlier duplicates of it, which
  the reader ignores (the last occurrence wins in both formats), go away with the edit;
- a new key goes at the end of the file (ifcfg) or of its group (keyfile);
- every other line (keys we do not touch, comments, blank lines) stays byte for byte.

A file we cannot read the way NetworkManager and the shell both would is refused with its
path and line: we never rewrite what we do not understand.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass

from .commands import sh_quote


class ProfileSyntaxError(ValueError):
    def __init__(self, path: str, line: int, reason: str) -> None:
        super().__init__(
            f"{path}, line {line}: {reason}. The file is left as it is; fix or remove that "
            "line on the host, then run again."
        )
        self.path = path
        self.line = line


@dataclass
class _Line:
    raw: str  # the line as in the file, without its newline
    key: str | None = None  # None: blank, comment or group header
    value: str | None = None  # decoded
    group: str | None = None  # keyfile: the group the line is in
    header: bool = False  # keyfile: the line is a [group] header


def _split_lines(text: str) -> tuple[list[str], bool]:
    lines = text.split("\n")
    ends_with_newline = lines[-1] == ""
    if ends_with_newline:
        lines.pop()
    return lines, ends_with_newline or not text


def _no_control(value: str) -> str:
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise ValueError(f"a profile value cannot hold control characters: {value!r}")
    return value


class _ProfileText:
    """Lines as read, each with what it means; written back as they were unless edited."""

    def __init__(self, path: str, lines: list[_Line], final_newline: bool) -> None:
        self.path = path
        self._lines = lines
        self._final_newline = final_newline

    def text(self) -> str:
        body = "\n".join(line.raw for line in self._lines)
        return body + "\n" if self._final_newline and self._lines else body

    # A key is addressed by (group, key); ifcfg files have no groups (None).
    def _last(self, group: str | None, key: str) -> int | None:
        found = [i for i, line in enumerate(self._lines) if (line.group, line.key) == (group, key)]
        return found[-1] if found else None

    def _get(self, group: str | None, key: str) -> str | None:
        last = self._last(group, key)
        return None if last is None else self._lines[last].value

    def _replace_last(self, line: _Line) -> bool:
        """Puts ``line`` where its key counts and drops that key's earlier copies; False
        when the file does not have the key."""
        where = (line.group, line.key)
        last = self._last(line.group, line.key or "")
        if last is None:
            return False
        if self._lines[last].value != line.value:
            self._lines[last] = line
        self._lines = [
            other
            for i, other in enumerate(self._lines)
            if i == last or (other.group, other.key) != where
        ]
        return True

    def _remove(self, group: str | None, key: str) -> None:
        self._lines = [line for line in self._lines if (line.group, line.key) != (group, key)]


# --- ifcfg --------------------------------------------------------------------------

_ASSIGNMENT = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)=(.*)")
# NetworkManager reads these unquoted as plain characters, a shell would expand them: a
# value that means two things is not ours to keep rewriting.
_AMBIGUOUS_UNQUOTED = "$`~"
_ANSI_C = {
    "a": "\a", "b": "\b", "e": "\x1b", "E": "\x1b", "f": "\f", "n": "\n", "r": "\r",
    "t": "\t", "v": "\v", "?": "?", '"': '"', "\\": "\\", "'": "'",
}  # fmt: skip


def _ifcfg_value(text: str) -> str:
    """A value as NetworkManager's svUnescape() reads it (bash's quoting, no expansion);
    raises ValueError with the reason where it would not, or where bash would differ."""
    out: list[str] = []
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c.isspace() or c == ";":
            # Only trailing blanks, one ';' and a comment may follow the value.
            rest = text[i:].strip()
            if rest.startswith(";"):
                rest = rest[1:].strip()
            if rest and not rest.startswith("#"):
                raise ValueError("it has unquoted blanks (a shell would run the rest)")
            break
        if c == "\\":
            if i + 1 >= n:
                raise ValueError("it ends in a backslash (line continuations are not read)")
            out.append(text[i + 1])
            i += 2
        elif c == "'":
            end = text.find("'", i + 1)
            if end < 0:
                raise ValueError("a single quote is not closed")
            out.append(text[i + 1 : end])
            i = end + 1
        elif c == '"':
            i += 1
            while True:
                if i >= n:
                    raise ValueError("a double quote is not closed")
                c = text[i]
                if c == '"':
                    i += 1
                    break
                if c in "$`":
                    raise ValueError("it expands a variable or command inside double quotes")
                if c == "\\":
                    if i + 1 >= n:
                        raise ValueError("a double quote is not closed")
                    nxt = text[i + 1]
                    out.append(nxt if nxt in '$`"\\' else "\\" + nxt)
                    i += 2
                    continue
                out.append(c)
                i += 1
        elif c == "$" and text[i + 1 : i + 2] == "'":
            i = _ansi_c(text, i + 2, out)
        elif c in "|&()<>":
            raise ValueError(f"it has an unquoted {c!r}")
        elif c in _AMBIGUOUS_UNQUOTED:
            raise ValueError(f"it has an unquoted {c!r}, which a shell would expand")
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _ansi_c(text: str, i: int, out: list[str]) -> int:
    n = len(text)
    while True:
        if i >= n:
            raise ValueError("a $'...' quote is not closed")
        c = text[i]
        if c == "'":
            return i + 1
        if c != "\\":
            out.append(c)
            i += 1
            continue
        if i + 1 >= n:
            raise ValueError("a $'...' quote is not closed")
        c = text[i + 1]
        if c in _ANSI_C:
            out.append(_ANSI_C[c])
            i += 2
        elif c in "01234567":
            digits = re.match(r"[0-7]{1,3}", text[i + 1 :])
            assert digits is not None
            out.append(chr(int(digits.group(), 8) & 0xFF))
            i += 1 + len(digits.group())
        elif c in "xuU":
            width = {"x": 2, "u": 4, "U": 8}[c]
            digits = re.match(rf"[0-9A-Fa-f]{{1,{width}}}", text[i + 2 :])
            if digits is None:
                out.append("\\" + c)
                i += 2
            else:
                out.append(chr(int(digits.group(), 16)))
                i += 2 + len(digits.group())
        else:
            out.append("\\" + c)
            i += 2


class Ifcfg(_ProfileText):
    """An ifcfg file (network-scripts' and NetworkManager's ifcfg-rh format).

    >>> f = Ifcfg.parse("ifcfg-eth2", "DEVICE=eth2\\nMTU=9000 # jumbo\\n")
    >>> f.set("VRF", "mgmt0"); f.get("MTU")
    '9000'
    >>> f.text()
    'DEVICE=eth2\\nMTU=9000 # jumbo\\nVRF=mgmt0\\n'
    """

    @classmethod
    def parse(cls, path: str, text: str) -> Ifcfg:
        raw_lines, final_newline = _split_lines(text)
        lines = []
        for number, raw in enumerate(raw_lines, 1):
            stripped = raw.strip()
            if not stripped or stripped.startswith("#"):
                lines.append(_Line(raw))
                continue
            m = _ASSIGNMENT.fullmatch(raw)
            if m is None:
                raise ProfileSyntaxError(path, number, f"{stripped!r} is not KEY=value")
            try:
                value = _ifcfg_value(m.group(2))
            except ValueError as e:
                raise ProfileSyntaxError(
                    path, number, f"the value of {m.group(1)} cannot be read: {e}"
                ) from None
            lines.append(_Line(raw, m.group(1), value))
        return cls(path, lines, final_newline)

    def get(self, key: str) -> str | None:
        return self._get(None, key)

    def values(self) -> dict[str, str]:
        """Every key with the value that counts (the last occurrence)."""
        return {line.key: line.value for line in self._lines if line.key and line.value is not None}

    def set(self, key: str, value: str) -> None:
        line = _Line(f"{key}={sh_quote(_no_control(value))}", key, value)
        if not self._replace_last(line):
            self._lines.append(line)

    def remove(self, key: str) -> None:
        self._remove(None, key)


# --- keyfile ------------------------------------------------------------------------

_KEYFILE_ESCAPES = {"s": " ", "n": "\n", "t": "\t", "r": "\r", "\\": "\\"}


def _keyfile_value(text: str) -> str:
    out = []
    i = 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text) and text[i + 1] in _KEYFILE_ESCAPES:
            out.append(_KEYFILE_ESCAPES[text[i + 1]])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _keyfile_escape(value: str) -> str:
    text = _no_control(value).replace("\\", "\\\\")
    # GKeyFile drops a value's leading blanks unless they are escaped.
    return "\\s" + text[1:] if text.startswith(" ") else text


class Keyfile(_ProfileText):
    """A NetworkManager keyfile (GLib's key file format: [group], key=value, # comments).

    >>> text = "[connection]\\nid=eth2\\n\\n[ethernet]\\nmtu=1400\\n"
    >>> f = Keyfile.parse("eth2.nmconnection", text)
    >>> f.set("connection", "master", "mgmt0"); f.get("ethernet", "mtu")
    '1400'
    >>> f.text()
    '[connection]\\nid=eth2\\nmaster=mgmt0\\n\\n[ethernet]\\nmtu=1400\\n'
    """

    @classmethod
    def parse(cls, path: str, text: str) -> Keyfile:
        raw_lines, final_newline = _split_lines(text)
        lines = []
        group: str | None = None
        for number, raw in enumerate(raw_lines, 1):
            stripped = raw.strip()
            if not stripped or stripped.startswith("#"):
                lines.append(_Line(raw, group=group))
            elif stripped.startswith("["):
                name = stripped[1:-1]
                if not stripped.endswith("]") or not name or "[" in name or "]" in name:
                    raise ProfileSyntaxError(path, number, f"{stripped!r} is not a [group] line")
                group = name
                lines.append(_Line(raw, group=group, header=True))
            elif "=" in stripped and stripped.split("=", 1)[0].strip():
                if group is None:
                    raise ProfileSyntaxError(path, number, "a key comes before the first [group]")
                key, value = raw.lstrip().split("=", 1)
                # GKeyFile keeps a value's trailing blanks, not its leading ones or a CR.
                value = value.lstrip().removesuffix("\r")
                lines.append(_Line(raw, key.strip(), _keyfile_value(value), group))
            else:
                raise ProfileSyntaxError(path, number, f"{stripped!r} is not key=value")
        return cls(path, lines, final_newline)

    def get(self, group: str, key: str) -> str | None:
        return self._get(group, key)

    def groups(self) -> dict[str, dict[str, str]]:
        """Every group (duplicates merged, as GKeyFile does) with the values that count;
        translations (`key[locale]=`), which NetworkManager never reads, are left out."""
        out: dict[str, dict[str, str]] = {}
        for line in self._lines:
            if line.group is not None:
                keys = out.setdefault(line.group, {})
                if line.key is not None and line.value is not None and "[" not in line.key:
                    keys[line.key] = line.value
        return out

    def set(self, group: str, key: str, value: str) -> None:
        line = _Line(f"{key}={_keyfile_escape(value)}", key, value, group)
        if self._replace_last(line):
            return
        members = [i for i, other in enumerate(self._lines) if other.group == group]
        if not members:
            if self._lines and self._lines[-1].raw.strip():
                self._lines.append(_Line(""))
            self._lines += [_Line(f"[{group}]", group=group, header=True), line]
            return
        # After the group's last key (GKeyFile's place), not after the blank lines and
        # comments that lead into the next group; in a group with no keys, after its header.
        keys = [i for i in members if self._lines[i].key is not None]
        headers = [i for i in members if self._lines[i].header]
        self._lines.insert((keys or headers)[-1] + 1, line)

    def remove(self, group: str, key: str) -> None:
        self._remove(group, key)


def changed_keys(path: str, old: str | None, new: str) -> list[str]:
    """The keys whose value differs between two versions of a profile (``KEY`` for ifcfg,
    ``group.key`` for a keyfile), in the new version's order, then the removed ones; [] for
    other files or text that does not parse."""
    if old is None:
        return []
    try:
        if posixpath.basename(path).startswith("ifcfg-"):
            before, after = Ifcfg.parse(path, old).values(), Ifcfg.parse(path, new).values()
        elif path.endswith(".nmconnection"):
            before, after = _flat(Keyfile.parse(path, old)), _flat(Keyfile.parse(path, new))
        else:
            return []
    except ProfileSyntaxError:
        return []
    differ = [key for key, value in after.items() if before.get(key) != value]
    return differ + [key for key in before if key not in after]


def _flat(keyfile: Keyfile) -> dict[str, str]:
    return {f"{g}.{k}": v for g, keys in keyfile.groups().items() for k, v in keys.items()}


# NetworkManager's secret properties (passwords, PSKs, PINs, WEP and WireGuard keys, MACsec
# CAKs) and every key of [vpn-secrets]; their *-flags keys are not secret.
_SECRET_KEY = re.compile(
    r"(.*-)?(password(-raw)?|psk|pin|wep-key[0-3]|private-key|preshared-key|mka-cak|secrets?)"
)
HIDDEN = "<hidden>"


def hide_secrets(path: str, text: str) -> str:
    """A keyfile's text for a diff or a log: every secret value replaced by ``<hidden>``.
    Line by line, so it works on a file that does not parse too; other files unchanged."""
    if not path.endswith(".nmconnection"):
        return text
    out = []
    group = ""
    for line in text.split("\n"):
        stripped = line.strip()
        if stripped.startswith("["):
            group = stripped.strip("[]")
        elif "=" in stripped and not stripped.startswith("#"):
            key = stripped.split("=", 1)[0].strip()
            if group == "vpn-secrets" or _SECRET_KEY.fullmatch(key.split("[", 1)[0]):
                line = f"{line.split('=', 1)[0]}={HIDDEN}"
        out.append(line)
    return "\n".join(out)
