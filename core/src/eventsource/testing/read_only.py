"""The command line's read-only commands at a store that is not there (a mistyped schema, prefix, stream...).

A plugin's ``create_store`` test runs each of :data:`READ_ONLY_COMMANDS` through :func:`run_read_only`, then
checks what it printed and that nothing was created on its server.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from eventsource.cli import EXIT_NOT_FOUND, EXIT_UNAVAILABLE, EXIT_USAGE, main

if TYPE_CHECKING:
    from pathlib import Path

    import pytest

    from eventsource.plugins import PluginHost

READ_ONLY_COMMANDS: dict[str, tuple[list[str], int]] = {
    "stats": (["stats"], EXIT_NOT_FOUND),
    "read": (["read", "s"], EXIT_NOT_FOUND),
    "streams": (["streams"], EXIT_NOT_FOUND),
    "health": (["health"], EXIT_UNAVAILABLE),
    "export --from": (["export", "--from", "{name}", "-o", "out.jsonl"], EXIT_USAGE),
}
"""Read-only commands, each with the exit code it gives on a store that is not there (``{name}``: the provider's)."""


def run_read_only(
    command: str,
    *,
    url: str,
    settings: dict[str, Any],
    tmp_path: Path,
    host: PluginHost,
    capsys: pytest.CaptureFixture[str],
    name: str = "p",
) -> str:
    """Run :data:`READ_ONLY_COMMANDS` ``command`` in ``tmp_path`` on provider ``name`` (``url``, ``settings``).

    Asserts its exit code; returns what it printed (stdout and stderr). The caller chdirs to ``tmp_path``.
    """
    cfg = tmp_path / "es.json"
    cfg.write_text(json.dumps({"providers": {name: {"url": url, "settings": settings}}}), encoding="utf-8")
    argv, code = READ_ONLY_COMMANDS[command]
    argv = [a.format(name=name) for a in argv]
    exit_code = main(["--config", str(cfg), *argv], host=host)
    out = capsys.readouterr()
    assert exit_code == code, (exit_code, out)
    return out.out + out.err
