"""``eventsource projections``: every stored checkpoint and how far it is behind its store.

Checkpoints come from ``--checkpoints URL``, else the configured ``checkpoint_store``, else the store itself
when its URL scheme has a checkpoint store (SQLite, PostgreSQL, NATS). A checkpoint whose source is one of
the configured stores gets its lag in positions and seconds; one of another store is listed without. The
checkpoint store is opened with ``create_store`` off: where it is not there, the command says there are no
checkpoints and creates no table, schema, bucket or file.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from eventsource.cli.arguments import given
from eventsource.cli.errors import UsageError
from eventsource.cli.exitcodes import EXIT_OK
from eventsource.cli.output import mask, when
from eventsource.cli.storefile import SQLITE_PATHS, missing_sqlite_file
from eventsource.errors import ProviderNotFoundError, StoreNotFoundError

if TYPE_CHECKING:
    from eventsource.checkpoints.base import Checkpoint, CheckpointStore
    from eventsource.cli.output import Output
    from eventsource.cli.parser import Commands
    from eventsource.cli.session import Session
    from eventsource.manager import EventSourcingManager


def register(commands: Commands) -> None:
    """Add the ``projections`` command."""
    p = commands.add("projections", "list stored checkpoints and their lag behind the store", projections)
    p.add_argument(
        "--checkpoints",
        metavar="URL",
        type=given("a checkpoint store URL"),
        default=None,
        help="checkpoint store URL (default: checkpoint_store from the configuration, else the store itself)",
    )


def projections(session: Session) -> int:
    """One line (or JSON object) per checkpoint, with its lag when its source store is configured."""
    out = session.out

    async def body(m: EventSourcingManager) -> int:
        from eventsource.subscriptions.lag import READ_WAIT, source_of

        url = _checkpoint_url(session, m)
        session.scrub.add_url(url)
        missing = missing_sqlite_file(url)
        if missing is not None:  # nothing was ever stored there: say so, and make no empty database
            out.note(f"no checkpoints in {mask(url)}: no file {missing!r} ({SQLITE_PATHS})")
            return EXIT_OK
        store = await _existing(session, m, url)
        if store is None:
            return EXIT_OK
        by_source = {source_of(m.get_provider(name)): name for name in m.list_providers()}
        rows: list[dict[str, Any]] = []
        try:
            for cp in await store.list():
                name = by_source.get(cp.source)
                if name is None:
                    rows.append(_unmeasured(cp))
                    continue
                # bounded: on PostgreSQL a running transaction would hold the read for visibility_wait
                lag = await m.subscription_lag(cp.name, store, source=cp.source, provider=name, wait=READ_WAIT)
                rows.append({**lag.as_dict(), "provider": name})
        finally:
            await store.close()
        for row in rows:
            out.json(row)
        _print_table(out, rows)
        if not rows and (out.interactive or not out.as_json):
            out.note(f"no checkpoints in {mask(url)}")
        return EXIT_OK

    return session.with_manager(body, existing=True)


async def _existing(session: Session, m: EventSourcingManager, url: str) -> CheckpointStore | None:
    """The checkpoint store at ``url``, connected with ``create_store`` off; ``None`` (said) when it is not there."""
    from eventsource.create_store import CREATE_STORE, existing_checkpoints

    store, guarded = existing_checkpoints(m.host, url)
    if not guarded:
        session.out.note(
            f"note: the {store.kind!r} checkpoint store has no {CREATE_STORE} option: listing {mask(url)} may "
            "create its table if it is missing"
        )
    try:
        await store.connect()
    except StoreNotFoundError as e:  # nothing was ever stored there: say so, and create nothing
        await store.close()
        session.out.note(f"no checkpoints in {mask(url)}: {e.details.get('why') or e}")
        return None
    except BaseException:
        await store.close()
        raise
    return store


def _checkpoint_url(session: Session, m: EventSourcingManager) -> str:
    url: str | None = session.args.checkpoints or m.config.checkpoint_store
    if url is not None:
        return url
    store_url = str(m.config.providers[m.list_providers()[0]]["url"]) if m.list_providers() else ""
    # memory:// checkpoints live in one process: a new one never holds a running subscription's checkpoints
    if not _holds_checkpoints(m, store_url) or store_url.startswith("memory:"):
        msg = (
            f"no checkpoint store is configured and {mask(store_url)!r} cannot hold checkpoints: "
            "pass --checkpoints URL or set checkpoint_store in the configuration"
        )
        raise UsageError(msg)
    return store_url


def _holds_checkpoints(m: EventSourcingManager, url: str) -> bool:
    try:
        m.host.checkpoint_stores.for_url(url)
    except ProviderNotFoundError:
        return False
    return True


def _unmeasured(cp: Checkpoint) -> dict[str, Any]:
    when_ = cp.updated_at.isoformat() if cp.updated_at else None
    unknown = dict.fromkeys(("head", "positions", "events", "seconds", "provider"))
    return {"name": cp.name, "source": cp.source, "scope": cp.scope, "position": cp.position, **unknown,
            "events_capped": False, "updated_at": when_}  # fmt: skip


def _print_table(out: Output, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    out.line(f"{'NAME':<24} {'SCOPE':<28} {'POSITION':>9} {'HEAD':>9} {'BEHIND':>8} {'LAG':>9}  UPDATED")
    for r in rows:
        head = "-" if r["head"] is None else str(r["head"])
        behind = "-" if r["events"] is None else f"{r['events']:,}" + ("+" if r["events_capped"] else "")
        lag = "-" if r["seconds"] is None else f"{r['seconds']:.1f}s"
        updated = when(_parse(r["updated_at"]))
        out.line(f"{r['name']:<24} {r['scope']:<28} {r['position']:>9} {head:>9} {behind:>8} {lag:>9}  {updated}")
        # BEHIND counts readable events (up to the cap); HEAD and POSITION are in the store's position units
        if r["provider"] is None:
            out.line(f"{'':<24} source {r['source']!r} is not a configured store: no lag")


def _parse(text: str | None) -> Any:
    from datetime import datetime

    return datetime.fromisoformat(text) if text else None
