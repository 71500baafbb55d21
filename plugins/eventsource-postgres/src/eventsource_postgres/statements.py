"""The SQL of one store: every statement text, built once from the store's quoted names.

Appends are one statement each (the streams row write feeding the events insert, under the stream's
advisory lock), and ``read_all`` flags the rows below the oldest running transaction; the plugin
README explains both, and why they keep the global order without a table lock.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from eventsource_postgres.schema import POSITION_SHIFT

if TYPE_CHECKING:
    from eventsource_postgres.schema import Names

EVENT_COLS = (
    "event_id, stream_id, event_type, version, position, data, metadata, encoding, ts, "
    "correlation_id, causation_id, user_id, tenant_id, aggregate_id, aggregate_type"
)
STREAM_COLS = (
    "stream_id, version, event_count, created_at, updated_at, name, aggregate_id, aggregate_type, "
    "coalesce(metadata_text, metadata::text), last_event_id, first_version"
)
"""A streams row's columns in :class:`~eventsource.model.StreamInfo`'s order, the metadata as JSON text (the text
it was given; the jsonb's for a row an older release wrote): :func:`~eventsource_postgres.streams.stream_info`."""
SNAPSHOT_COLS = (
    "snapshot_id, stream_id, version, data, metadata, encoding, created_at, aggregate_id, aggregate_type, position"
)
MAX_VERSION = 1 << 62


def _append_sql(n: Names, cond: str, *, upsert: bool, single: bool) -> str:
    """The append statement: the streams row write (``up``) feeding the events insert (``ins``).

    The single-event form binds scalars, and reuses the event's id and timestamp for the streams row.
    """
    if single:
        source = (
            "SELECT %(id)s, %(s)s, %(typ)s, up.prev + 1, up.base, %(dat)b::bytea, %(met)b::bytea, %(enc)s, "
            "%(ts)s::timestamptz, %(corr)s, %(cause)s, %(usr)s, %(ten)s, %(aid)s, %(aty)s FROM up"
        )
        count, last_id, first_ts, last_ts = "1::bigint", "%(id)s", "%(ts)s::timestamptz", "%(ts)s::timestamptz"
    else:
        source = (
            "SELECT u.id, %(s)s, u.typ, up.prev + u.o, up.base + u.o - 1, u.dat, u.met, u.enc, u.ts, "
            "u.corr, u.cause, u.usr, u.ten, u.aid, u.aty FROM up, unnest(%(id)s::text[], %(typ)s::text[], "
            "%(dat)b::bytea[], %(met)b::bytea[], %(enc)s::text[], %(ts)s::timestamptz[], %(corr)s::text[], "
            "%(cause)s::text[], %(usr)s::text[], %(ten)s::text[], %(aid)s::text[], %(aty)s::text[]) "
            "WITH ORDINALITY AS u(id, typ, dat, met, enc, ts, corr, cause, usr, ten, aid, aty, o)"
        )
        count, last_id = "%(n)s::bigint", "%(last_id)s"
        first_ts, last_ts = "%(first_ts)s::timestamptz", "%(last_ts)s::timestamptz"
    # meta_s is bound once for both columns: cast to text first wherever it is used, or the server takes the (text
    # format, untyped) parameter of the batch form as jsonb, and the text column kept jsonb's rendering of it
    returning = f"RETURNING s.version - {count} AS prev, pg_current_xact_id()::text::bigint << {POSITION_SHIFT} AS base"
    lock = "(SELECT pg_advisory_xact_lock(%(k)s::bigint)) AS lock"
    if upsert:
        up = (
            f"INSERT INTO {n.streams} AS s (stream_id, version, event_count, first_version, "  # noqa: S608 - quoted names
            "last_event_id, created_at, updated_at, name, aggregate_id, aggregate_type, metadata, metadata_text) "
            f"SELECT %(s)s, {count}, {count}, 1, {last_id}, {first_ts}, {last_ts}, %(name)s, %(agg_id)s, "
            f"%(agg_type)s, coalesce(%(meta_s)s::text::jsonb, '{{}}'), %(meta_s)s::text FROM {lock} "
            "ON CONFLICT (stream_id) DO UPDATE SET version = s.version + EXCLUDED.event_count, "
            "event_count = s.event_count + EXCLUDED.event_count, first_version = "
            "coalesce(s.first_version, s.version + 1), "
            f"last_event_id = EXCLUDED.last_event_id, updated_at = EXCLUDED.updated_at WHERE {cond} {returning}"
        )
    else:
        up = (
            f"UPDATE {n.streams} AS s SET version = s.version + {count}, "  # noqa: S608 - quoted names
            f"event_count = s.event_count + {count}, first_version = coalesce(s.first_version, s.version + 1), "
            f"last_event_id = {last_id}, updated_at = {last_ts} FROM {lock} "
            f"WHERE s.stream_id = %(s)s AND {cond} {returning}"
        )
    sql = f"WITH up AS ({up}), ins AS (INSERT INTO {n.events} ({EVENT_COLS}) {source}) SELECT prev, base FROM up"  # noqa: S608
    # the single form sends every parameter in binary: no text formatting of the timestamp by the client nor
    # parsing by the server (the batch form keeps text arrays: an all-NULL column has no binary element type)
    return re.sub(r"%\((\w+)\)s", r"%(\1)b", sql) if single else sql


class Statements:
    """Every statement of one store, built once from its quoted names."""

    def __init__(self, n: Names) -> None:
        # One statement per append (see the README). The advisory lock is in the FROM of the streams
        # write, so it is held before anything assigns a transaction id: a later append to the same
        # stream always gets a larger xid, so version order and position order agree.
        # Kinds: "any" (ANY: create or extend), "new" (NO_STREAM: create only), "zero" (0: create, or
        # extend an empty stream), "exists" (STREAM_EXISTS: extend only), "exact" (n > 0: extend at n).
        # Each comes in a batch form (one array per column) and a single-event form (scalars: cheaper to
        # send, and the single append is the latency-critical path).
        self.append: dict[tuple[str, bool], str] = {}
        conds = {
            "any": "TRUE",
            "new": "FALSE",
            "zero": "s.version = 0",
            "exists": "TRUE",
            "exact": "s.version = %(e)s::bigint",
        }
        for kind, cond in conds.items():
            for single in (True, False):
                self.append[kind, single] = _append_sql(n, cond, upsert=kind in ("any", "new", "zero"), single=single)
        self.events_by_ids = f"SELECT {EVENT_COLS} FROM {n.events} WHERE event_id = ANY (%s::text[])"  # noqa: S608
        self.read_forward = (
            f"SELECT {EVENT_COLS} FROM {n.events} WHERE stream_id = %s AND version >= %s AND version <= %s "  # noqa: S608
            "ORDER BY version LIMIT %s"
        )
        self.read_backward = (
            f"SELECT {EVENT_COLS} FROM {n.events} WHERE stream_id = %s AND version >= %s AND version <= %s "  # noqa: S608
            "ORDER BY version DESC LIMIT %s"
        )
        # rows at or after the cursor, each flagged "safe" when its transaction id is below the oldest
        # transaction still running: only a prefix of safe rows may be handed to a reader. The bound is
        # an uncorrelated subquery (an InitPlan): computed once per statement, from its snapshot.
        self.read_all = (
            f"SELECT {EVENT_COLS}, position < (SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint "  # noqa: S608
            f"<< {POSITION_SHIFT}) FROM {n.events} WHERE position >= %s ORDER BY position LIMIT %s"
        )
        self.get_event = f"SELECT {EVENT_COLS} FROM {n.events} WHERE event_id = %s"  # noqa: S608
        self.get_event_in = f"SELECT {EVENT_COLS} FROM {n.events} WHERE event_id = %s AND stream_id = %s"  # noqa: S608
        self.create_stream = (
            f"INSERT INTO {n.streams} (stream_id, version, event_count, created_at, updated_at, name, "  # noqa: S608
            "aggregate_id, aggregate_type, metadata, metadata_text) "
            "SELECT %s, 0, 0, %s, %s, %s, %s, %s, %s::jsonb, %s::text FROM (SELECT pg_advisory_xact_lock(%s)) AS lock "
            f"ON CONFLICT (stream_id) DO NOTHING RETURNING {STREAM_COLS}"
        )
        # a long id's (stream_id, version) key, as the events' index holds it: written and rolled back at once
        self.probe_key = (
            f"INSERT INTO {n.snapshots} (snapshot_id, stream_id, version, data, metadata, encoding, created_at) "  # noqa: S608
            "VALUES ('', %s, 0, '', '', '', now())"
        )
        self.stream_info = f"SELECT {STREAM_COLS} FROM {n.streams} WHERE stream_id = %s"  # noqa: S608
        self.list_streams = f"SELECT {STREAM_COLS} FROM {n.streams} ORDER BY stream_id LIMIT %s OFFSET %s"  # noqa: S608
        self.count_streams = f"SELECT count(*) FROM {n.streams}"  # noqa: S608
        self.lock = "SELECT pg_advisory_xact_lock(%s)"
        self.delete_stream_events = f"DELETE FROM {n.events} WHERE stream_id = %s"  # noqa: S608
        self.delete_stream_row = f"DELETE FROM {n.streams} WHERE stream_id = %s RETURNING 1"  # noqa: S608
        self.save_snapshot = (
            f"INSERT INTO {n.snapshots} ({SNAPSHOT_COLS}) VALUES (%s, %s, %s, %b, %b, %s, %s, %s, %s, %s) "  # noqa: S608
            "ON CONFLICT (stream_id, version) DO UPDATE SET snapshot_id = EXCLUDED.snapshot_id, "
            "data = EXCLUDED.data, metadata = EXCLUDED.metadata, encoding = EXCLUDED.encoding, "
            "created_at = EXCLUDED.created_at, aggregate_id = EXCLUDED.aggregate_id, "
            "aggregate_type = EXCLUDED.aggregate_type, position = EXCLUDED.position"
        )
        # the stream's version and the position of its event at the snapshot's version (run under the
        # stream's advisory lock); FOR SHARE holds off a concurrent delete until the snapshot is written
        self.snapshot_backing = (
            f"SELECT s.version, (SELECT e.position FROM {n.events} e WHERE e.stream_id = s.stream_id "  # noqa: S608
            f"AND e.version = %s) FROM {n.streams} s WHERE s.stream_id = %s FOR SHARE OF s"
        )
        self.get_snapshot = (
            f"SELECT {SNAPSHOT_COLS} FROM {n.snapshots} WHERE stream_id = %s AND version <= %s "  # noqa: S608
            "ORDER BY version DESC LIMIT 1"
        )
        self.delete_snapshots = f"DELETE FROM {n.snapshots} WHERE stream_id = %s"  # noqa: S608
        self.delete_snapshot = f"DELETE FROM {n.snapshots} WHERE stream_id = %s AND version = %s"  # noqa: S608
        self.truncate = (
            f"WITH d AS (DELETE FROM {n.events} WHERE stream_id = %s AND version < %s RETURNING 1) "  # noqa: S608
            "SELECT count(*) FROM d"
        )
        self.delete_before_in = (
            f"WITH d AS (DELETE FROM {n.events} WHERE stream_id = %s AND ts < %s RETURNING 1) "  # noqa: S608
            "SELECT count(*) FROM d"
        )
        self.delete_before_all = (
            f"WITH d AS (DELETE FROM {n.events} WHERE ts < %s RETURNING stream_id) "  # noqa: S608
            "SELECT stream_id, count(*) FROM d GROUP BY stream_id ORDER BY stream_id"
        )
        self.lock_stream_rows = (
            f"SELECT 1 FROM {n.streams} WHERE stream_id = ANY (%s::text[]) ORDER BY stream_id FOR UPDATE"  # noqa: S608
        )
        self.recount = (
            f"UPDATE {n.streams} s SET event_count = s.event_count - c.n, "  # noqa: S608
            f"first_version = (SELECT min(e.version) FROM {n.events} e WHERE e.stream_id = s.stream_id) "
            "FROM unnest(%s::text[], %s::bigint[]) AS c(sid, n) WHERE s.stream_id = c.sid RETURNING 1"
        )
        self.stats = (
            f"SELECT (SELECT count(*) FROM {n.events}), (SELECT count(*) FROM {n.streams}), "  # noqa: S608
            f"(SELECT count(*) FROM {n.snapshots}), "
            f"(SELECT ts FROM {n.events} ORDER BY position DESC LIMIT 1), "
            f"pg_total_relation_size('{n.events}') + pg_total_relation_size('{n.streams}') "
            f"+ pg_total_relation_size('{n.snapshots}')"
        )
        self.by_type = f"SELECT event_type, count(*) FROM {n.events} GROUP BY event_type"  # noqa: S608
        # issue #17: figures that do not grow with the events (one row per stream, the catalog, the planner)
        # the caller adds a literal LIMIT: with a bound one the planner guesses 10% of the streams, so planning
        # each call looks cheaper than the cached plan, which is the same index walk whatever the values
        self.list_streams_after = f"SELECT {STREAM_COLS} FROM {n.streams} WHERE stream_id > %s ORDER BY stream_id"  # noqa: S608
        self.top_streams = f"SELECT stream_id, event_count FROM {n.streams} ORDER BY event_count DESC LIMIT %s"  # noqa: S608
        self.bounded_stats = (
            f"SELECT (SELECT coalesce(sum(event_count), 0) FROM {n.streams}), (SELECT count(*) FROM {n.streams}), "  # noqa: S608
            f"(SELECT count(*) FROM {n.snapshots}), "
            f"(SELECT ts FROM {n.events} ORDER BY position DESC LIMIT 1), "
            f"pg_total_relation_size('{n.events}') + pg_total_relation_size('{n.streams}') "
            f"+ pg_total_relation_size('{n.snapshots}'), "
            f"(SELECT reltuples FROM pg_class WHERE oid = '{n.events}'::regclass)"
        )
        # the planner's most common event types and their share of the rows (ANALYZE, run by autovacuum)
        self.type_shares = (
            "SELECT most_common_vals::text::text[], most_common_freqs FROM pg_stats "
            "WHERE schemaname = %s AND tablename = %s AND attname = 'event_type'"
        )
        self.events_table = (n.schema, f"{n.prefix}events")
        self.stream_count = f"SELECT event_count FROM {n.streams} WHERE stream_id = %s"  # noqa: S608
        self.total_events = f"SELECT coalesce(sum(event_count), 0) FROM {n.streams}"  # noqa: S608
        self.version_at = f"SELECT stream_id, version FROM {n.events} WHERE position = %s"  # noqa: S608
        self.horizon = f"SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint << {POSITION_SHIFT}"
        self.old_batch = f"SELECT position, stream_id FROM {n.events} WHERE ts < %s ORDER BY ts, position LIMIT %s"  # noqa: S608
        self.delete_before_in_batch = (  # (rows found, rows deleted): another run may delete some found first
            f"WITH c AS (SELECT position FROM {n.events} WHERE stream_id = %s AND ts < %s "  # noqa: S608
            f"ORDER BY version LIMIT %s), d AS (DELETE FROM {n.events} WHERE position IN (SELECT position FROM c) "
            "RETURNING 1) SELECT (SELECT count(*) FROM c), (SELECT count(*) FROM d)"
        )
        self.lowest_version = f"SELECT min(version) FROM {n.events} WHERE stream_id = %s"  # noqa: S608
        # truncate_stream's if_holds guard: one probe of the (stream_id, version) index, and the stream's last event
        self.holds = f"SELECT 1 FROM {n.events} WHERE stream_id = %s AND version = %s AND event_id = %s"  # noqa: S608
        self.last_event = (
            f"SELECT version, event_id FROM {n.events} WHERE stream_id = %s "  # noqa: S608
            "ORDER BY version DESC LIMIT 1"
        )
        self.delete_positions = (
            f"WITH d AS (DELETE FROM {n.events} WHERE position = ANY (%s::bigint[]) RETURNING stream_id) "  # noqa: S608
            "SELECT stream_id, count(*) FROM d GROUP BY stream_id ORDER BY stream_id"
        )
        self.by_stream = f"SELECT stream_id, event_count FROM {n.streams}"  # noqa: S608
        self.events = n.events
