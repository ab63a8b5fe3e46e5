"""A port's ifcfg profile is the host's own, edited: the operator's keys survive a deploy.

The host files are the lab's (lab/guest/blog.py: the blog's keys and order with the lab's
addresses) with an operator's additions of the kind real fleets carry.
"""

from __future__ import annotations

from dataclasses import replace

from lab.guest import blog
from mgmt_vrf import paths
from mgmt_vrf.hoststate import FileState, HostState, Profile
from mgmt_vrf.plan import WriteFile, plan
from mgmt_vrf.preflight import host_problems
from mgmt_vrf.profile_text import Ifcfg

from .builders import clean_state, seed_spec
from .test_profile_text import OPERATOR_KEYS, bash_read

PATH = paths.ifcfg("eth2")
OPERATOR_PROFILE = blog.clean_ifcfg()["ifcfg-eth2"] + OPERATOR_KEYS
KEPT = {
    "MTU": "9000",
    "ZONE": "trusted",
    "DNS1": "192.0.2.53",
    "ETHTOOL_OPTS": "-K eth2 gro off",
    "MACADDR": "permanent",
    "IPV6_PRIVACY": "no",
    "NAME": "eth2",
    "TYPE": "Ethernet",
}


def with_profile(state: HostState, text: str) -> HostState:
    files = {**state.files, PATH: FileState(PATH, text.encode())}
    return replace(state, files=files, profiles=(Profile(PATH, "eth2", "eth2"),))


def written(state: HostState, spec: object = None) -> str | None:
    result = plan(spec or seed_spec(), state)  # type: ignore[arg-type]
    texts = [c.content for c in result.changes if isinstance(c, WriteFile) and c.path == PATH]
    return texts[0] if texts else None


def deployed_then(**vrf_changes: object) -> str:
    """The operator's profile after a deploy, then after a deploy of the VRF so changed."""
    deployed = written(with_profile(clean_state(), OPERATOR_PROFILE))
    assert deployed is not None
    spec = seed_spec()
    spec = replace(spec, vrfs=(replace(spec.vrfs[0], **vrf_changes),))  # type: ignore[arg-type]
    text = written(with_profile(clean_state(), deployed), spec)
    assert text is not None
    return text


def test_a_deploy_keeps_every_key_and_comment_the_operator_set() -> None:
    text = written(with_profile(clean_state(), OPERATOR_PROFILE))
    assert text is not None
    seen = bash_read(text, [*KEPT, "VRF", "GATEWAY", "DEFROUTE", "IPV6_DEFAULTGW"])
    assert seen == {
        **KEPT,
        "VRF": "mgmt0",
        "GATEWAY": "203.0.113.1",
        "DEFROUTE": "yes",
        "IPV6_DEFAULTGW": "2001:db8:1::1",
    }
    assert "# eth2: out-of-band management, rack 12 (ticket NET-4411)" in text.splitlines()
    # The operator's lines keep their order; ours lead (two comments) or follow.
    operator_lines = [line for line in OPERATOR_PROFILE.splitlines() if "=" not in line or
                      line.split("=")[0] in KEPT]  # fmt: skip
    assert [line for line in text.splitlines() if line in operator_lines] == operator_lines
    assert text.startswith("# Managed by mgmt-vrf (pyinfra): ")


def test_a_second_run_changes_nothing_in_the_edited_profile() -> None:
    first = written(with_profile(clean_state(), OPERATOR_PROFILE))
    assert first is not None
    assert written(with_profile(clean_state(), first)) is None


def test_released_the_profile_is_the_operators_again_without_our_lines() -> None:
    released = deployed_then(state="absent")
    assert not released.startswith("#")
    values = Ifcfg.parse(PATH, released).values()
    assert "VRF" not in values and "GATEWAY" not in values
    assert values["DEFROUTE"] == "no"
    assert {k: values[k] for k in KEPT} == KEPT
    assert Ifcfg.parse(PATH, OPERATOR_PROFILE).values().items() - values.items() == {
        ("IPV6_AUTOCONF", "yes"),  # the fleet file's static address rules out SLAAC
        ("PREFIX", "25"),  # the fleet file's prefix wins over the lab's
        ("IPV6ADDR", "2001:db8:1::10"),  # written with its prefix: 2001:db8:1::10/64
    }


def test_the_fleet_files_addresses_replace_every_other_address_key() -> None:
    profile = (
        "DEVICE=eth2\nIPADDR0=192.0.2.99\nPREFIX0=28\nNETMASK=255.255.255.0\n"
        "GATEWAY0=192.0.2.97\nIPV6ADDR_SECONDARIES='2001:db8:1::99/64'\nMTU=1400\n"
    )
    text = written(with_profile(clean_state(), profile))
    assert text is not None
    values = Ifcfg.parse(PATH, text).values()
    for key in ("IPADDR0", "PREFIX0", "NETMASK", "GATEWAY0", "IPV6ADDR_SECONDARIES"):
        assert key not in values
    assert values["IPADDR"] == "203.0.113.10" and values["MTU"] == "1400"


def test_a_profile_we_cannot_read_alike_refuses_the_host_and_names_the_line() -> None:
    state = with_profile(clean_state(), "DEVICE=eth2\nZONE=$(hostname)\n")
    problems = host_problems(seed_spec(), state)
    assert problems == [
        f"host alma1: vrfs.mgmt0.ports: eth2's profile cannot be edited without losing what it "
        f"says: {PATH}, line 2: the value of ZONE cannot be read: it has an unquoted '$', "
        "which a shell would expand. The file is left as it is; fix or remove that line on "
        "the host, then run again."
    ]


OLD_HEADER = (
    "# Managed by mgmt-vrf (pyinfra). Edits here are replaced on the next deploy; earlier "
    "versions are kept in /var/lib/mgmt-vrf/backup.\n"
)


def test_a_profile_from_an_older_release_is_not_rewritten_for_its_header() -> None:
    fresh = written(with_profile(clean_state(), OPERATOR_PROFILE))
    assert fresh is not None
    older = OLD_HEADER + fresh.split("\n", 1)[1]
    assert written(with_profile(clean_state(), older)) is None


def test_a_renamed_vrf_renews_the_line_that_names_it() -> None:
    renamed = deployed_then(name="oob0")
    assert renamed.splitlines()[1] == "# Port of VRF oob0 (table 10): the only profile for eth2."
    assert "VRF=oob0" in renamed.splitlines()


def test_an_ifcfg_profile_without_device_is_still_the_ports_own_and_edited() -> None:
    # initscripts and ifcfg-rh match such a file by HWADDR=; its name says which port it is.
    text = OPERATOR_PROFILE.replace("DEVICE=eth2\n", "HWADDR=52:54:00:00:01:02\n")
    assert "DEVICE=" not in text
    state = with_profile(clean_state(), text)
    state = replace(state, profiles=(Profile(PATH, None, "eth2"),))
    edited = written(state)
    assert edited is not None and "MTU=9000" in edited and "HWADDR=52:54:00:00:01:02" in edited
    assert "VRF=mgmt0" in edited.splitlines()
