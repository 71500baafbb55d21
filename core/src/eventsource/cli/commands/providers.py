"""``eventsource providers``: the installed provider, codec, retention and lease plugins and their distributions.

It needs no store: it loads the plugins and lists what each registered.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from eventsource.cli.exitcodes import EXIT_OK

if TYPE_CHECKING:
    from eventsource.cli.parser import Commands
    from eventsource.cli.session import Session

_TITLES = {
    "provider": "providers (select with --store SCHEME://...)",
    "serializer": "serializers",
    "compressor": "compressors",
    "cipher": "ciphers",
    "retention": "retention policies",
    "lease": "leases",
}


def register(commands: Commands) -> None:
    """Add the ``providers`` command."""
    commands.add(
        "providers", "list installed provider, codec, retention and lease plugins with their distributions", providers
    )


def providers(session: Session) -> int:
    """Installed plugins and what each registered, grouped by kind."""
    out = session.out
    host = session.plugin_host()
    rows = host.describe()
    out.json(
        {
            "plugins": rows,
            "entry_points": {k: {"distribution": d, "version": v} for k, (d, v) in host.distributions.items()},
        }
    )
    for kind, title in _TITLES.items():
        group = [r for r in rows if r["type"] == kind]
        if not group:
            continue
        out.line(title)
        name_width = max(len(r["name"]) for r in rows)
        scheme_width = max(len(", ".join(f"{s}://" for s in r["schemes"])) for r in rows)
        for r in group:
            origin = f"{r['distribution'] or 'unknown distribution'} {r['version'] or ''}".rstrip()
            schemes = ", ".join(f"{s}://" for s in r["schemes"])
            if kind == "provider":
                out.line(f"  {r['name']:<{name_width}}  {schemes:<{scheme_width}}  {origin}")
            else:
                out.line(f"  {r['name']:<{name_width}}  {origin}")
    return EXIT_OK
