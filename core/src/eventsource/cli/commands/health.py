"""``eventsource health``: whether every configured store answers; exit 0 when all do, 5 otherwise.

An unreachable store is reported as unhealthy like any other (a status per store, a JSON object with
``--json``), not raised as an error. A store that answers but runs with a setting that can lose
acknowledged writes, or with a part failing (a fault), is ``degraded``, its risks and faults listed;
``--strict`` exits 7 on it.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from eventsource.cli.exitcodes import EXIT_DEGRADED, EXIT_OK, EXIT_UNAVAILABLE
from eventsource.cli.session import connect_hint

if TYPE_CHECKING:
    from eventsource.cli.errors import StoreContextError
    from eventsource.cli.parser import Commands
    from eventsource.cli.session import Session


def register(commands: Commands) -> None:
    """Add the ``health`` command."""
    p = commands.add("health", "check that the store answers (exit 5 if not) and audit its durability", health)
    p.add_argument(
        "--strict",
        action="store_true",
        help="also exit 7 when a store is degraded: a setting read from it can lose acknowledged writes, or a "
        "part of it fails",
    )


def health(session: Session) -> int:
    """Connect and ask every store; a store that cannot be reached is one unhealthy row."""
    return session.run(_health(session))


async def _health(session: Session) -> int:
    from eventsource.model import HealthStatus

    down: dict[str, StoreContextError] = {}
    manager = await session.connect(unreachable=down, existing=True)
    try:
        statuses = await manager.health_check() if manager.list_providers() else {}
        urls = {name: manager.get_provider(name).display_url or "" for name in manager.list_providers()}
    finally:
        await manager.close()
    configured = session.cfg.providers if session.cfg is not None else {}
    for name, e in down.items():  # a store that cannot be connected is one unhealthy row, under its own name
        statuses[name] = HealthStatus(healthy=False, provider=name, message=session.scrub(str(e.cause)))
        urls[name] = session.shown(configured[name]["url"])
    order = list(configured)
    statuses = dict(sorted(statuses.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order)))
    return _print_health(session, statuses, urls)


def _print_health(session: Session, statuses: dict[str, Any], urls: dict[str, str]) -> int:
    from eventsource.manager.monitoring import DEGRADED, status_of

    out = session.out
    statuses = {name: dataclasses.replace(s, message=session.scrub(s.message)) for name, s in statuses.items()}
    statuses = {n: dataclasses.replace(s, details={**s.details, "status": status_of(s)}) for n, s in statuses.items()}
    out.json(statuses)
    healthy = all(s.healthy for s in statuses.values())
    for name, s in statuses.items():
        where = f" ({urls[name]})" if urls.get(name) else ""
        if not s.healthy:
            out.line(f"{name}{where}: UNHEALTHY: {s.message}")
            continue
        latency = f", answered in {s.latency_ms:.1f} ms" if s.latency_ms is not None else ""
        _print_durability(session, f"{name}{where}", s.details, latency)
    if not healthy:
        hints = sorted({connect_hint(urls.get(name, "")) for name, s in statuses.items() if not s.healthy})
        out.note(f"error: the store is not healthy; {'; '.join(hints)}")
        return EXIT_UNAVAILABLE
    degraded = [_why(name, s.details) for name, s in statuses.items() if s.details["status"] == DEGRADED]
    if degraded and session.args.strict:
        out.note(f"error: degraded (--strict): {'; '.join(degraded)}")
        return EXIT_DEGRADED
    return EXIT_OK


def _why(name: str, details: dict[str, Any]) -> str:
    """Why ``name`` is degraded: its settings that can lose acknowledged writes, its failing parts, or both."""
    why = ["can lose acknowledged writes"] if details.get("durability_risks") else []
    if details.get("faults"):
        why.append(f"has a failing part ({', '.join(f['component'] for f in details['faults'])})")
    return f"{name} {' and '.join(why)}"


def _print_durability(session: Session, who: str, details: dict[str, Any], latency: str) -> None:
    """A store that answers: ``healthy`` or ``healthy but DEGRADED``, one line per fault, risk, note, unread setting."""
    out = session.out
    risks = details.get("durability_risks") or []
    faults = details.get("faults") or []
    if risks:
        out.line(f"{who}: healthy but DEGRADED{latency}: {len(risks)} setting(s) can lose acknowledged writes")
    elif faults:
        out.line(f"{who}: healthy but DEGRADED{latency}: {len(faults)} part(s) failing")
    else:
        out.line(f"{who}: healthy{latency}")
    for f in faults:
        out.line(f"  fault: {f['component']}: {f['error']}")
    for r in risks:
        out.line(f"  risk: {r['setting']}={r['value']} ({r['scope']}): {r['risk']}")
    for note in details.get("durability_notes") or []:
        out.line(f"  note: {note}")
    for what in details.get("durability_unread") or []:
        out.line(f"  not read: {what}")
