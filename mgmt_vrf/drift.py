"""The fleet drift report: one verdict per host, totals, JSON and an exit code for monitoring.

Pure: the differences are read off the same `Plan` the deploy would execute, so the report
and `pyinfra inventory.py deploy.py --dry` cannot disagree on which hosts drifted. Each
planned change already says why it is needed (a step's `what`, a file's `why`); this module
only groups them into one sentence per difference.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .host_commands import DeleteRoute
from .plan import Plan, RemoveFile, RunCommand, WriteFile
from .profile_text import changed_keys

Status = Literal["converged", "drifted", "unreachable", "refused", "error"]
STATUSES: tuple[Status, ...] = ("converged", "drifted", "unreachable", "refused", "error")

EXIT_CONVERGED = 0
EXIT_DRIFT = 1
EXIT_TROUBLE = 2  # unreachable, refused or failed: the report cannot vouch for the host


@dataclass(frozen=True)
class HostReport:
    host: str
    status: Status
    differences: tuple[str, ...] = field(default=())
    message: str = ""  # why a host is unreachable, refused or failed

    def line(self, width: int = 0) -> str:
        head = f"{self.host:<{width}}  {self.status}"
        if self.status == "drifted":
            return f"{head}: " + "; ".join(self.differences)
        if self.message:
            return f"{head}: {self.message}"
        return head

    def to_json(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "status": self.status,
            "differences": list(self.differences),
            "message": self.message,
        }


def differences(plan: Plan) -> list[str]:
    """What differs on the host, in plan order, one sentence per difference."""
    found: list[str] = []
    for change in plan.changes:
        if isinstance(change, RunCommand):
            command = change.command
            if command.follows_a_file:
                continue
            # The step's sentence names the kind of stray route, not which one, and a host
            # can have several: the route itself is added.
            if isinstance(command, DeleteRoute):
                sentence = f"{change.why}: {command.shown}"
            else:
                sentence = change.why
        elif isinstance(change, WriteFile):
            name = posixpath.basename(change.path)
            sentence = f"{name} missing" if change.old is None else f"{name} edited"
            keys = changed_keys(change.path, change.old, change.content)
            if keys:
                sentence += ": " + ", ".join(keys)
        elif isinstance(change, RemoveFile):
            sentence = f"{posixpath.basename(change.path)} present: {change.why}"
        # A step with several commands (delete and re-add a VRF) is still one difference.
        if sentence not in found:
            found.append(sentence)
    return found


def from_plan(plan: Plan, host: str | None = None) -> HostReport:
    """`host` is the inventory's name when it differs from the fleet's (`@fake/alma01`)."""
    name = host or plan.host
    if plan.converged:
        return HostReport(name, "converged")
    return HostReport(name, "drifted", tuple(differences(plan)))


def refused(host: str, problems: Sequence[str]) -> HostReport:
    return HostReport(host, "refused", message="; ".join(problems))


def unreachable(host: str, reason: str) -> HostReport:
    return HostReport(host, "unreachable", message=reason)


def failed(host: str, reason: str) -> HostReport:
    return HostReport(host, "error", message=reason)


def totals(reports: Iterable[HostReport]) -> dict[str, int]:
    counts: dict[str, int] = dict.fromkeys(STATUSES, 0)
    for report in reports:
        counts[report.status] += 1
    return counts


def exit_code(reports: Sequence[HostReport]) -> int:
    counts = totals(reports)
    if counts["unreachable"] or counts["refused"] or counts["error"]:
        return EXIT_TROUBLE
    if counts["drifted"]:
        return EXIT_DRIFT
    return EXIT_CONVERGED


def render_text(reports: Sequence[HostReport]) -> list[str]:
    width = max((len(r.host) for r in reports), default=0)
    lines = [r.line(width) for r in reports]
    counts = totals(reports)
    noun = "host" if len(reports) == 1 else "hosts"
    summary = ", ".join(f"{counts[s]} {s}" for s in STATUSES if counts[s] or s != "error")
    lines.append(f"{len(reports)} {noun}: {summary}")
    return lines


def render_json(reports: Sequence[HostReport]) -> dict[str, Any]:
    return {
        "hosts": [r.to_json() for r in reports],
        "totals": totals(reports),
        "exit_code": exit_code(reports),
    }
