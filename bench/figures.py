"""The fleet benchmark's pure part: the runs, what their output says, targets and tables.

Nothing here touches the lab or starts a process; `bench.fleet` does, and hands over
`Measurement`s. Kept apart so the parsing and the verdicts are unit-tested without a lab.
"""

from __future__ import annotations

import re
import shlex
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

# The order the runs are made in: the first converge needs the fresh hosts the lab boots,
# the later runs need the converged ones it leaves.
KINDS: tuple[tuple[str, str], ...] = (
    ("floor", "floor (exec -- true)"),
    ("first", "first converge"),
    ("nochange", "no-change converge"),
    ("dry", "dry run"),
    ("report", "drift report"),
)
TITLES = dict(KINDS)

NOCHANGE_OVER_FLOOR = 1.3
NOCHANGE_COMMANDS = 2
FIRST_COMMANDS = 6


def command(kind: str, parallel: int) -> list[str]:
    """The command of a run, as a user types it from the checkout root."""
    # The same --parallel for every run, so their ratios compare like with like.
    width = ["--parallel", str(parallel)] if parallel else []
    pyinfra = ["pyinfra", "-y", *width]
    if kind == "floor":
        return [*pyinfra, "inventory.py", "exec", "--", "true"]
    if kind in ("first", "nochange"):
        return [*pyinfra, "inventory.py", "deploy.py"]
    if kind == "dry":
        # Without -y: -y skips change detection, which is what a dry run is for.
        return [pyinfra[0], "--dry", *pyinfra[2:], "inventory.py", "deploy.py"]
    if kind == "report":
        return ["python", "-m", "mgmt_vrf_report", *width]
    raise ValueError(f"unknown run {kind!r}")


@dataclass(frozen=True)
class Measurement:
    kind: str
    hosts: tuple[str, ...]
    seconds: float
    exit_code: int
    # ru_maxrss of the run's process (pyinfra or the report): the controller's peak.
    peak_rss_kib: int
    # Session requests per host as the hosts logged them, every host of the lab included.
    counts: Mapping[str, int]
    outcome: str
    # 1-minute load average as the run started: the machine is shared, this says how much.
    load: float = 0.0
    # Hosts the run reported ROLLED BACK: on the lab's good fleet file, every one is false.
    rolled_back: int = 0

    @property
    def commands(self) -> tuple[int, int]:
        """(min, max) remote commands per host of this run; a host not heard from counts 0."""
        per_host = [self.counts.get(h, 0) for h in self.hosts]
        return (min(per_host), max(per_host)) if per_host else (0, 0)

    @property
    def stray(self) -> int:
        """Session requests on hosts outside the run: someone else used the lab meanwhile."""
        return sum(n for h, n in self.counts.items() if h not in self.hosts)

    @property
    def silent_hosts(self) -> list[str]:
        return [h for h in self.hosts if self.counts.get(h, 0) == 0]


@dataclass(frozen=True)
class Figure:
    """One kind of run at one fleet size, over its repeats (the first converge has one)."""

    kind: str
    samples: tuple[Measurement, ...]

    @property
    def seconds(self) -> float:
        """The median wall time: on a shared machine a single run can be far off."""
        return statistics.median(m.seconds for m in self.samples)

    @property
    def spread(self) -> tuple[float, float]:
        times = [m.seconds for m in self.samples]
        return min(times), max(times)

    @property
    def commands(self) -> tuple[int, int]:
        return (
            min(m.commands[0] for m in self.samples),
            max(m.commands[1] for m in self.samples),
        )

    @property
    def peak_rss_kib(self) -> int:
        return max(m.peak_rss_kib for m in self.samples)

    @property
    def outcome(self) -> str:
        return "; ".join(dict.fromkeys(m.outcome for m in self.samples))

    @property
    def exit_codes(self) -> str:
        return ",".join(dict.fromkeys(str(m.exit_code) for m in self.samples))

    @property
    def load(self) -> float:
        return statistics.mean(m.load for m in self.samples)

    @property
    def rolled_back(self) -> int:
        return max(m.rolled_back for m in self.samples)


Results = Mapping[int, Mapping[str, Figure]]


def fleet_subset(text: str, names: Sequence[str]) -> str:
    """The lab's fleet.toml cut to some hosts: `[defaults]` kept, other hosts' tables dropped."""
    keep = set(names)
    section = re.compile(r"^\[hosts\.([^.\]\s]+)[.\]]")
    out: list[str] = []
    on = True
    for line in text.splitlines():
        if line.startswith("["):
            m = section.match(line)
            on = m is None or m.group(1) in keep
        if on:
            out.append(line)
    return "\n".join(out).rstrip("\n") + "\n"


def with_defaults(text: str, **keys: int | None) -> str:
    """The fleet file with these keys added to its [defaults] (those given)."""
    lines = "".join(f"{key} = {value}\n" for key, value in keys.items() if value is not None)
    if not lines:
        return text
    head, sep, rest = text.partition("[defaults]\n")
    if not sep:
        return f"[defaults]\n{lines}\n{text}"
    return f"{head}{sep}{lines}{rest}"


def _number(word: str) -> int:
    return 0 if word == "-" else int(word)


def grand_total(output: str) -> tuple[int, int, int, int] | None:
    """(hosts, success, error, no change) from the results table of a pyinfra run."""
    found = re.findall(r"^\s*Grand total\s+(\d+)\s+(\S+)\s+(\S+)\s+(\S+)\s*$", output, re.M)
    if not found:
        return None
    hosts, success, error, nochange = found[-1]
    return int(hosts), _number(success), _number(error), _number(nochange)


def dry_changes(output: str) -> int | None:
    """Hosts with a change in the busiest operation of a dry run's "Detected changes"."""
    lines = output.splitlines()
    for i, line in enumerate(lines):
        if re.match(r"^\s*Operation\s+Change\s+Conditional Change\s*$", line):
            most = 0
            for row in lines[i + 1 :]:
                cells = re.split(r"\s{2,}", row.strip())
                if len(cells) < 3:
                    break
                most = max(most, _number(cells[-2]) + _number(cells[-1]))
            return most
    return None


def report_totals(output: str) -> str | None:
    """The drift report's totals line without its host count: "3 converged, 0 drifted, ..."."""
    found = re.findall(r"^\d+ hosts?: (.+)$", output, re.M)
    return found[-1].strip() if found else None


_ROLLED_BACK = re.compile(r"^\s*\[([^\]]+)\] mgmt-vrf: ROLLED BACK", re.M)


def rolled_back(output: str) -> int:
    """How many hosts a deploy run reported as rolled back."""
    return len(set(_ROLLED_BACK.findall(output)))


def outcome(kind: str, output: str) -> str:
    """What a run says it did, in a few words; "?" when its output has no summary."""
    if kind == "dry":
        changes = dry_changes(output)
        return "?" if changes is None else f"{changes} would change"
    if kind == "report":
        return report_totals(output) or "?"
    total = grand_total(output)
    if total is None:
        return "?"
    hosts, success, error, nochange = total
    if kind == "floor":
        text = f"{success}/{hosts} ok"
    else:
        text = f"{success} changed, {nochange} unchanged"
    text += f", {error} failed" if error else ""
    undone = rolled_back(output)
    return text + (f" ({undone} rolled back)" if undone else "")


@dataclass(frozen=True)
class Target:
    text: str
    met: bool | None  # None: not measured in this run
    detail: str


def _ratio(a: float, b: float) -> float:
    return a / b if b else float("inf")


def targets(results: Results, main: int) -> list[Target]:
    """The issue's targets, judged on the main fleet size (and memory over every size)."""
    runs = results[main]
    floor, first, nochange = runs["floor"], runs["first"], runs["nochange"]
    dry, report = runs["dry"], runs["report"]
    over = _ratio(nochange.seconds, floor.seconds)
    out = [
        Target(
            f"no-change converge <= {NOCHANGE_OVER_FLOOR} x floor",
            over <= NOCHANGE_OVER_FLOOR,
            f"{nochange.seconds:.1f} s / {floor.seconds:.1f} s = {over:.2f} x",
        ),
        Target(
            f"no-change converge <= {NOCHANGE_COMMANDS} remote commands per host",
            nochange.commands[1] <= NOCHANGE_COMMANDS,
            f"max {nochange.commands[1]} per host",
        ),
        Target(
            f"first converge <= {FIRST_COMMANDS} remote commands per host",
            first.commands[1] <= FIRST_COMMANDS,
            f"max {first.commands[1]} per host",
        ),
        Target(
            "dry run no slower than the no-change converge",
            dry.seconds <= nochange.seconds,
            f"{dry.seconds:.1f} s vs {nochange.seconds:.1f} s",
        ),
        Target(
            "drift report no slower than the no-change converge",
            report.seconds <= nochange.seconds,
            f"{report.seconds:.1f} s vs {nochange.seconds:.1f} s",
        ),
    ]
    out.append(
        Target(
            "first converge changes every host and rolls none back",
            first.rolled_back == 0 and all(s.exit_code == 0 for s in first.samples),
            f"{first.outcome}, exit {first.exit_codes}",
        )
    )
    out.append(memory_target(results))
    return out


def memory_target(results: Results) -> Target:
    """Peak RSS grows no faster than the host count, run by run, smallest size to largest.

    With a fixed cost (the interpreter, pyinfra) and a cost per host, memory is linear in
    hosts exactly when it grows no faster than the host count does; two sizes cannot tell
    linear from slightly worse, but they do catch a per-host cost that grows with the fleet.
    """
    text = "controller memory grows no worse than linearly with hosts"
    sizes = sorted(results)
    if len(sizes) < 2:
        return Target(text, None, "one fleet size only; add --also 10")
    small, large = sizes[0], sizes[-1]
    worst = ""
    met = True
    for kind, _ in KINDS:
        a, b = results[small].get(kind), results[large].get(kind)
        if a is None or b is None:
            continue
        growth = _ratio(b.peak_rss_kib, a.peak_rss_kib)
        if growth > large / small:
            met = False
            worst += f" {kind} x{growth:.2f};"
    detail = f"{small} -> {large} hosts (x{large / small:.1f}): " + (
        f"grew faster for{worst.rstrip(';')}" if worst else "every run within"
    )
    return Target(text, met, detail)


def problems(results: Results) -> list[str]:
    """What makes a figure untrustworthy: failed runs, hosts not reached, others on the lab."""
    out = []
    for size, runs in results.items():
        for kind, figure in runs.items():
            for i, m in enumerate(figure.samples, 1):
                where = f"{size} hosts, {TITLES[kind]}"
                if len(figure.samples) > 1:
                    where += f" #{i}"
                out += _sample_problems(where, m)
    return out


def _sample_problems(where: str, m: Measurement) -> list[str]:
    out = []
    if m.exit_code != 0:
        out.append(f"{where}: exited {m.exit_code}")
    if m.silent_hosts:
        shown = ", ".join(m.silent_hosts[:5]) + (" ..." if len(m.silent_hosts) > 5 else "")
        out.append(f"{where}: no command reached {len(m.silent_hosts)} host(s): {shown}")
    if m.stray:
        out.append(f"{where}: {m.stray} session(s) on hosts outside the run")
    return out


def _mib(kib: int) -> str:
    return f"{kib / 1024:.1f}"


def _range(pair: tuple[int, int]) -> str:
    low, high = pair
    return str(low) if low == high else f"{low}-{high}"


def run_table(runs: Mapping[str, Figure], parallel: int) -> list[str]:
    floor = runs["floor"].seconds
    out = [
        "| run | command | runs | wall s | spread s | x floor | commands/host | peak RSS MiB "
        "| exit | outcome | load |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|---|--:|",
    ]
    for kind, title in KINDS:
        f = runs.get(kind)
        if f is None:
            continue
        low, high = f.spread
        out.append(
            f"| {title} | `{shlex.join(command(kind, parallel))}` | {len(f.samples)} "
            f"| {f.seconds:.1f} | {low:.1f}-{high:.1f} | {_ratio(f.seconds, floor):.2f} "
            f"| {_range(f.commands)} | {_mib(f.peak_rss_kib)} | {f.exit_codes} | {f.outcome} "
            f"| {f.load:.1f} |"
        )
    return out


def memory_table(results: Results) -> list[str]:
    sizes = sorted(results)
    if len(sizes) < 2:
        return []
    small, large = sizes[0], sizes[-1]
    out = [
        f"| run | {' | '.join(f'peak RSS MiB, {s} hosts' for s in sizes)} "
        f"| growth {small}->{large} | per extra host MiB |",
        "|---|" + "--:|" * (len(sizes) + 2),
    ]
    for kind, title in KINDS:
        if not all(kind in results[s] for s in sizes):
            continue
        a, b = results[small][kind].peak_rss_kib, results[large][kind].peak_rss_kib
        per_host = (b - a) / 1024 / (large - small)
        cells = " | ".join(_mib(results[s][kind].peak_rss_kib) for s in sizes)
        out.append(f"| {title} | {cells} | x{_ratio(b, a):.2f} | {per_host:.2f} |")
    return out


@dataclass(frozen=True)
class Meta:
    command: str
    when: str
    machine: str
    lab: str
    parallel: int


def render(results: Results, main: int, meta: Meta) -> str:
    """The whole report in Markdown: what was run, the tables, the targets, the caveats."""
    out = [
        f"Measured {meta.when} on {meta.machine}; lab: {meta.lab}.",
        "",
        "```sh",
        meta.command,
        "```",
        "",
    ]
    for size in [main] + sorted(s for s in results if s != main):
        out += [f"**{size} hosts**", "", *run_table(results[size], meta.parallel), ""]
    memory = memory_table(results)
    if memory:
        out += ["**Controller peak memory**", "", *memory, ""]
    out += [f"**Targets ({main} hosts)**", ""]
    for t in targets(results, main):
        mark = "not measured" if t.met is None else ("met" if t.met else "MISSED")
        out.append(f"- {mark}: {t.text} ({t.detail})")
    trouble = problems(results)
    if trouble:
        out += ["", "**Problems (figures above may not be comparable)**", ""]
        out += [f"- {p}" for p in trouble]
    return "\n".join(out) + "\n"
