"""The ifcfg and keyfile editors (mgmt_vrf/profile_text.py), against the real readers.

- ifcfg: what we read is what bash reads when it sources the file (network-scripts do);
  the rules where NetworkManager's svUnescape() is stricter than bash are checked by hand.
- keyfile: what we read is what GLib's GKeyFile reads (NetworkManager's keyfile plugin
  uses it), called through ctypes; a file GLib refuses, we refuse.
- Edits keep every line they do not touch, byte for byte, and the real reader then sees
  exactly the values set.
"""

from __future__ import annotations

import ctypes
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lab.guest import blog
from mgmt_vrf.profile_text import Ifcfg, Keyfile, ProfileSyntaxError

EXAMPLES = 150

# --- the real readers ------------------------------------------------------------------

_glib = ctypes.CDLL("libglib-2.0.so.0")
_glib.g_key_file_new.restype = ctypes.c_void_p
_glib.g_key_file_free.argtypes = [ctypes.c_void_p]
_glib.g_key_file_load_from_data.argtypes = [
    ctypes.c_void_p, ctypes.c_char_p, ctypes.c_ssize_t, ctypes.c_int, ctypes.c_void_p
]  # fmt: skip
_glib.g_key_file_get_groups.restype = ctypes.POINTER(ctypes.c_char_p)
_glib.g_key_file_get_groups.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
_glib.g_key_file_get_keys.restype = ctypes.POINTER(ctypes.c_char_p)
_glib.g_key_file_get_keys.argtypes = [
    ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_void_p
]  # fmt: skip
_glib.g_key_file_get_string.restype = ctypes.c_char_p
_glib.g_key_file_get_string.argtypes = [
    ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p
]  # fmt: skip


def _strv(p: ctypes._Pointer[ctypes.c_char_p]) -> list[str]:
    out = []
    i = 0
    while p[i] is not None:
        out.append(p[i].decode())
        i += 1
    return out


def glib_read(text: str) -> dict[str, dict[str, str | None]] | None:
    """GKeyFile's view of a keyfile, or None when it refuses the file."""
    kf = _glib.g_key_file_new()
    try:
        if not _glib.g_key_file_load_from_data(kf, text.encode(), -1, 0, None):
            return None
        out: dict[str, dict[str, str | None]] = {}
        for group in _strv(_glib.g_key_file_get_groups(kf, None)):
            keys = _strv(_glib.g_key_file_get_keys(kf, group.encode(), None, None))
            out[group] = {}
            for key in keys:
                value = _glib.g_key_file_get_string(kf, group.encode(), key.encode(), None)
                out[group][key] = None if value is None else value.decode()
        return out
    finally:
        _glib.g_key_file_free(kf)


def bash_read(text: str, keys: list[str]) -> dict[str, str]:
    """What bash sees when it sources an ifcfg file (as ifup does), key by key."""
    script = '. /dev/stdin; for k in "$@"; do printf "%s=%s\\0" "$k" "${!k-}"; done'
    r = subprocess.run(
        ["bash", "-c", script, "bash", *keys], input=text, capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
    pairs = [p.split("=", 1) for p in r.stdout.split("\0") if p]
    return {k: v for k, v in pairs}


# --- ifcfg -------------------------------------------------------------------------------

OPERATOR_KEYS = (
    "# eth2: out-of-band management, rack 12 (ticket NET-4411)\n"
    "MTU=9000\n"
    "ZONE=trusted\n"
    "DNS1=192.0.2.53\n"
    'ETHTOOL_OPTS="-K eth2 gro off"\n'
)


def test_the_blogs_files_read_as_bash_reads_them() -> None:
    for name, text in {**blog.broken_files(), **blog.clean_ifcfg()}.items():
        if not name.startswith("ifcfg-"):
            continue
        f = Ifcfg.parse(name, text)
        assert f.values() == bash_read(text, list(f.values())), name
        assert f.text() == text, name


def test_an_edit_keeps_every_operator_key_comment_and_line_order() -> None:
    original = blog.clean_ifcfg()["ifcfg-eth2"] + OPERATOR_KEYS
    f = Ifcfg.parse("/etc/sysconfig/network-scripts/ifcfg-eth2", original)
    f.set("VRF", "mgmt0")
    f.set("DEFROUTE", "yes")  # was "no": rewritten on its own line
    f.set("GATEWAY", "203.0.113.1")
    text = f.text()
    old_lines, new_lines = original.splitlines(), text.splitlines()
    assert [x for x in new_lines if x in old_lines] == [x for x in old_lines if x != "DEFROUTE=no"]
    assert new_lines[old_lines.index("DEFROUTE=no")] == "DEFROUTE=yes"
    assert new_lines[-2:] == ["VRF=mgmt0", "GATEWAY=203.0.113.1"]
    seen = bash_read(text, ["MTU", "ZONE", "DNS1", "ETHTOOL_OPTS", "MACADDR", "VRF"])
    assert seen == {
        "MTU": "9000",
        "ZONE": "trusted",
        "DNS1": "192.0.2.53",
        "ETHTOOL_OPTS": "-K eth2 gro off",
        "MACADDR": "permanent",
        "VRF": "mgmt0",
    }
    for key in ("VRF", "GATEWAY"):
        f.remove(key)
    f.set("DEFROUTE", "no")
    assert f.text() == original


def test_a_duplicated_key_is_set_where_the_reader_looks_and_its_shadows_go() -> None:
    f = Ifcfg.parse("ifcfg-eth2", "MTU=1500\nDEVICE=eth2\n# old\nMTU=9000\nONBOOT=yes\n")
    assert f.get("MTU") == "9000"
    f.set("MTU", "9000")  # same value: the shadowed line still goes, as shvar.c does
    assert f.text() == "DEVICE=eth2\n# old\nMTU=9000\nONBOOT=yes\n"
    f.set("MTU", "1400")
    assert f.text() == "DEVICE=eth2\n# old\nMTU=1400\nONBOOT=yes\n"


@pytest.mark.parametrize(
    "line, why",
    [
        ("export MTU=9000", "is not KEY=value"),
        ("MTU = 9000", "is not KEY=value"),
        ("ZONE=$(curl x)", "unquoted '$'"),
        ('NAME="eth$N"', "inside double quotes"),
        ("NAME=`id`", "unquoted '`'"),
        ("HOME=~", "unquoted '~'"),
        ("NAME=a b", "unquoted blanks"),
        ("NAME='open", "single quote is not closed"),
        ('NAME="open', "double quote is not closed"),
        ("NAME=a\\", "ends in a backslash"),
        ("NAME=a|b", "unquoted '|'"),
    ],
)
def test_a_line_nm_and_bash_would_not_read_alike_is_refused_with_path_and_line(
    line: str, why: str
) -> None:
    path = "/etc/sysconfig/network-scripts/ifcfg-eth2"
    with pytest.raises(ProfileSyntaxError) as e:
        Ifcfg.parse(path, f"DEVICE=eth2\n{line}\n")
    assert str(e.value).startswith(f"{path}, line 2: ")
    assert why in str(e.value)


def test_values_written_by_nm_or_by_hand_read_alike() -> None:
    # Forms NetworkManager's svEscape() writes, and forms people type.
    text = (
        'A="with space"\n'
        "B='single $quoted'\n"
        'C="esc \\" \\\\ \\$ \\`"\n'
        "D=$'tab\\there'\n"
        "E=plain # trailing comment\n"
        "F=semi;\n"
        "G=\n"
        "H='a'\"b\"c\n"
        "I=x\\ y\n"
    )
    f = Ifcfg.parse("ifcfg-x", text)
    assert f.values() == bash_read(text, list("ABCDEFGHI"))


_WORDS = st.sampled_from(
    ["eth2", "9000", "a b", "it's", 'say "hi"', "back\\slash", "$HOME", "`id`", "~root",
     "x;y", "a#b", "", " lead", "tab\there", "é", "-K eth2 gro off", "a=b", "*", "[x]"]
)  # fmt: skip
_QUOTED = st.sampled_from(["{}", "'{}'", '"{}"', "$'{}'"])


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["A", "B", "MTU", "ZONE"]), _WORDS, _QUOTED), max_size=6))
def test_what_we_read_is_what_bash_reads(entries: list[tuple[str, str, str]]) -> None:
    text = "".join(f"{key}={form.format(word)}\n" for key, word, form in entries)
    try:
        f = Ifcfg.parse("ifcfg-x", text)
    except ProfileSyntaxError:
        return  # refused files are checked one rule at a time above
    assert f.values() == bash_read(text, sorted(f.values()))


@settings(max_examples=EXAMPLES, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["VRF", "MTU", "ZONE", "NAME"]),
        _WORDS.filter(lambda w: "\t" not in w),  # never written: see the next test
        max_size=4,
    )
)
def test_what_we_write_bash_and_we_read_back(values: dict[str, str]) -> None:
    f = Ifcfg.parse("ifcfg-x", "DEVICE=eth2\nMTU=1500\n")
    for key, value in values.items():
        f.set(key, value)
    expected = {"DEVICE": "eth2", "MTU": "1500", **values}
    assert Ifcfg.parse("ifcfg-x", f.text()).values() == expected
    assert bash_read(f.text(), sorted(expected)) == expected


def test_control_characters_are_never_written() -> None:
    f = Ifcfg.parse("ifcfg-x", "")
    with pytest.raises(ValueError):
        f.set("NAME", "a\nGATEWAY=198.51.100.66")


# --- keyfile -----------------------------------------------------------------------------

# Written by NetworkManager's own keyfile writer (tests/fixtures/keyfiles/capture.sh).
KEYFILES = Path(__file__).resolve().parent.parent / "fixtures" / "keyfiles"
INSTALLER_KEYFILE = (KEYFILES / "eth2-installer-1.42.4.nmconnection").read_text()


@pytest.mark.parametrize("path", sorted(KEYFILES.glob("*.nmconnection")), ids=lambda p: p.name)
def test_keyfiles_nm_wrote_read_as_glib_reads_them(path: Path) -> None:
    text = path.read_text()
    f = Keyfile.parse(path.name, text)
    assert f.groups() == glib_read(text)
    assert f.text() == text


def test_a_keyfile_edit_puts_keys_where_glib_would_and_keeps_the_rest() -> None:
    f = Keyfile.parse("eth2.nmconnection", INSTALLER_KEYFILE)
    f.set("connection", "master", "mgmt0")
    f.set("connection", "slave-type", "vrf")
    f.set("ipv4", "gateway", "203.0.113.1")
    f.set("ipv4", "never-default", "false")
    f.set("ethernet", "mtu", "1400")  # unchanged: the line stays
    f.set("vrf-note", "x", "y")  # a group the file lacks goes at the end
    text = f.text()
    lines = text.splitlines()
    assert lines[lines.index("interface-name=eth2") + 1 : lines.index("[ethernet]")] == [
        "master=mgmt0",
        "slave-type=vrf",
        "",
    ]
    assert lines[lines.index("method=manual") + 1 : lines.index("[ipv6]")] == [
        "gateway=203.0.113.1",
        "never-default=false",
        "",
    ]
    assert lines[-3:] == ["", "[vrf-note]", "x=y"]
    seen = glib_read(text)
    assert seen is not None
    assert seen["connection"]["master"] == "mgmt0"
    assert seen["ethernet"] == {"mtu": "1400"}
    assert seen["proxy"] == {}
    added = [
        ("connection", "master"),
        ("connection", "slave-type"),
        ("ipv4", "gateway"),
        ("ipv4", "never-default"),
        ("vrf-note", "x"),
    ]
    for group, key in added:
        f.remove(group, key)
    assert f.text() == INSTALLER_KEYFILE + "\n[vrf-note]\n"


def test_a_keyfile_key_in_a_group_without_keys_goes_under_its_header() -> None:
    f = Keyfile.parse("x.nmconnection", "[connection]\nid=x\n\n[proxy]\n\n# end\n")
    f.set("proxy", "method", "none")
    assert f.text() == "[connection]\nid=x\n\n[proxy]\nmethod=none\n\n# end\n"


def test_a_duplicated_keyfile_key_is_set_where_glib_looks() -> None:
    text = "[ipv4]\nmethod=auto\n[ethernet]\nmtu=1\n[ipv4]\nmethod=manual\n"
    f = Keyfile.parse("x", text)
    assert f.get("ipv4", "method") == glib_read(text)["ipv4"]["method"] == "manual"  # type: ignore[index]
    f.set("ipv4", "method", "disabled")
    assert f.text() == "[ipv4]\n[ethernet]\nmtu=1\n[ipv4]\nmethod=disabled\n"


@pytest.mark.parametrize(
    "text, line",
    [
        ("id=x\n[connection]\n", 1),
        ("[connection]\nno equals sign\n", 2),
        ("[connection\nid=x\n", 1),
        ("[connection]\n[]\n", 2),
        ("[connection] x\n", 1),
        ("[connection]\n=value\n", 2),
    ],
)
def test_a_keyfile_glib_refuses_we_refuse_with_path_and_line(text: str, line: int) -> None:
    assert glib_read(text) is None
    with pytest.raises(ProfileSyntaxError) as e:
        Keyfile.parse("/etc/NetworkManager/system-connections/x.nmconnection", text)
    assert str(e.value).startswith(
        f"/etc/NetworkManager/system-connections/x.nmconnection, line {line}: "
    )


_KF_LINES = st.sampled_from(
    ["[connection]", "[ipv4]", "  [ipv6]  ", "[a b]", "id=eth2", "  mtu = 1400 ", "mtu=9000",
     "key[de]=x", "ke y=1", "# comment", "   # indented", "", "   ", "x=\\s lead",
     "x=a\\nb", "x=tab\\tend", "x=back\\\\", "method=manual", "bad line", "=v", "[x", "[]"]
)  # fmt: skip


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.lists(_KF_LINES, max_size=10), st.booleans())
def test_what_we_read_of_a_keyfile_is_what_glib_reads(lines: list[str], crlf: bool) -> None:
    text = ("\r\n" if crlf else "\n").join(lines) + ("\n" if lines else "")
    seen = glib_read(text)
    try:
        ours = Keyfile.parse("x", text).groups()
    except ProfileSyntaxError:
        assert seen is None
        return
    assert ours == seen


@settings(max_examples=EXAMPLES, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["connection", "ipv4", "new"]), st.sampled_from(["a", "b"]),
                  st.sampled_from(["v", " lead", "trail ", "a\\b", "x=y", "#no", "é"])),
        max_size=5,
    )
)  # fmt: skip
def test_what_we_write_to_a_keyfile_glib_reads_back(edits: list[tuple[str, str, str]]) -> None:
    f = Keyfile.parse("x", INSTALLER_KEYFILE)
    expected = Keyfile.parse("x", INSTALLER_KEYFILE).groups()
    for group, key, value in edits:
        f.set(group, key, value)
        expected.setdefault(group, {})[key] = value
    assert glib_read(f.text()) == expected
