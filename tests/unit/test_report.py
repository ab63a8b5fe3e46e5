"""Drift report, pure part: plans -> one verdict per host, totals, JSON, exit code."""

from __future__ import annotations

import json
from dataclasses import replace

from mgmt_vrf import drift, paths
from mgmt_vrf.hoststate import MAIN_TABLE, FileState, HostState, RouteEntry
from mgmt_vrf.plan import plan

from .builders import MGMT_GW4, MGMT_GW6, broken_state, converged_state, seed_spec


def _drifted_state() -> HostState:
    """A converged host drifted three ways, as the lab test does it for real."""
    state = converged_state(ifcfg=True)
    ifcfg = paths.ifcfg("eth2")
    # An operator's MTU is not drift; a key we own (SLAAC turned back on) is.
    edited = (state.file(ifcfg).content or b"").replace(
        b"IPV6_AUTOCONF=no\n", b"IPV6_AUTOCONF=yes\n"
    ) + b"MTU=9000\n"
    return replace(
        state,
        routes=tuple(r for r in state.routes if not (r.table == 10 and r.family == 6 and r.gateway))
        + (RouteEntry(4, MAIN_TABLE, "default", gateway="192.0.2.1", dev="eth1", metric=300),),
        files={**state.files, ifcfg: FileState(ifcfg, edited)},
    )


def test_converged_host_is_converged() -> None:
    report = drift.from_plan(plan(seed_spec(), converged_state()))
    assert report == drift.HostReport("alma1", "converged")
    assert report.line() == "alma1  converged"


def test_three_drifts_are_named_in_words() -> None:
    report = drift.from_plan(plan(seed_spec(), _drifted_state()))
    assert report.status == "drifted"
    assert report.differences == (
        "ifcfg-eth2 edited: IPV6_AUTOCONF",
        "extra IPv4 default route in main: default via 192.0.2.1 dev eth1 metric 300",
        f"table 10 lacks default via {MGMT_GW6}",
    )


def test_an_operators_own_keys_and_comments_are_no_drift() -> None:
    state = converged_state(ifcfg=True)
    ifcfg = paths.ifcfg("eth2")
    edited = state.files[ifcfg].text + "# moved to rack 12\nMTU=9000\nZONE=trusted\n"
    state = replace(state, files={**state.files, ifcfg: FileState(ifcfg, edited.encode())})
    assert drift.from_plan(plan(seed_spec(), state)) == drift.HostReport("alma1", "converged")


def _keyfile_edited(old: str, new: str) -> HostState:
    state = converged_state()
    path = f"{paths.SYSTEM_CONNECTIONS}/eth2.nmconnection"
    edited = state.files[path].text.replace(old, new, 1)
    assert edited != state.files[path].text
    return replace(state, files={**state.files, path: FileState(path, edited.encode())})


def test_a_keyfile_edit_of_an_operators_key_is_no_drift_and_of_ours_is_named() -> None:
    operator = _keyfile_edited("[ethernet]\n", "[ethernet]\n# jumbo\nmtu=9000\n")
    assert drift.from_plan(plan(seed_spec(), operator)) == drift.HostReport("alma1", "converged")
    ours = _keyfile_edited("slave-type=vrf\n", "slave-type=bond\n")
    report = drift.from_plan(plan(seed_spec(), ours))
    assert report.differences == ("eth2.nmconnection edited: connection.slave-type",)


def test_an_edited_vrf_keyfile_names_the_key() -> None:
    state = converged_state()
    keyfile = paths.keyfile("mgmt0")
    edited = state.files[keyfile].text.replace("[vrf]\ntable=10", "[vrf]\ntable=11")
    state = replace(state, files={**state.files, keyfile: FileState(keyfile, edited.encode())})
    assert drift.differences(plan(seed_spec(), state))[0] == "mgmt0.nmconnection edited: vrf.table"


def test_follow_up_reloads_are_not_differences() -> None:
    # The seed host runs NetworkManager: an edited profile plans `nmcli connection reload`,
    # which is a consequence of the edit, not a second difference.
    result = plan(seed_spec(), _drifted_state())
    assert any("nmcli" in c.argv for c in result.changes if hasattr(c, "argv"))
    assert not any("rereads" in d for d in drift.differences(result))


def test_broken_host_names_each_problem_once() -> None:
    found = drift.differences(plan(seed_spec(), broken_state()))
    assert len(found) == len(set(found))
    assert "mgmt0.nmconnection missing" in found
    assert any(f.startswith("ifcfg-eth2 edited: ") and "VRF" in f for f in found), found
    assert (
        "ifcfg-vrf.eth2 present: second profile for eth2: NetworkManager would activate only one"
        in found
    )
    assert f"extra IPv4 default route in main: default via {MGMT_GW4} dev eth2 metric 102" in found
    assert f"table 10 lacks default via {MGMT_GW4}" in found
    assert "eth2 is not in VRF mgmt0" in found


def test_a_recreated_vrf_is_one_difference() -> None:
    state = converged_state()
    links = dict(state.links)
    links["mgmt0"] = replace(links["mgmt0"], vrf_table=11)
    found = drift.differences(plan(seed_spec(), replace(state, links=links)))
    assert found.count("create VRF mgmt0 with table 10: missing, or on another table") == 1


def _fleet() -> list[drift.HostReport]:
    return [
        drift.HostReport("lab1", "converged"),
        drift.HostReport("lab2", "drifted", ("ifcfg-eth2 edited", "eth2 is not in VRF mgmt0")),
        drift.unreachable("lab3", "Could not connect (timed out)"),
        drift.refused("lab4", ["host lab4: vrfs.mgmt0.ports: eth9 does not exist", "second"]),
    ]


def test_text_has_one_line_per_host_then_totals() -> None:
    assert drift.render_text(_fleet()) == [
        "lab1  converged",
        "lab2  drifted: ifcfg-eth2 edited; eth2 is not in VRF mgmt0",
        "lab3  unreachable: Could not connect (timed out)",
        "lab4  refused: host lab4: vrfs.mgmt0.ports: eth9 does not exist; second",
        "4 hosts: 1 converged, 1 drifted, 1 unreachable, 1 refused",
    ]


def test_failed_hosts_show_in_totals_only_when_present() -> None:
    lines = drift.render_text([drift.failed("lab1", "probe exited 1")])
    assert lines == [
        "lab1  error: probe exited 1",
        "1 host: 0 converged, 0 drifted, 0 unreachable, 0 refused, 1 error",
    ]


def test_json_round_trips() -> None:
    data = json.loads(json.dumps(drift.render_json(_fleet())))
    assert data["exit_code"] == 2
    assert data["totals"] == {
        "converged": 1,
        "drifted": 1,
        "unreachable": 1,
        "refused": 1,
        "error": 0,
    }
    assert data["hosts"][1] == {
        "host": "lab2",
        "status": "drifted",
        "differences": ["ifcfg-eth2 edited", "eth2 is not in VRF mgmt0"],
        "message": "",
    }


def test_exit_codes() -> None:
    ok = drift.HostReport("a", "converged")
    drifted = drift.HostReport("b", "drifted", ("x",))
    assert drift.exit_code([ok]) == 0
    assert drift.exit_code([]) == 0
    assert drift.exit_code([ok, drifted]) == 1
    for trouble in (
        drift.unreachable("c", "timeout"),
        drift.refused("c", ["bad"]),
        drift.failed("c", "boom"),
    ):
        assert drift.exit_code([ok, drifted, trouble]) == 2


def test_core_stays_free_of_pyinfra() -> None:
    import subprocess
    import sys

    code = "import sys, mgmt_vrf.drift; sys.exit('pyinfra' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
