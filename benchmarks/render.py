"""Render the benchmark tables of README.md and each plugin README from the harness's committed JSON.

    python benchmarks/render.py            # rewrite every marked block from benchmarks/report/*.json
    python benchmarks/render.py --check    # exit 1 when a committed block is not what this renders

A block sits between ``<!-- benchmarks:begin STORE -->`` and ``<!-- benchmarks:end -->`` (``STORE`` is
a backend name, or ``all`` for every store in a fixed order). Figures are never copied by hand: each
store's table comes from the newest report in ``benchmarks/report/`` holding that store, and says when,
on what machine, against which server and with how many rounds it was measured, and which DESIGN.md
targets that run used (recorded in the JSON, so the table does not change when DESIGN.md does).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
REPORTS = ROOT / "benchmarks" / "report"
ORDER = ("sqlite", "postgres", "nats", "kafka", "memory")
TITLES = {"sqlite": "SQLite", "postgres": "PostgreSQL", "nats": "NATS", "kafka": "Kafka", "memory": "memory"}
BLOCK = re.compile(r"(<!-- benchmarks:begin (\w+) -->\n)(.*?)(<!-- benchmarks:end -->)", re.DOTALL)


def readmes() -> list[Path]:
    """Every README this command owns blocks in."""
    return [ROOT / "README.md", *sorted((ROOT / "plugins").glob("eventsource-*/README.md"))]


def _server(server: str | None) -> str | None:
    """Early reports wrote nats-py's repr (``nats-server <nats server v2.9.10>``): shown as ``nats-server 2.9.10``."""
    if server is None:
        return None
    return re.sub(r"<nats server v([\w.-]+)>", r"\1", server)


def _server_key(server: str | None) -> str:
    """``nats-server 2.9.10`` -> ``nats-server 2.9``: one table per store and server line."""
    if not server:
        return ""
    m = re.match(r"(.*?)(\d+)\.(\d+)", server)
    return f"{m.group(1)}{m.group(2)}.{m.group(3)}" if m else server


def _partial(report: dict[str, Any]) -> bool:
    """A run of some rows only (``--only``): shown under the full run's table, never instead of it."""
    return bool(report.get("options", {}).get("only"))


def load_reports(folder: Path = REPORTS, *, partial: bool = False) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """Per store: (report file name, report), the newest report per server line holding the store.

    Full runs by default; ``partial=True``: the runs of some rows only (``--only``), the newest per store,
    server line and set of rows.
    """
    found: dict[tuple[str, ...], tuple[str, dict[str, Any]]] = {}
    every = [(path, json.loads(path.read_text(encoding="utf-8"))) for path in sorted(folder.glob("*.json"))]
    history = _verdicts(report for _, report in every)
    for path, report in every:
        report["_verdicts"] = history  # (not written anywhere: what the verdict cells count)
        if _partial(report) != partial:
            continue
        for store, b in report["backends"].items():
            key: tuple[str, ...] = (store, _server_key(_server(b.get("server"))))
            if partial:
                key += tuple(sorted(b["workloads"]))
            if key not in found or report["created_at"] > found[key][1]["created_at"]:
                found[key] = (path.name, report)
    out: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for (store, *_), item in sorted(found.items()):
        out.setdefault(store, []).append(item)
    return out


def _verdicts(reports: Any) -> dict[tuple[str, str, str], list[bool]]:
    """Per (store, server line, row): the verdict of every committed run of it that had one."""
    out: dict[tuple[str, str, str], list[bool]] = {}
    for report in reports:
        for store, b in report["backends"].items():
            line = _server_key(_server(b.get("server")))
            for key, row in b["workloads"].items():
                if row.get("passed") is not None:
                    out.setdefault((store, line, key), []).append(bool(row["passed"]))
    return out


def _verdict_cell(store: str, report: dict[str, Any], key: str, passed: bool | None) -> str:
    """``✓`` / ``✗ miss``, and how many committed runs of the row passed when they did not all agree."""
    if passed is None:
        return ""
    cell = "✓" if passed else "✗ miss"
    line = _server_key(_server(report["backends"][store].get("server")))
    runs = report.get("_verdicts", {}).get((store, line, key), [])
    if len(set(runs)) > 1:
        cell += f" (passed in {sum(runs)} of {len(runs)} runs)"
    return cell


def _num(v: float | None, unit: str) -> str:
    if v is None:
        return "-"
    return f"{v:.3f} ms" if unit == "ms" else f"{v:,.0f}/s"


def _check_label(c: dict[str, Any]) -> str:
    return _bound_label(c) + (f" (not measured: {c['unmeasured']})" if c.get("unmeasured") else "")


def _bound_label(c: dict[str, Any]) -> str:
    if c["against"] == "eventsourcing" and c["bound"] == 1.0 and c["op"] in ("<", ">"):
        return "ahead of eventsourcing"
    if c["against"] == "absolute":
        return f"{c['op']} {c['bound']:g} ms"
    who = "" if c["against"] == "raw" else f" {c['against']}"
    return f"{c['op']} {c['bound']:g}x{who}"


def store_table(store: str, file: str, report: dict[str, Any], skip: frozenset[str] = frozenset()) -> str:
    """The markdown table of one store, with the run's conditions above it (rows in ``skip`` left out)."""
    b = report["backends"][store]
    m, o = report["machine"], report["options"]
    rows = {k: r for k, r in b["workloads"].items() if k not in skip}
    sides: list[str] = []
    for r in rows.values():
        sides += [s for s in r["values"] if s != "lib" and s not in sides]
    targets_from = report["targets"]["source"]
    load = m.get("loadavg_at_end")
    pk = m.get("packages", {})
    head = (
        f"**{TITLES.get(store, store)}** ({_server(b.get('server')) or 'in-process'}): "
        f"run written {report['created_at'][:16]}Z, "
        f"`benchmarks/report/{file}`; {m['platform']}, {m['cpus']} CPUs, load average at the end "
        f"{', '.join(str(x) for x in load) if load else 'unknown'}; Python {m['python']}, eventsource "
        f"{pk.get('eventsource')}, eventsourcing {pk.get('eventsourcing') or '(not installed)'}, aiosqlite "
        f"{pk.get('aiosqlite') or '(not installed)'}; medians of {o['repetitions']} rounds, every contestant of "
        f"a row in the same rounds, order rotating. "
        + (
            f"Targets: DESIGN.md as of that run ({Path(targets_from).name})."
            if targets_from
            else "No targets (DESIGN.md not found)."
        )
    )
    notes = f"Contestants: {b['notes']}." if b.get("notes") else ""
    cols = ["workload", "lib", *sides, "target", ""]
    again = ", ".join(f"`{k}`" for k in b["workloads"] if k in skip)
    if again:
        notes += f" Measured again in a later run (shown there, not here): {again}."
    lines = [head, "", notes.strip(), "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for key, r in rows.items():
        cells = [r["title"], _num(r["lib"], r["unit"])]
        for s in sides:
            if s in r["values"]:
                cells.append(f"{_num(r['values'][s], r['unit'])} ({r['ratios'][s]:.2f}x)")
            else:
                cells.append("")
        checks = r.get("checks", [])
        cells.append("; ".join(_check_label(c) for c in checks) if checks else ("-" if targets_from else "no targets"))
        cells.append(_verdict_cell(store, report, key, r.get("passed")))
        if r.get("note"):
            cells[0] += f" ({r['note']})"
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        "In brackets: the median over rounds of lib / that column in the same round (paired, so it can differ "
        "from the ratio of the two medians on a loaded machine); latency rows: lower is better, events/s rows: higher. "
        "A verdict that not every committed run of its row (same store and server line, any code version) shared "
        "says how many passed."
    )
    return "\n".join(ln for ln in lines if ln is not None) + "\n"


def _superseded(store: str, report: dict[str, Any], every: list[tuple[str, dict[str, Any]]]) -> frozenset[str]:
    """The rows of ``report`` that a newer run of the same store and server line measured again."""
    server = _server_key(_server(report["backends"][store].get("server")))
    newer: set[str] = set()
    for _, other in every:
        b = other["backends"][store]
        if other["created_at"] > report["created_at"] and _server_key(_server(b.get("server"))) == server:
            newer.update(b["workloads"])
    return frozenset(k for k in report["backends"][store]["workloads"] if k in newer)


def render_block(
    which: str,
    reports: dict[str, list[tuple[str, dict[str, Any]]]],
    partials: dict[str, list[tuple[str, dict[str, Any]]]] | None = None,
) -> str:
    """The body of one marked block."""
    partials = partials if partials is not None else load_reports(REPORTS, partial=True)
    stores = [s for s in ORDER if s in reports or s in partials] if which == "all" else [which]
    parts = []
    for s in stores:
        every = [*reports.get(s, []), *partials.get(s, [])]
        if s not in reports:
            parts.append(f"(no report in benchmarks/report/ holds {s} yet)\n")
        else:
            parts.extend(store_table(s, *item, skip=_superseded(s, item[1], every)) for item in reports[s])
        for file, report in partials.get(s, []):
            skip = _superseded(s, report, every)
            shown = [k for k in report["backends"][s]["workloads"] if k not in skip]
            if not shown:
                continue  # every row of this run was measured again later
            rows = ", ".join(f"`{k}`" for k in shown)
            parts.append(f"Measured in a run of these rows only ({rows}):\n\n" + store_table(s, file, report, skip))
    return (
        "<!-- generated by `python benchmarks/render.py` from benchmarks/report/*.json; do not edit -->\n"
        + "\n".join(parts)
    )


def render_text(
    text: str,
    reports: dict[str, list[tuple[str, dict[str, Any]]]],
    partials: dict[str, list[tuple[str, dict[str, Any]]]] | None = None,
) -> str:
    """``text`` with every marked block rendered (``partials``: default, those of ``benchmarks/report/``)."""
    partials = partials if partials is not None else load_reports(REPORTS, partial=True)
    return BLOCK.sub(lambda mt: mt.group(1) + render_block(mt.group(2), reports, partials) + mt.group(4), text)


def main(argv: list[str] | None = None) -> int:
    """Rewrite the blocks, or (``--check``) report those that differ."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 when a committed block is stale")
    ap.add_argument("--reports", type=Path, default=REPORTS, help="folder of harness JSON reports")
    args = ap.parse_args(argv)
    reports = load_reports(args.reports)
    partials = load_reports(args.reports, partial=True)
    stale = []
    for path in readmes():
        text = path.read_text(encoding="utf-8")
        new = render_text(text, reports, partials)
        if new != text:
            stale.append(path)
            if not args.check:
                path.write_text(new, encoding="utf-8")
    if args.check and stale:
        print("benchmark tables not produced by `python benchmarks/render.py` from the committed reports:")
        for p in stale:
            print(f"  {p.relative_to(ROOT)}")
        return 1
    if not args.check:
        print(f"rendered {len(stale)} file(s)" if stale else "already up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
