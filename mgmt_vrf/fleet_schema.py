"""The fleet file's schema, declared once.

The models below say which tables and keys exist, where each may be written, which checker
of fleet_values each value takes and what it means. From them come the validation of every
table (a fleet file's and a user's host data alike), the messages for unknown and missing
keys, the JSON Schema an editor can check a fleet file with (`python -m
mgmt_vrf.fleet_schema`), the data form of a spec (fleet_file.spec_to_data) and the README's
key table (a unit test compares the two).

pydantic does the walking and reports every problem with its path; `check_table` turns its
errors back into the fleet file's own words, and gives the checked values of a table with
INVALID where a value was wrong, so the checks that need a whole host still run on the rest.
"""

import json
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, ClassVar, Union, get_args, get_origin

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    ValidationError,
    ValidationInfo,
    WrapValidator,
    model_validator,
)
from pydantic_core import PydanticCustomError, core_schema

from . import fleet_values as v
from .fleet_values import INVALID, Checker, _Bad, _describe, _join, _key, _nearest, _show
from .model import Route

# The error type of every problem a checker of fleet_values found; its message is ours.
_OUR_PROBLEM = "fleet_value"
# Set in the context of a table's second validation (the one that gives the values around
# the wrong ones): the names of its named tables were reported by the first.
_NAMES_REPORTED = "names_reported"
# The context key of the directory relative ssh file paths are read from.
BASE_DIR = "base"


def _problem(text: str, **extra: str) -> PydanticCustomError:
    # The message is passed as context, not as the template: ours contain braces.
    return PydanticCustomError(_OUR_PROBLEM, "{problem}", {"problem": text, **extra})


@dataclass(frozen=True)
class Rule:
    """A key's value, validated by one checker of fleet_values alone; `schema` describes it
    to JSON Schema."""

    check: Checker
    schema: Mapping[str, Any] = field(default_factory=dict)

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> Any:
        return core_schema.with_info_plain_validator_function(self.validate)

    def __get_pydantic_json_schema__(self, schema: Any, handler: GetJsonSchemaHandler) -> Any:
        out = dict(self.schema)
        if isinstance(self.check, v.Ranged):
            out |= {"minimum": self.check.low, "maximum": self.check.high}
            if self.check.excluded:
                out["not"] = {"enum": list(self.check.excluded)}
        return out

    def checker(self, info: ValidationInfo) -> Checker:
        return self.check

    def validate(self, value: object, info: ValidationInfo) -> Any:
        if value is INVALID:
            return value
        try:
            return self.checker(info)(value)
        except _Bad as bad:
            raise _problem(str(bad)) from None


@dataclass(frozen=True)
class SshFile(Rule):
    """A path to a file that must exist; relative paths are read from the context's BASE_DIR
    (the fleet file's directory), else the current one."""

    check: Checker = v._string
    schema: Mapping[str, Any] = field(default_factory=lambda: {"type": "string"})
    key: str = "ssh_key"

    def checker(self, info: ValidationInfo) -> Checker:
        base = (info.context or {}).get(BASE_DIR) or Path.cwd()
        return v._ssh_file(self.key, Path(base))


def _keep_invalid(value: object, handler: Callable[[object], Any]) -> Any:
    return value if value is INVALID else handler(value)


def _name_check(kind: str) -> Callable[[str, ValidationInfo], str]:
    """The key of a named table: a device or VRF name, by the kernel's rules."""

    def validate(name: str, info: ValidationInfo) -> str:
        if (info.context or {}).get(_NAMES_REPORTED):
            return name
        problem = v._ifname_problem(name)
        if problem:
            raise _problem(f"{kind} {_show(name)} {problem}")
        return name

    return validate


_KEEP_INVALID = WrapValidator(_keep_invalid)
_DeviceName = Annotated[str, AfterValidator(_name_check("device name"))]
_VrfName = Annotated[str, AfterValidator(_name_check("VRF name"))]

_STRING = {"type": "string"}
_INTEGER = {"type": "integer"}
_WAVES = {
    "type": "array",
    "items": {"anyOf": [{"type": "integer"}, {"type": "string", "pattern": "^[0-9.]+%$"}]},
}
_SECONDS = {"type": "integer", "description": "seconds"}
_HOSTS = {"type": "integer", "description": "hosts"}
_BOOLEAN = {"type": "boolean"}
_NAMES = {"type": "array", "items": {"type": "string"}, "uniqueItems": True}
_NAMESERVERS = {**_NAMES, "minItems": 1, "maxItems": v.MAX_NAMESERVERS}


def _choices(choices: tuple[str, ...]) -> dict[str, Any]:
    return {"enum": list(choices)}


class Table(BaseModel):
    """One TOML table of the fleet file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Words people type from ifcfg files or other tools, mapped to what this file calls them.
    hints: ClassVar[Mapping[str, str]] = {}
    # True when the table is checked only once its keys are right, and is one value then.
    whole: ClassVar[bool] = False

    @classmethod
    def known_keys(cls) -> tuple[str, ...]:
        return tuple(cls.model_fields)

    def value(self) -> Any:
        return self


class RouteKeys(Table):
    """A static route in the VRF's table: `{ to = "10.0.0.0/8", via = "192.0.2.254" }`."""

    hints = {
        "dst": "to",
        "destination": "to",
        "network": "to",
        "prefix": "to",
        "gw": "via",
        "gateway": "via",
        "nexthop": "via",
    }
    whole = True
    shape: ClassVar[str] = '{ to = "...", via = "..." }'

    to: Annotated[Any, Rule(v._route_destination, _STRING)] = Field(
        description="the destination network", examples=["10.0.0.0/8"]
    )
    via: Annotated[Any, Rule(v._route_via, _STRING)] = Field(
        description="the next hop, a router on one of the VRF's ports' segments",
        examples=["192.0.2.254"],
    )

    @model_validator(mode="after")
    def _same_family(self) -> "RouteKeys":
        if self.to is INVALID or self.via is INVALID or self.to.version == self.via.version:
            return self
        raise _problem(
            f"{self.via} is IPv{self.via.version} but the destination {self.to} is "
            f"IPv{self.to.version}; a route's to and via must be the same family",
            at="via",
        )

    def value(self) -> Any:
        if self.to is INVALID or self.via is INVALID:
            return INVALID
        return Route(to=self.to, via=self.via)


class InterfaceKeys(Table):
    """[hosts.NAME.interfaces.DEV]: a NIC."""

    hints = {
        "address": "ipv4 or ipv6",
        "ipaddr": "ipv4",
        "ipv6addr": "ipv6",
        "gateway": "gateway4 or gateway6",
        "ipv6_defaultgw": "gateway6",
        "defroute": "main_default",
        "default": "main_default",
        "vrf": "the VRF's ports list, [hosts.NAME.vrfs.VRF] ports = [...]",
        "master": "the VRF's ports list, [hosts.NAME.vrfs.VRF] ports = [...]",
    }

    ipv4: Annotated[Any, Rule(v._interface_address(4), _STRING)] = Field(
        None, description="address with prefix", examples=["192.0.2.10/24"]
    )
    ipv6: Annotated[Any, Rule(v._interface_address(6), _STRING)] = Field(
        None, description="address with prefix", examples=["2001:db8::10/64"]
    )
    gateway4: Annotated[Any, Rule(v._gateway(4), _STRING)] = Field(
        None, description="the main table's IPv4 default route; needs main_default = true"
    )
    gateway6: Annotated[Any, Rule(v._gateway(6), _STRING)] = Field(
        None, description="the main table's IPv6 default route; needs main_default = true"
    )
    main_default: Annotated[Any, Rule(v._boolean, _BOOLEAN)] = Field(
        None, description="this NIC carries the main default route (one per host)"
    )


class VrfKeys(Table):
    """[hosts.NAME.vrfs.VRF]: a VRF device, its table and its ports."""

    hints = {
        "gateway": "gateway4 or gateway6",
        "port": "ports",
        "interfaces": "ports",
        "route": "routes",
        "table_id": "table",
        "service": "services",
        "units": "services",
        "route_table": "table",
        "nameserver": "nameservers",
        "dns": "nameservers",
        "dns_servers": "nameservers",
        "domains": "search",
        "dns_search": "search",
        "search_domains": "search",
    }

    table: Annotated[Any, Rule(v._table, _INTEGER)] = Field(
        None, description="the VRF's routing table: 1-4294967295 but 253, 254 and 255"
    )
    ports: Annotated[Any, Rule(v._ports, _NAMES)] = Field(
        None, description="the NICs enslaved to the VRF", examples=[["eth2"]]
    )
    gateway4: Annotated[Any, Rule(v._gateway(4), _STRING)] = Field(
        None, description="the VRF table's IPv4 default route"
    )
    gateway6: Annotated[Any, Rule(v._gateway(6), _STRING)] = Field(
        None, description="the VRF table's IPv6 default route"
    )
    state: Annotated[Any, Rule(v._choice(*v.STATE_CHOICES), _choices(v.STATE_CHOICES))] = Field(
        None, description="present (default) or absent: tear the VRF down"
    )
    services: Annotated[Any, Rule(v._services, _NAMES)] = Field(
        None, description="systemd services started inside this VRF", examples=[["sshd"]]
    )
    routes: Annotated[list[Annotated[RouteKeys, _KEEP_INVALID]] | None, _KEEP_INVALID] = Field(
        None, description="static routes in the VRF's table"
    )
    nameservers: Annotated[Any, Rule(v._nameservers, _NAMESERVERS)] = Field(
        None,
        description="what the VRF's services and mgmt-vrf-exec resolve names with (1 to 3)",
        examples=[["203.0.113.53"]],
    )
    search: Annotated[Any, Rule(v._search, _NAMES)] = Field(
        None,
        description="search domains for names resolved inside the VRF; needs nameservers",
        examples=[["mgmt.example.net"]],
    )


_DEVICES = Annotated[
    dict[_DeviceName, Annotated[InterfaceKeys, _KEEP_INVALID]] | None, _KEEP_INVALID
]
_VRFS = Annotated[dict[_VrfName, Annotated[VrfKeys, _KEEP_INVALID]] | None, _KEEP_INVALID]


class LayerKeys(Table):
    """[defaults] or [groups.NAME]: any host key but groups, merged under the hosts."""

    hints = {
        "address": "ssh_address",
        "host": "ssh_address",
        "hostname": "ssh_address",
        "ssh_hostname": "ssh_address",
        "user": "ssh_user",
        "port": "ssh_port",
        "key": "ssh_key",
        "group": "groups",
        "interface": "interfaces",
        "vrf": "vrfs",
    }
    # The name a table of each named kind is shown with when the value is not a table.
    examples: ClassVar[Mapping[str, str]] = {"interfaces": "eth0", "vrfs": "mgmt0"}

    ssh_address: Annotated[Any, Rule(v._ssh_address, _STRING)] = Field(
        None, description="the address or name pyinfra connects to (required for a host)"
    )
    ssh_user: Annotated[Any, Rule(v._string, _STRING)] = Field(None, description="the ssh user")
    ssh_port: Annotated[Any, Rule(v._ssh_port, _INTEGER)] = Field(None, description="the ssh port")
    ssh_key: Annotated[Any, SshFile(key="ssh_key")] = Field(
        None, description=v._SSH_FILES["ssh_key"]
    )
    ssh_known_hosts_file: Annotated[Any, SshFile(key="ssh_known_hosts_file")] = Field(
        None, description=v._SSH_FILES["ssh_known_hosts_file"]
    )
    ssh_strict_host_key_checking: Annotated[
        Any, Rule(v._choice(*v.STRICT_CHOICES), _choices(v.STRICT_CHOICES))
    ] = Field(None, description="accept-new (pyinfra's default) or yes; no only if you write it")
    ssh_connect_timeout: Annotated[
        Any,
        Rule(
            v._seconds(
                1, v.MAX_CONNECT_TIMEOUT, "it is how long to wait for a host's ssh handshake"
            ),
            _SECONDS,
        ),
    ] = Field(None, description="seconds for a host's TCP connect and ssh handshake")
    backend: Annotated[Any, Rule(v._choice(*v.BACKEND_CHOICES), _choices(v.BACKEND_CHOICES))] = (
        Field(
            None,
            description="auto (NetworkManager when installed), networkmanager, network-scripts",
        )
    )
    l3mdev_accept: Annotated[Any, Rule(v._boolean, _BOOLEAN)] = Field(
        None, description="true (default): sshd in the default VRF also answers through VRF ports"
    )
    rollback_timeout: Annotated[Any, Rule(v._rollback_timeout, _SECONDS)] = Field(
        None, description="seconds, from the apply's end, for the confirmation before a rollback"
    )
    apply_timeout: Annotated[Any, Rule(v._apply_timeout, _SECONDS)] = Field(
        None, description="seconds the apply itself may run"
    )
    changes_at_once: Annotated[Any, Rule(v._changes_at_once, _HOSTS)] = Field(
        None, description="hosts of a run between their change's start and its confirmation"
    )
    interfaces: _DEVICES = Field(None, description="the host's NICs, by device name")
    vrfs: _VRFS = Field(None, description="the host's VRFs, by VRF name")


class HostKeys(LayerKeys):
    """[hosts.NAME]: one host."""

    groups: Annotated[Any, Rule(v._group_list, _NAMES)] = Field(
        None, description="the [groups.NAME] this host takes keys from, lowest first"
    )


class RolloutKeys(Table):
    """[rollout]: the run's waves."""

    waves: Annotated[Any, Rule(v._wave_sizes, _WAVES)] = Field(
        None,
        description="wave sizes, hosts or shares, the last repeating",
        examples=[[1, 3, "25%"]],
    )
    failures_allowed: Annotated[Any, Rule(v._failures_allowed, _HOSTS)] = Field(
        None, description="hosts that may fail before their change before the rollout stops"
    )


class FleetDocument(BaseModel):
    """A whole fleet file; only its JSON Schema is used (tables are checked one by one)."""

    model_config = ConfigDict(extra="forbid", title="mgmt-vrf fleet file")

    defaults: LayerKeys | None = None
    groups: dict[str, LayerKeys] | None = None
    hosts: dict[str, HostKeys]
    rollout: RolloutKeys | None = None


def json_schema() -> dict[str, Any]:
    """The fleet file's JSON Schema, for editors that check TOML against one (taplo, Even
    Better TOML: `#:schema ./fleet.schema.json` as the file's first line)."""
    return _without_null_defaults(FleetDocument.model_json_schema())


def _without_null_defaults(schema: Any) -> Any:
    # An unset key is left out of a TOML file; there is no null to write.
    if isinstance(schema, dict):
        return {
            k: _without_null_defaults(value)
            for k, value in schema.items()
            if not (k == "default" and value is None)
        }
    if isinstance(schema, list):
        return [_without_null_defaults(item) for item in schema]
    return schema


# ---------------------------------------------------------------------------------------
# Checking one table, in the fleet file's words

Loc = tuple[int | str, ...]


def check_table(
    model: type[Table], raw: Mapping[str, Any], context: Mapping[str, Any] | None = None
) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """The table's checked values by key (nested tables as dicts, wrong values INVALID) and
    its problems as (key path, message), in the order the table writes them."""
    try:
        return _plain(model.model_validate(raw, context=context), raw), []
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
    wrong = {tuple(e["loc"]) for e in errors if e["type"] in ("extra_forbidden", "missing")}
    whole_wrong = {loc[:-1] for loc in wrong if _model_at(model, loc[:-1]).whole}
    # Entries whose name is not even a string (Python host data): only the name is reported.
    unnamed = {
        loc[: loc.index("[key]")]
        for e in errors
        if e["type"] != _OUR_PROBLEM and "[key]" in (loc := tuple(e["loc"]))
    }
    problems = []
    for error in errors:
        loc = tuple(error["loc"])
        if error["type"] == _OUR_PROBLEM and any(loc[: len(w)] == w for w in whole_wrong):
            continue  # a table that is one value is checked once its keys are right
        if "[key]" not in loc and any(loc[: len(u)] == u for u in unnamed):
            continue
        problems.append((_position(raw, loc), _path(loc, error), _message(model, loc, error)))
    problems.sort(key=lambda p: p[0])
    cleaned = _without_errors(raw, errors, whole_wrong)
    again = model.model_validate(cleaned, context={**(context or {}), _NAMES_REPORTED: True})
    return _plain(again, cleaned), [(path, message) for _, path, message in problems]


def _plain(value: Any, raw: Any) -> Any:
    if isinstance(value, Table):
        fields = value.model_fields_set
        plain = {k: _plain(getattr(value, k), raw[k]) for k in raw if k in fields}
        return value.value() if value.whole else plain
    if isinstance(value, dict):
        return {name: _plain(entry, raw[name]) for name, entry in value.items()}
    if isinstance(value, list):
        return [_plain(entry, item) for entry, item in zip(value, raw, strict=True)]
    return value


def _model_at(model: type[Table], loc: Loc) -> type[Table]:
    """The table model that `loc` (a key path in a `model` table) points into; a path that
    ends on a named table or an array gives its entries' model."""
    current: Any = model
    parts = iter(loc)
    for part in parts:
        annotation = _peel(current.model_fields[str(part)].annotation)
        if get_origin(annotation) in (dict, list):
            next(parts, None)  # the entry's name or index
            annotation = _peel(get_args(annotation)[-1])
        current = annotation
    assert isinstance(current, type) and issubclass(current, Table), loc
    return current


def _peel(annotation: Any) -> Any:
    """The type inside Annotated[...] and `... | None`."""
    while True:
        if get_origin(annotation) is Annotated:
            annotation = get_args(annotation)[0]
        elif get_origin(annotation) in (Union, UnionType):
            annotation = next(a for a in get_args(annotation) if a is not type(None))
        else:
            return annotation


def _path(loc: Loc, error: Mapping[str, Any]) -> str:
    parts: list[str] = []
    if "[key]" in loc and error.get("type") != _OUR_PROBLEM:
        loc = loc[: loc.index("[key]") - 1]  # a name that is not a string: the table's
    for part in loc:
        if part == "[key]":
            continue  # a named table's name: the problem is the table's
        if isinstance(part, int):
            parts[-1] += f"[{part}]"
        else:
            parts.append(_key(part))
    at = (error.get("ctx") or {}).get("at")
    if at:
        parts.append(at)
    return _join(*parts)


def _message(model: type[Table], loc: Loc, error: Mapping[str, Any]) -> str:
    kind, got = error["type"], _describe(error["input"])
    if kind == _OUR_PROBLEM:
        return str(error["ctx"]["problem"])
    if "[key]" in loc:
        return f"every name here must be a string (as TOML writes it), got {got}"
    parent = _model_at(model, loc[:-1]) if loc else model
    key = str(loc[-1]) if loc else ""
    if kind == "extra_forbidden":
        if key == "groups" and issubclass(model, LayerKeys) and not issubclass(model, HostKeys):
            return (
                "groups can only be listed in a [hosts.NAME] table; "
                "add groups = [...] to each host instead"
            )
        known = HostKeys.known_keys() if issubclass(parent, LayerKeys) else parent.known_keys()
        return unknown_key(key, known, parent.hints)
    if kind == "missing":
        example = parent.model_fields[key].examples or [""]
        return f"missing; every route needs {key} = {_show(example[0])}"
    if kind == "dict_type" and issubclass(parent, LayerKeys):
        return f"expected tables such as [hosts.NAME.{key}.{parent.examples[key]}], got {got}"
    if kind == "list_type":
        return f"expected an array of {RouteKeys.shape} tables, got {got}"
    if kind in ("model_type", "model_attributes_type"):
        if isinstance(loc[-1], int):
            return f"expected a table {RouteKeys.shape}, got {got}"
        return f"expected a table [{_path(loc, {})}], got {got}"
    return f"{error['msg']}, got {got}"


def unknown_key(key: str, known: Iterable[str], hints: Mapping[str, str]) -> str:
    known = tuple(known)
    hint = hints.get(key.lower()) or _nearest(key, known)
    if hint:
        return f"unknown key; did you mean {hint}?"
    return "unknown key; known keys here: " + ", ".join(known)


def _position(raw: Any, loc: Loc) -> tuple[int, ...]:
    """Where `loc` is written in `raw`, as indices, so problems come in the file's order; a
    missing key sorts after the keys written."""
    position: list[int] = []
    for part in loc:
        if part == "[key]":
            position.append(-1)  # a table's name before its keys
            break
        if isinstance(raw, dict):
            keys = list(raw)
            position.append(keys.index(part) if part in raw else len(keys))
            raw = raw.get(part)  # type: ignore[call-overload]
        elif isinstance(raw, list) and isinstance(part, int):
            position.append(part)
            raw = raw[part]
        else:
            break
    return tuple(position)


_DELETE = object()


def _without_errors(raw: Mapping[str, Any], errors: Iterable[Any], whole_wrong: set[Loc]) -> Any:
    """`raw` with each wrong value replaced by INVALID and each unknown key left out."""
    edits: dict[Loc, object] = {loc: INVALID for loc in whole_wrong}
    for error in errors:
        loc = tuple(error["loc"])
        if error["type"] == "extra_forbidden":
            edits.setdefault(loc, _DELETE)
        elif error["type"] == _OUR_PROBLEM and "[key]" in loc:
            continue  # a wrong name: the table is checked all the same
        elif "[key]" in loc:
            edits[loc[: loc.index("[key]")]] = _DELETE  # not even a string: nothing to check
        elif error["type"] == _OUR_PROBLEM and (error.get("ctx") or {}).get("at"):
            edits[loc] = INVALID  # a table that is wrong as a whole
        elif error["type"] != "missing":
            edits[loc] = INVALID
    result: Any = raw
    # Deepest first: an edit inside a table that is then replaced as a whole is moot.
    for loc in sorted(edits, key=len, reverse=True):
        result = _edited(result, loc, edits[loc])
    return result


def _edited(raw: Any, loc: Loc, new: object) -> Any:
    if not loc:
        return new
    if isinstance(raw, dict):
        copy = dict(raw)
        if len(loc) == 1 and new is _DELETE:
            copy.pop(loc[0], None)
        elif loc[0] in copy:
            copy[loc[0]] = _edited(copy[loc[0]], loc[1:], new)
        return copy
    if isinstance(raw, list) and isinstance(loc[0], int):
        items = list(raw)
        items[loc[0]] = _edited(items[loc[0]], loc[1:], new)
        return items
    return raw


if __name__ == "__main__":
    json.dump(json_schema(), sys.stdout, indent=2)
    sys.stdout.write("\n")
