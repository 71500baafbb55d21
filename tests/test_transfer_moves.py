"""Findings of the attacker's and newcomer's review of moving data (copy, export, import, verify) and of the CLI's long
operations, each reproduced by a test that failed on the code as it was.

Stores are real SQLite files and memory stores; the round trips through PostgreSQL and NATS are in the kafka
plugin's tests, where every plugin is installed.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest
from eventsource.cli.main import main
from eventsource.plugins import PluginHost

if TYPE_CHECKING:
    from pathlib import Path


def _store_with_events(path: Path) -> str:
    url = f"sqlite:///{path}"
    for n in (1, 2):
        assert main(["--store", url, "append", "s1", "E", json.dumps({"n": n})], host=PluginHost()) == 0
    return url


# -- a target whose create_store is off, and missing: the error named it "the source store"


@pytest.mark.parametrize("command", ["copy", "import"])
def test_cli_a_missing_target_with_create_store_off_is_named_as_the_target(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--to 'sqlite:///x.db?create_store=false'`` (or a --config provider with it off) that does not exist.

    The error said "the source store sqlite:///x.db?create_store=false does not exist", with ``field: source``:
    a newcomer checked the source, which was fine, and never the target's setting.
    """
    src = _store_with_events(tmp_path / "src.db")
    assert main(["export", "--from", src, "-o", str(tmp_path / "out.jsonl")], host=PluginHost()) == 0
    capsys.readouterr()
    missing = tmp_path / "missing.db"
    target = f"sqlite:///{missing}?create_store=false"
    where = ["--from", src] if command == "copy" else [str(tmp_path / "out.jsonl")]
    argv = ["--json", command, *where, "--to", target, "--map", str(tmp_path / "m.db")]
    code = main(argv, host=PluginHost())
    err = capsys.readouterr().err
    assert code == 2, err
    body = json.loads(err.splitlines()[-1])["error"]
    assert body["message"].startswith(f"the target store {target} does not exist: "), body
    assert "create_store" in body["message"].partition("does not exist: ")[2], body
    assert "source" not in body["message"], body
    assert body["details"]["field"] == "target", body
    assert not missing.exists()
