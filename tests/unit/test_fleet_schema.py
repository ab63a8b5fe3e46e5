"""The schema declared once: the README's key table, the JSON Schema for editors and the
data form of a spec all follow the models in mgmt_vrf/fleet_schema.py."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import tomli

from mgmt_vrf.fleet_file import FleetError, load_fleet, spec_from_data, spec_to_data
from mgmt_vrf.fleet_schema import (
    HostKeys,
    InterfaceKeys,
    RolloutKeys,
    RouteKeys,
    VrfKeys,
    check_table,
    json_schema,
)

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
EXAMPLE = REPO / "fleet.example.toml"


def schema_keys() -> set[str]:
    keys = {key for key in HostKeys.model_fields if key not in ("interfaces", "vrfs")}
    keys |= {f"interfaces.NAME.{key}" for key in InterfaceKeys.model_fields}
    keys |= {f"vrfs.NAME.{key}" for key in VrfKeys.model_fields}
    keys |= {f"rollout.{key}" for key in RolloutKeys.model_fields}
    return keys


def readme_keys() -> set[str]:
    """The keys of the README's fleet-file table; `a.b.c` / `d` means a.b.c and a.b.d."""
    text = README.read_text()
    table = text.split("| key | where | meaning |", 1)[1].split("\n\n", 1)[0]
    keys: set[str] = set()
    for row in table.splitlines()[2:]:
        prefix = ""
        for token in re.findall(r"`([^`]+)`", row.split("|")[1]):
            if "." in token:
                prefix = token.rpartition(".")[0] + "."
                keys.add(token)
            else:
                keys.add(prefix + token if prefix else token)
    return keys


def test_the_readme_documents_every_key_of_the_schema_and_no_other() -> None:
    assert readme_keys() == schema_keys()


def test_the_json_schema_accepts_the_example_and_names_a_misspelt_key(tmp_path: Path) -> None:
    printed = subprocess.run(
        [sys.executable, "-m", "mgmt_vrf.fleet_schema"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    schema = json.loads(printed.stdout)
    assert schema == json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    example = tomli.loads(EXAMPLE.read_text())
    jsonschema.validate(example, schema)
    host = schema["$defs"]["HostKeys"]["properties"]
    assert set(host) == set(HostKeys.model_fields)
    assert not [key for key, prop in host.items() if "default" in prop]  # TOML has no null
    example["hosts"]["alma87"]["interfaces"]["eth2"]["gatway4"] = "192.0.2.1"
    with pytest.raises(jsonschema.ValidationError, match="gatway4"):
        jsonschema.validate(example, schema)


def test_the_json_schema_states_the_ranges_the_checks_enforce() -> None:
    schema = json_schema()
    defs = schema["$defs"]
    table = defs["VrfKeys"]["properties"]["table"]
    assert (table["minimum"], table["maximum"]) == (1, 2**32 - 1)
    assert table["not"] == {"enum": [253, 254, 255]}
    host = defs["HostKeys"]["properties"]
    assert (host["ssh_port"]["minimum"], host["ssh_port"]["maximum"]) == (1, 65535)
    assert (host["rollback_timeout"]["minimum"], host["rollback_timeout"]["maximum"]) == (15, 3600)
    assert defs["VrfKeys"]["properties"]["nameservers"]["maxItems"] == 3
    example = tomli.loads(EXAMPLE.read_text())
    alma = example["hosts"]["alma87"]
    for key, value in (("ssh_port", 0), ("rollback_timeout", 5), ("changes_at_once", 0)):
        wrong = {**example, "hosts": {"alma87": {**alma, key: value}}}
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(wrong, schema)
        # The deploy's own check says the same.
        _, problems = check_table(HostKeys, {key: value})
        assert [path for path, _ in problems] == [key]
    vrf = {**alma["vrfs"]["mgmt0"], "table": 254}
    wrong = {**example, "hosts": {"alma87": {**alma, "vrfs": {"mgmt0": vrf}}}}
    with pytest.raises(jsonschema.ValidationError, match="254"):
        jsonschema.validate(wrong, schema)


def test_problems_come_in_the_order_the_table_writes_them() -> None:
    raw = {
        "vrfs": {"mgmt0": {"table": 254, "ports": "eth2"}},
        "ssh_port": 0,
        "intrefaces": {},
    }
    values, problems = check_table(HostKeys, raw)
    assert [path for path, _ in problems] == [
        "vrfs.mgmt0.table",
        "vrfs.mgmt0.ports",
        "ssh_port",
        "intrefaces",
    ]
    assert problems[3][1] == "unknown key; did you mean interfaces?"
    assert "intrefaces" not in values
    assert repr(values["ssh_port"]) == "<invalid>"


def test_a_route_is_checked_only_once_its_keys_are_right() -> None:
    raw = {"vrfs": {"m": {"routes": [{"to": "not a network", "gw": "192.0.2.1"}]}}}
    values, problems = check_table(HostKeys, raw)
    assert problems == [
        ("vrfs.m.routes[0].gw", "unknown key; did you mean via?"),
        ("vrfs.m.routes[0].via", 'missing; every route needs via = "192.0.2.254"'),
    ]
    assert repr(values["vrfs"]["m"]["routes"][0]) == "<invalid>"
    assert RouteKeys.known_keys() == ("to", "via")


def test_spec_to_data_writes_every_key_the_spec_sets_and_reads_back_the_same() -> None:
    spec = load_fleet(EXAMPLE).hosts[0]
    data = spec_to_data(spec)
    assert spec_from_data(data) == spec
    assert set(data) - {"name"} <= set(HostKeys.model_fields)
    vrf = data["vrfs"]["mgmt0"]
    assert vrf["table"] == 10 and vrf["ports"] == ["eth2"] and vrf["state"] == "present"
    assert json.loads(json.dumps(data)) == data


def test_a_name_that_is_not_a_string_in_python_host_data_is_a_message() -> None:
    # TOML names are always strings; a Python inventory's dict can hold any key.
    data = {
        "name": "alma1",
        "ssh_address": "192.0.2.10",
        "interfaces": {1: {"ipv4": "192.0.2.5/24", "mtu": 9000}},
        "vrfs": {"mgmt0": {"table": 10, "ports": ["eth2"]}},
    }
    with pytest.raises(FleetError) as caught:
        spec_from_data(data)
    assert caught.value.messages[0] == (
        "host data: host alma1: interfaces: every name here must be a string (as TOML writes "
        "it), got the integer 1"
    )
    # Nothing inside the unnamed table is reported: only its name is wrong.
    assert not [m for m in caught.value.messages if "mtu" in m]
