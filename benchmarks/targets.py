"""The performance targets, read from one place: the "Performance targets" table of DESIGN.md.

DESIGN.md governs the project and lives beside the repository (``<repo>/../shared/DESIGN.md``; CI puts a
copy there), or wherever ``EVENTSOURCE_DESIGN_MD`` points. No backend file carries a target: the
harness parses this table, records what it used in its JSON, and the renderer shows the JSON's record.
When the file is not there the harness still runs and reports "no targets" instead of verdicts.

A target is a :class:`Check`: the library's contestant of a row against one other contestant of the
same row (``raw`` unless the cell names another, e.g. ``aiosqlite``), a comparison and a bound.
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DESIGN_MD = REPO.parent / "shared" / "DESIGN.md"

COLUMNS = {"postgresql": "postgres", "sqlite": "sqlite", "nats": "nats", "kafka": "kafka"}
"""DESIGN.md column heading (lower case, first word) -> backend module name."""

ROWS = (
    # (start of the DESIGN.md row, workload key); first match wins, so the sync rows come first
    ("sync api single append", "sync_append_p50"),
    ("sync api read 1,000", "sync_read_1000"),
    ("single append latency", "append_p50"),
    ("batch of 100", "batch_100"),
    ("read 1,000-event stream", "read_1000"),
    ("8 concurrent writers", "writers_8"),
    ("read 100 events from a 1m", "big_store_read_100"),
    ("live subscription delivery p50", "live_p50"),
    ("catch-up subscription", "catch_up"),
)
"""Rows the harness measures; the others are listed as not measured."""

ABSOLUTE = "absolute"
"""``Check.against`` of a bound in milliseconds (``<= 5 ms``): the library's own figure, not a ratio."""

AGAINST = {"catch_up": "read_all"}
"""Rows whose ``Nx`` bound compares against a contestant other than ``raw``."""

PEER_RULE = "eventsourcing"
"""DESIGN.md: on every row where this contestant ran, the library must be ahead of it."""

_CLAUSE = re.compile(r"(<=|>=)\s*([0-9]*\.?[0-9]+)\s*x\b(.*)", re.IGNORECASE)
_MS = re.compile(r"(<=|>=)\s*([0-9]*\.?[0-9]+)\s*ms\b", re.IGNORECASE)


@dataclass(frozen=True)
class Check:
    """``lib / against`` must be ``op`` ``bound`` (``<=`` for latencies and ratios of times, ``>=`` for rates)."""

    against: str
    op: str
    bound: float
    text: str

    def passes(self, ratio: float) -> bool:
        """Whether ``ratio`` (library / ``against``) meets the check."""
        return ratio <= self.bound if self.op == "<=" else ratio >= self.bound

    def label(self) -> str:
        """Short form for tables, e.g. ``<=1.3`` or ``<=1 aiosqlite``."""
        who = "" if self.against == "raw" else f" {self.against}"
        return f"{self.op}{self.bound:g}{who}"


@dataclass
class Targets:
    """What the harness compares against: per backend, per workload, a list of checks."""

    source: str | None
    checks: dict[str, dict[str, list[Check]]]
    not_measured: list[str]

    @property
    def found(self) -> bool:
        """False when DESIGN.md was not found (the run then reports "no targets")."""
        return self.source is not None

    def for_row(self, backend: str, workload: str) -> list[Check]:
        """The checks of one row (an empty list: no target)."""
        return list(self.checks.get(backend, {}).get(workload, []))

    def to_json(self) -> dict[str, Any]:
        """Plain data for the report."""
        return {
            "source": self.source,
            "peer_rule": PEER_RULE,
            "not_measured": self.not_measured,
            "checks": {b: {w: [asdict(c) for c in cs] for w, cs in ws.items()} for b, ws in self.checks.items()},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Targets:
        """The inverse of :meth:`to_json`."""
        checks = {b: {w: [Check(**c) for c in cs] for w, cs in ws.items()} for b, ws in data["checks"].items()}
        return cls(data.get("source"), checks, list(data.get("not_measured", [])))


def design_path() -> Path:
    """``$EVENTSOURCE_DESIGN_MD`` or ``<repo>/../shared/DESIGN.md``."""
    env = os.environ.get("EVENTSOURCE_DESIGN_MD")
    return Path(env) if env else DEFAULT_DESIGN_MD


def parse_cell(cell: str) -> list[Check]:
    """``"<= 1.3x raw on a dedicated writer thread; <= 1.0x aiosqlite"`` -> two checks; ``n/a`` -> none."""
    out = []
    for clause in cell.split(";"):
        m = _CLAUSE.search(clause.strip())
        if m is None:
            ms = _MS.search(clause.strip())
            if ms is not None:
                out.append(Check(ABSOLUTE, ms.group(1), float(ms.group(2)), clause.strip()))
            continue
        rest = m.group(3).strip().lower()
        against = "aiosqlite" if rest.startswith("aiosqlite") else "raw"
        out.append(Check(against, m.group(1), float(m.group(2)), clause.strip()))
    return out


def _against(key: str, found: list[Check]) -> list[Check]:
    """``found`` with ``raw`` replaced by the row's own baseline (:data:`AGAINST`)."""
    if key not in AGAINST:
        return found
    return [Check(AGAINST[key], c.op, c.bound, c.text) if c.against == "raw" else c for c in found]


def parse(text: str, source: str) -> Targets:
    """The checks of the "Performance targets" table in ``text``."""
    section = text.split("## Performance targets", 1)
    if len(section) < 2:
        msg = f"{source}: no 'Performance targets' section"
        raise ValueError(msg)
    lines = [ln.strip() for ln in section[1].splitlines()]
    table = []
    for ln in lines:
        if ln.startswith("|"):
            table.append([c.strip() for c in ln.strip("|").split("|")])
        elif table:
            break
    header, rows = table[0], [r for r in table[2:] if r]
    backends = [COLUMNS.get(h.lower().split()[0]) if h else None for h in header]
    checks: dict[str, dict[str, list[Check]]] = {}
    not_measured = []
    for row in rows:
        name = row[0].lower()
        key = next((k for start, k in ROWS if name.startswith(start)), None)
        if key is None:
            not_measured.append(row[0])
            continue
        for backend, cell in zip(backends[1:], row[1:], strict=False):
            if backend is None:
                continue
            found = _against(key, parse_cell(cell))
            if found:
                checks.setdefault(backend, {})[key] = found
    return Targets(source, checks, not_measured)


def load(path: Path | None = None) -> Targets:
    """Parse DESIGN.md at ``path`` (default :func:`design_path`); no file: no targets."""
    path = path or design_path()
    if not path.is_file():
        return Targets(None, {}, [])
    return parse(path.read_text(encoding="utf-8"), str(path))
