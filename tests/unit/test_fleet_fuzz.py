"""Generated fleet files, valid and broken (hypothesis), against the promises of the loader.

- Loading never raises anything but FleetError: no traceback for a user mistake.
- Every refusal names the file, then where (top level, defaults, group or host), then the key.
- Every accepted spec renders files that shellcheck accepts (one shellcheck call for all).
- Every name reaches shell text quoted: rendered again with hostile names put in past the
  loader (which would refuse them), each name is still one intact shell word.

The generator draws from pools that mix good values with the mistakes seen in practice
(hostile and reserved names, zone ids, link-local, own and broadcast addresses, duplicates,
missing files), so both sides of each rule come up within a bounded number of examples.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
from dataclasses import replace
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mgmt_vrf.commands import sh_quote
from mgmt_vrf.fleet_file import Fleet, FleetError, load_fleet
from mgmt_vrf.fleet_schema import HostKeys
from mgmt_vrf.model import HostSpec

from .builders import clean_state
from .shell_scripts import run_scripts, shell_files, shellcheck

# Enough for every pool value to come up on both sides; the unit suite stays quick.
EXAMPLES = 120
BACKENDS = ("networkmanager", "network-scripts")

# Mistakes seen in practice, per kind of value; a generated file uses each with a small
# probability, so both valid files and files with one or two mistakes come up.
BAD_NAMES = [
    "default", "all", "-x", "--status", "a" * 16, "ééééééééé", "m$(id)", "e`id`", "m;x",
    "a|b", "a&", "it's", 'q"x', "a b", "eth/1", "eth:1", "m%d", ".", "", "e\nx",
]  # fmt: skip
BAD_ADDRESSES = [
    "203.0.113.0/25", "203.0.113.127/25", "203.0.113.10", "203.0.113.10/33", "2001:db8::1/64",
    "2001:db8:1::10%eth2/64", "x", "198.51.100.10/25",
]  # fmt: skip
BAD_GATEWAYS = [
    "203.0.113.10", "203.0.113.0", "203.0.113.127", "203.0.113.200", "169.254.0.1",
    "203.0.113.1/25", "2001:db8:1::10", "fe80::1%eth2", "fe80::/64", "",
]  # fmt: skip
BAD_DESTINATIONS = ["0.0.0.0/0", "default", "192.0.2.7/25", "2001:db8:9::%eth2/48", "x"]
BAD_SERVICES = [["a;b"], ["sshd.socket"], ["NetworkManager"], ["getty@"], ["sshd", "sshd"]]
BAD_SSH = ["", "root@192.0.2.1", "192.0.2.1:22", "192.0.2.20", "[2001:db8::1]"]
BAD_KEY_FILES = ["keys/missing", "~/nowhere/id_rsa", "keys", ""]
BAD_TABLES: list[Any] = [0, 253, 254, 255, 2**32, -1, "10", True]
GOOD_NAMES = ["eth0", "eth1", "eth2", "ens3", "bond0.10", "mgmt0", "oob_1", "m-2", "vrf.a"]


@st.composite
def fleet_documents(draw: st.DrawFn) -> dict[str, Any]:
    p_bad = draw(st.sampled_from([0.0, 0.0, 0.0, 0.02, 0.05, 0.15]))

    def pick(good: Any, bad: list[Any]) -> Any:
        return draw(st.sampled_from(bad)) if draw(st.floats(0, 1)) < p_bad else good

    def some(entry: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in entry.items() if v is not None}

    hosts: dict[str, Any] = {}
    for h in range(draw(st.integers(1, 3))):
        four = st.lists(st.sampled_from(GOOD_NAMES), min_size=4, max_size=4, unique=True)
        service, port, port2, vrf = (pick(name, BAD_NAMES) for name in draw(four))
        v6 = draw(st.booleans())
        link_local = draw(st.booleans())
        interfaces = {
            service: some({
                "ipv4": pick(f"198.51.100.{10 + h}/25", BAD_ADDRESSES),
                "gateway4": pick("198.51.100.1", BAD_GATEWAYS),
                "ipv6": f"2001:db8:100::{10 + h}/64",
                "gateway6": pick("fe80::1" if link_local else "2001:db8:100::1", BAD_GATEWAYS),
                "main_default": pick(True, [False, "true"]),
            }),
            port: some({
                "ipv4": pick(f"203.0.113.{10 + h}/25", BAD_ADDRESSES),
                "ipv6": pick(f"2001:db8:1::{10 + h}/64", BAD_ADDRESSES) if v6 else None,
            }),
        }  # fmt: skip
        ports = [port]
        if draw(st.booleans()):
            interfaces[port2] = {"ipv4": pick(f"192.0.2.{10 + h}/25", BAD_ADDRESSES)}
            ports.append(port2)
        state = pick("present", ["absent", "gone"])
        vrf_entry = some({
            "table": pick(draw(st.sampled_from([10, 20, 4000])), BAD_TABLES),
            "ports": ports,
            "gateway4": pick("203.0.113.1", BAD_GATEWAYS),
            "gateway6": (
                pick("fe80::2" if link_local else "2001:db8:1::1", BAD_GATEWAYS) if v6 else None
            ),
            "routes": [
                {
                    "to": pick("203.0.113.128/25", BAD_DESTINATIONS),
                    "via": pick("203.0.113.2", BAD_GATEWAYS),
                }
            ] if draw(st.booleans()) else None,
            "state": state if state != "present" else None,
            "services": (
                pick(draw(st.sampled_from([["sshd"], ["sshd", "chronyd.service"]])), BAD_SERVICES)
                if draw(st.booleans()) and state == "present" else None
            ),
            "tabel": pick(None, [10]),
        })  # fmt: skip
        host = some({
            "ssh_address": pick(f"192.0.2.{20 + h}", BAD_SSH),
            "ssh_port": pick(draw(st.sampled_from([None, 22, 2201])), [0, "22", 70000]),
            "ssh_key": pick(draw(st.sampled_from([None, "keys/id_ed25519"])), BAD_KEY_FILES),
            "ssh_known_hosts_file": pick(None, ["keys/none"]),
            "l3mdev_accept": pick(None, ["yes"]),
            "backend": draw(st.sampled_from([None, "networkmanager", "network-scripts"])),
            "interfaces": interfaces,
            "vrfs": {vrf: vrf_entry},
        })  # fmt: skip
        hosts[pick(f"web{h}", ["a b", "é", "web0"])] = host
    document: dict[str, Any] = {"hosts": hosts}
    if draw(st.booleans()):
        document["defaults"] = {
            "ssh_user": "root",
            "ssh_key": pick("keys/id_ed25519", BAD_KEY_FILES),
        }
    return document


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    assert isinstance(value, dict)
    return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + " }"


def _toml_key(key: str) -> str:
    return json.dumps(key, ensure_ascii=False)


def to_toml(document: dict[str, Any], path: tuple[str, ...] = ()) -> str:
    """TOML text: scalars and arrays first, then a [table] per nested table."""
    scalars = [
        f"{_toml_key(k)} = {_toml_value(v)}" for k, v in document.items() if not isinstance(v, dict)
    ]
    out = ""
    if path:
        out += "[" + ".".join(_toml_key(p) for p in path) + "]\n"
    out += "".join(line + "\n" for line in scalars)
    for key, value in document.items():
        if isinstance(value, dict):
            out += "\n" + to_toml(value, (*path, key))
    return out  # fmt: skip


@st.composite
def fleet_files(draw: st.DrawFn) -> bytes:
    """A fleet file's bytes, now and then with a BOM, a stray byte or cut short."""
    raw = to_toml(draw(fleet_documents())).encode()
    mangle = draw(st.sampled_from(["none"] * 6 + ["bom", "latin1", "truncate"]))
    if mangle == "bom":
        raw = b"\xef\xbb\xbf" + raw
    elif mangle == "latin1":
        at = draw(st.integers(0, len(raw)))
        raw = raw[:at] + b"\xe9" + raw[at:]
    elif mangle == "truncate":
        raw = raw[: draw(st.integers(0, len(raw)))]
    return raw


_WHERE = re.compile(r"(top level|defaults|group [^:]+|host [^:]+): ")
_KEYS = {*HostKeys.known_keys(), "hosts", "defaults"}


def _assert_names_where(message: str, label: str) -> None:
    """FILE: WHERE: KEY: problem, or FILE:LINE:COLUMN: for text that is not TOML yet."""
    assert message.startswith(label), message
    rest = message[len(label) :]
    if re.match(r":\d+:\d+: ", rest):
        return
    assert rest.startswith(": "), message
    where = _WHERE.match(rest[2:])
    assert where, f"no top level, defaults, group or host named: {message}"
    rest = rest[2 + where.end() :]
    if "is not a usable host name" in rest or "expected a table [hosts." in rest:
        return  # the problem is the host's own table: its name is the key
    key = rest.split(": ", 1)[0]
    top = re.split(r"[.\[]", key, maxsplit=1)[0]
    assert top in _KEYS, f"no key named (got {key!r}): {message}"


HOSTILE = "x'\"$(touch pwned) ;|&`id`"


def _hostile(spec: HostSpec) -> tuple[HostSpec, list[str]]:
    """The spec with every interface and VRF name made hostile, past the loader's rules."""
    rename = {i.name: f"{HOSTILE}i{n}" for n, i in enumerate(spec.interfaces)}
    vrf_names = {v.name: f"{HOSTILE}v{n}" for n, v in enumerate(spec.vrfs)}
    interfaces = tuple(replace(i, name=rename[i.name]) for i in spec.interfaces)
    vrfs = tuple(
        replace(v, name=vrf_names[v.name], ports=tuple(rename.get(p, p) for p in v.ports))
        for v in spec.vrfs
    )
    return replace(spec, interfaces=interfaces, vrfs=vrfs), [*rename.values(), *vrf_names.values()]


def _assert_one_word(text: str, names: list[str], where: str) -> None:
    heredoc_end = None
    for number, line in enumerate(text.splitlines(), 1):
        if heredoc_end is not None:
            # A quoted here-document (`ip -batch - <<'END'`): read by ip, never expanded.
            heredoc_end = None if line == heredoc_end else heredoc_end
            continue
        if quoted_heredoc := re.search(r"<<'(\w+)'", line):
            heredoc_end = quoted_heredoc[1]
        if line.lstrip().startswith("#") or HOSTILE not in line:
            continue
        lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|()<>")
        lexer.whitespace_split = True
        lexer.commenters = ""
        words = list(lexer)
        for name in names:
            if name in line:
                assert any(name in word for word in words), (
                    f"{where}:{number}: {name!r} is not one shell word: {line}"
                )


def test_generated_fleet_files(tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "id_ed25519").write_text("")
    (tmp_path / "keys" / "known_hosts").write_text("")
    path = tmp_path / "fleet.toml"
    label = str(path)
    to_check: dict[str, str] = {}
    seen = {"accepted": 0, "refused": 0}

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        # The same examples on every run: CI must not pass or fail by chance.
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(fleet_files())
    def check(raw: bytes) -> None:
        path.write_bytes(raw)
        try:
            fleet = load_fleet(path)
        except FleetError as refused:
            seen["refused"] += 1
            assert refused.messages
            for message in refused.messages:
                _assert_names_where(message, label)
            return
        assert isinstance(fleet, Fleet)
        seen["accepted"] += 1
        for spec in fleet.hosts:
            files: dict[str, str] = {}
            for backend in BACKENDS:
                for name, text in shell_files(spec, backend).items():
                    files[f"{backend}{name}"] = text
            if spec.present_vrfs:
                files.update(run_scripts(spec, clean_state()))
            for name, text in files.items():
                # One file per shape: files that differ only in addresses, tables, names and
                # base64 (all in characters that need no quoting) parse the same.
                shape = re.sub(r"[A-Za-z0-9_.:/+=-]+", "w", text)
                digest = hashlib.sha256(shape.encode()).hexdigest()[:12]
                to_check.setdefault(f"{digest}-{Path(name).name}", text)
            hostile, names = _hostile(spec)
            for backend in BACKENDS:
                for name, text in shell_files(hostile, backend).items():
                    _assert_one_word(text, names, name)
            if hostile.present_vrfs:
                for name, text in run_scripts(hostile, clean_state()).items():
                    _assert_one_word(text, names, name)

    check()
    # Both sides of the rules came up, or the generator needs a look.
    assert seen["accepted"] >= 5 and seen["refused"] >= 5, seen
    assert shellcheck(to_check) == ""


def test_the_one_word_check_catches_an_unquoted_name() -> None:
    """The check above would see a template that forgot `q`."""
    name = HOSTILE + "i0"
    _assert_one_word(f"ip link set dev {sh_quote(name)} up\n", [name], "good")
    try:
        _assert_one_word(f"ip link set dev {name} up\n", [name], "bad")
    except (AssertionError, ValueError):
        return
    raise AssertionError("an unquoted hostile name passed the check")
