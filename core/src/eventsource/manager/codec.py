"""The event codec: everything between stored records and :class:`Event` / :class:`Snapshot` values.

It owns the codec pipeline (serialize -> compress -> encrypt, reversed on read), the associated data
that binds each payload to its place, key scopes and the keyed ciphers, encoding descriptors, upcasters,
and the fast path that turns a provider's :class:`RowPage` rows straight into events. Nothing else in
the manager builds or parses payload bytes or associated data.
"""

from __future__ import annotations

import asyncio
import logging
from operator import attrgetter
from typing import TYPE_CHECKING, Any, TypeVar

from eventsource.codecs import CodecPipeline
from eventsource.codecs.builtin import JsonSerializer
from eventsource.codecs.keys import ScopedKeyStore
from eventsource.errors import (
    CodecError,
    ConfigurationError,
    EventSourceError,
    KeyShreddedError,
    ProviderError,
    UpcastError,
    ValidationError,
)
from eventsource.manager.fastrows import json_rows
from eventsource.manager.keysetup import build_key_provider
from eventsource.manager.sealing import aad_prefix, data_aad, meta_aad, not_an_object, open_data, open_meta
from eventsource.manager.validation import check_scope_names
from eventsource.model import SHREDDED_KEY, Event, RowPage, Snapshot, make_event, make_recorded_event
from eventsource.rows import RECORD_FIELDS, UNREADABLE, check_snapshot, malformed, stored_time

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    from eventsource.codecs import Cipher
    from eventsource.codecs.keys import KeyProvider
    from eventsource.config import ManagerConfig
    from eventsource.domain.upcasting import Upcasters
    from eventsource.model import RecordedEvent, RecordedSnapshot
    from eventsource.plugins import PluginHost
    from eventsource.rows import EventRow

log = logging.getLogger("eventsource")
_T = TypeVar("_T")


def _shell_ok() -> bool:
    """Whether an :class:`~eventsource.rows.EventShell` switched to :class:`Event` equals the event built normally."""
    from eventsource.rows import EventShell

    args: tuple[Any, ...] = tuple(range(len(EventShell.__slots__)))
    try:
        ev: Any = object.__new__(EventShell)
        for name, value in zip(EventShell.__slots__, args, strict=True):
            setattr(ev, name, value)
        ev.__class__ = Event
    except TypeError:
        return False
    return type(ev) is Event and ev == Event(**dict[str, Any](zip(EventShell.__slots__, args, strict=True)))


def _with_context(e: CodecError, where: str, **details: Any) -> CodecError:
    """The same error type with ``where`` (ids only, never payload) in front of its message."""
    try:
        return type(e)(f"{where}: {e.message}", **{**e.details, **details})
    except TypeError:  # a third-party subclass with another signature
        return e


_record_row = attrgetter(*RECORD_FIELDS)
"""A :class:`RecordedEvent`'s fields as a row (for :func:`~eventsource.rows.malformed`)."""


def _upcast(ups: list[Callable[[Event], Event]], ev: Event) -> Event:
    """``ev`` through ``register_upcaster`` functions; one that raises or returns no event: :class:`UpcastError`."""
    for up in ups:
        try:
            out = up(ev)
        except (UpcastError, ProviderError):  # a store it looked up failing is no fault of the event
            raise
        except Exception as e:
            where = f"event {ev.event_id!r} (version {ev.version} of stream {ev.stream_id!r})"
            msg = f"an upcaster of {ev.event_type!r} raised {type(e).__name__} on {where}"
            raise UpcastError(msg, event_type=ev.event_type, event_id=ev.event_id, stream_id=ev.stream_id) from e
        if not isinstance(out, Event):  # None (an in-place edit) or the data: never handed out as the event
            where = f"event {ev.event_id!r} (version {ev.version} of stream {ev.stream_id!r})"
            msg = f"an upcaster of {ev.event_type!r} returned a {type(out).__name__} on {where}, not an Event"
            raise UpcastError(msg, event_type=ev.event_type, event_id=ev.event_id, stream_id=ev.stream_id)
        ev = out
    return ev


class EventCodec:
    """Encodes events and snapshots for a store and decodes them back (see the module docstring).

    :param config: the manager's configuration (codecs, encryption, key scope, shredded-event mode).
    :param host: the plugin host whose codec registry the pipeline is built from.
    :param key_provider: wins over the key-provider hook and the configured key ring.
    """

    def __init__(self, config: ManagerConfig, host: PluginHost, key_provider: KeyProvider | None = None) -> None:
        self.keys: KeyProvider | None = build_key_provider(config, host, key_provider)
        # a key file shared with other processes: checked for a shred once per call or page, not per payload
        keys = self.keys
        self.key_file = keys if isinstance(keys, ScopedKeyStore) and keys.path is not None else None
        readers: dict[str, Cipher] = {}
        if self.keys is not None:
            for reg in host.codecs.ciphers:
                keyed = reg.item.bind(self.keys)
                if keyed is not None:
                    readers[reg.name] = keyed
        writer = None
        if config.encryption:
            from eventsource.codecs.aesgcm import AesGcmCipher

            writer = readers.get(AesGcmCipher.name)
            if writer is None:
                msg = f"encryption is on but no {AesGcmCipher.name!r} cipher is registered"
                raise ConfigurationError(msg, field="encryption")
        compressor: bool | str | None = config.compression
        if compressor is True:
            compressor = "zlib"
        self.cipher: Cipher | None = writer
        self.pipeline = CodecPipeline(
            host.codecs,
            compressor=compressor if isinstance(compressor, str) and compressor != "none" else None,
            compression_threshold=config.compression_threshold,
            cipher=writer,
            ciphers=readers,
            # what this configuration writes always reads back; a stored bomb is refused before it is allocated
            max_decoded_size=max(config.max_event_size, config.max_snapshot_size),
        )
        self.plain = self.pipeline.serializer.name
        self.loads = self.pipeline.serializer.loads
        serializer = self.pipeline.serializer
        # nothing to compress or seal: an event's data is its serialized bytes (encode_event skips the pipeline)
        self.dumps_plain = serializer.dumps if self.pipeline.compressor is None and writer is None else None
        # the inlined plain-JSON row path: only for the built-in serializer itself (a subclass may decode otherwise)
        self.json_scan = serializer.scanners() if type(serializer) is JsonSerializer and _shell_ok() else None
        self.scope_mode = config.encryption_scope
        # a tenant-less event under tenant scopes is opened as "tenant:": a ScopedKeyStore then refuses a tenant's
        # data key for it (an event relabelled to no tenant in the store); other key providers get None, as before
        self.no_tenant = "tenant:" if self.scope_mode == "tenant" and isinstance(self.keys, ScopedKeyStore) else None
        self.redact = config.shredded_events == "redact"
        self.upcasters: dict[str, list[Callable[[Event], Event]]] = {}
        self.chain: Upcasters = host.upcasters.copy()  # (type, schema version) chains; see eventsource.domain

    # ------------------------------------------------------------------ keys

    def key_scope(self, *, stream_id: str | None = None, tenant_id: str | None = None) -> str | None:
        """The key scope of an event of ``stream_id`` / ``tenant_id`` under ``encryption_scope``."""
        mode = self.scope_mode
        if mode == "tenant":
            return f"tenant:{tenant_id}" if tenant_id else None
        if mode == "stream":
            return f"stream:{stream_id}" if stream_id else None
        return None

    def read_scope(self, rec: RecordedEvent) -> str | None:
        """The scope a stored event's payloads are opened under (:meth:`key_scope`, or :attr:`no_tenant`)."""
        if self.scope_mode == "tenant" and not rec.tenant_id:
            return self.no_tenant
        return self.key_scope(stream_id=rec.stream_id, tenant_id=rec.tenant_id)

    def require_keys(self) -> KeyProvider:
        """The key provider; :class:`ConfigurationError` if none is configured."""
        if self.keys is None:
            msg = "no key provider is configured (encryption_keys or key_provider)"
            raise ConfigurationError(msg, field="encryption_keys")
        return self.keys

    def scope_of(self, tenant_id: str | None, stream_id: str | None, op: str = "shred") -> str:
        """The scope named by exactly one of ``tenant_id`` / ``stream_id`` (for ``op``: shred, rotate)."""
        if (tenant_id is None) == (stream_id is None):
            msg = f"{op} needs exactly one of tenant_id, stream_id or scope"
            raise ValidationError(msg, field="scope")
        scope = self.key_scope(stream_id=stream_id, tenant_id=tenant_id)
        if scope is None:
            which = "tenant_id" if tenant_id is not None else "stream_id"
            msg = (
                f"encryption_scope is {self.scope_mode!r}: keys are not scoped by {which}, so there is nothing to {op}"
            )
            raise ValidationError(msg, field=which)
        return scope

    def rotate_key(self, tenant_id: str | None, stream_id: str | None, scope: str | None, max_id: int) -> str:
        """Give one scope a new active key (see :meth:`EventSourcingManager.rotate_key`); the new key id."""
        keys = self.require_keys()
        check_scope_names(tenant_id, stream_id, scope, max_id)
        if scope is None and (tenant_id is not None or stream_id is not None):
            scope = self.scope_of(tenant_id, stream_id, "rotate")  # refused as a shred is, never the global ring
        return keys.rotate(scope)

    async def shred(self, tenant_id: str | None, stream_id: str | None, scope: str | None, max_id: int) -> int:
        """Delete the keys of one scope (see :meth:`EventSourcingManager.shred`); how many were removed."""
        keys = self.require_keys()
        check_scope_names(tenant_id, stream_id, scope, max_id)
        if scope is None:
            scope = self.scope_of(tenant_id, stream_id)
        n = await asyncio.to_thread(keys.shred, scope)
        self.forget_keys()
        log.info("shredded %d key(s) of one scope", n)
        return n

    def forget_keys(self) -> None:
        """Make every keyed cipher drop cached key material (after a shred)."""
        for cipher in self.pipeline.ciphers.values():
            cipher.forget()

    def once(self, work: Callable[[], _T]) -> _T:
        """``work()`` (an append's encoding) with the key file checked for a shred once, not per payload."""
        store = self.key_file
        if store is None or self.cipher is None or store.held.on:
            return work()
        store.catch_up()
        store.held.on = True
        try:
            return work()
        finally:
            store.held.on = False

    def decoder(self) -> Callable[[RecordedEvent], Event]:
        """:meth:`decode_event` for one call's or page's records: the key file is checked once, at the first sealed one.

        Each event is decoded with the check held only while it is (a lazy page's consumer runs between
        them); within the page the file's path is still checked once a second.
        """
        store = self.key_file
        decode, plain = self.decode_event, self.plain
        if store is None:
            return decode
        held, checked = store.held, False

        def one(rec: RecordedEvent) -> Event:
            nonlocal checked
            if held.on or rec.encoding == plain:
                return decode(rec)
            if not checked:
                store.catch_up()
                checked = True
            held.on = True
            try:
                return decode(rec)
            finally:
                held.on = False

        return one

    # ------------------------------------------------------------------ events

    def encode_event(
        self,
        stream_id: str,
        event_id: str,
        tenant_id: str | None,
        data: Any,
        metadata: dict[str, Any],
        *,
        version: int,
        event_type: str,
        check: Callable[[int], None] | None = None,
    ) -> tuple[bytes, bytes, str, int]:
        """Stored data bytes, metadata bytes, descriptor and serialized size of one event.

        With encryption on, the payloads are bound to ``(stream_id, event_id, version, part, event_type)``
        (:mod:`eventsource.manager.sealing`), and sealed only after both are serialized and ``check(size)``
        passed: refused input never mints a data key.
        """
        pipeline = self.pipeline
        if self.cipher is None:
            raw, encoding, size = self._sized(data)
            if not metadata:
                return raw, b"", encoding, size
            meta, meta_size = self._metadata(metadata, encoding)
            return raw, meta, encoding, size + meta_size
        prefix = aad_prefix("e", stream_id, event_id, version)
        scope = self.key_scope(stream_id=stream_id, tenant_id=tenant_id) if self.scope_mode != "global" else None
        held = [pipeline.serializer.dumps(data)]
        meta_raw = self._metadata_bytes(metadata) if metadata else b""
        size = len(held[0]) + len(meta_raw)
        if check is not None:
            check(size)
        # handed over (no local keeps it): freed once compressed or sealed (see CodecPipeline.pack)
        aad = data_aad(prefix, event_type, has_meta=bool(metadata))
        sealed, encoding = pipeline.pack(held.pop(), aad=aad, scope=scope)
        if not metadata:
            return sealed, b"", encoding, size
        meta = pipeline.pack_as(meta_raw, encoding, aad=meta_aad(prefix, event_type), scope=scope)
        return sealed, meta, encoding, size

    def encode_plain(self, data: Any) -> tuple[bytes, bytes, str, int]:
        """:meth:`encode_event` of an event without metadata, where :attr:`dumps_plain` is set (nothing to seal)."""
        raw = self.dumps_plain(data)  # type: ignore[misc] # (the caller checked it is set)
        return raw, b"", self.plain, len(raw)

    def _sized(self, data: Any) -> tuple[bytes, str, int]:
        """``pipeline.encode_sized(data)``; without a compressor or cipher, the serializer's bytes directly."""
        dumps = self.dumps_plain
        if dumps is None:
            return self.pipeline.encode_sized(data)
        raw = dumps(data)
        return raw, self.plain, len(raw)

    def _metadata(self, metadata: dict[str, Any], encoding: str, **sealing: Any) -> tuple[bytes, int]:
        """Metadata bytes and size; a value the serializer refuses is named as metadata (its message says data)."""
        out: tuple[bytes, int] = self._as_metadata(self.pipeline.encode_as_sized, metadata, encoding, **sealing)
        return out

    def _metadata_bytes(self, metadata: dict[str, Any]) -> bytes:
        """Metadata serialized (not sealed), refusals named as :meth:`_metadata` names them."""
        raw: bytes = self._as_metadata(self.pipeline.serializer.dumps, metadata)
        return raw

    @staticmethod
    def _as_metadata(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return call(*args, **kwargs)
        except ValidationError as e:
            text = e.message
            for said, says in (("data at ", "metadata at "), ("event data ", "metadata ")):
                if text.startswith(said):  # the JSON serializer's refusals; anything else (sealing) as it was
                    raise ValidationError(says + text[len(said) :], **{**e.details, "field": "metadata"}) from e
            raise

    def encrypted(self, encoding: str) -> bool:
        """Whether a payload stored under the descriptor ``encoding`` is sealed by a registered cipher."""
        return any(name in self.pipeline.registry.ciphers for name in encoding.split("+")[1:])

    def serialized_size(self, data: Any, metadata: dict[str, Any]) -> int:
        """The size :meth:`encode_event` reports, without sealing anything (a dry run must mint no data key)."""
        dumps = self.pipeline.serializer.dumps
        return len(dumps(data)) + (len(dumps(metadata)) if metadata else 0)

    def decode_event(self, rec: RecordedEvent) -> Event:  # noqa: C901 - one frame per event on the read path
        """The event of a stored record, upcast (a shredded one raises or is redacted, by configuration)."""
        redacted = False  # set only here: a caller's own SHREDDED_KEY in its metadata must not skip the chain
        if rec.encoding == self.plain:
            loads = self.loads
            try:
                data = loads(rec.data)
                meta = loads(rec.metadata) if rec.metadata else {}
                if not isinstance(meta, dict):
                    raise not_an_object(meta)
            except CodecError as e:  # corrupt JSON: named like any other payload that cannot be decoded
                raise self._event_error(e, rec) from e
            except EventSourceError:
                raise
            except UNREADABLE as e:  # text, not bytes: a record another tool wrote
                raise malformed(_record_row(rec), cause=e) from e
        else:
            try:
                data, meta = self._open_event(rec)
            except KeyShreddedError as e:
                if not self.redact:
                    raise self._event_error(e, rec) from e
                data, meta, redacted = None, {SHREDDED_KEY: e.scope}, True
            except CodecError as e:
                raise self._event_error(e, rec) from e
            except EventSourceError:  # a key store's configuration error (a ValueError too), a provider's
                raise
            except UNREADABLE as e:  # a descriptor, type or payload of another type: a record another tool wrote
                raise malformed(_record_row(rec), cause=e) from e
        etype = rec.event_type
        slow = self.chain.events.types
        if slow and etype in slow and not redacted:  # a redacted event has no data to upcast
            etype, data = self.chain.upcast_parts(etype, data, meta, (rec.event_id, rec.stream_id, rec.version))
        ev = make_event(  # positional, in Event's field order, without the frozen __init__'s cost
            rec.event_id,
            rec.stream_id,
            etype,
            data,
            meta,
            rec.version,
            rec.position,
            rec.timestamp,
            rec.correlation_id,
            rec.causation_id,
            rec.user_id,
            rec.tenant_id,
            rec.aggregate_id,
            rec.aggregate_type,
        )
        ups = self.upcasters.get(ev.event_type) if self.upcasters and not redacted else None
        return _upcast(ups, ev) if ups else ev

    def decode_stored(self, rec: RecordedEvent) -> tuple[Any, dict[str, Any]]:
        """Data and metadata of a stored record as written: decrypted and decoded, never upcast or redacted.

        For the offline rewrite (:mod:`eventsource.domain.rewrite`); a shredded key raises
        :class:`KeyShreddedError` whatever ``shredded_events`` says.
        """
        try:
            if rec.encoding != self.plain:
                return self._open_event(rec)
            meta = self.loads(rec.metadata) if rec.metadata else {}
            if not isinstance(meta, dict):
                raise not_an_object(meta)
            return self.loads(rec.data), meta
        except CodecError as e:
            raise self._event_error(e, rec) from e
        except EventSourceError:
            raise
        except UNREADABLE as e:  # a record another tool wrote (text, not bytes)
            raise malformed(_record_row(rec), cause=e) from e

    def _open_event(self, rec: RecordedEvent) -> tuple[Any, dict[str, Any]]:
        """Data and metadata of a sealed (or compressed) record, each under the associated data it was sealed with."""
        prefix = aad_prefix("e", rec.stream_id, rec.event_id, rec.version)
        scope = self.read_scope(rec) if self.scope_mode != "global" else None
        decode, etype = self.pipeline.decode, rec.event_type
        data = open_data(
            decode, rec.data, rec.encoding, prefix=prefix, scope=scope, event_type=etype, has_meta=bool(rec.metadata)
        )
        meta = (
            open_meta(decode, rec.metadata, rec.encoding, prefix=prefix, scope=scope, event_type=etype)
            if rec.metadata
            else {}
        )
        return data, meta

    @staticmethod
    def _event_error(e: CodecError, rec: RecordedEvent) -> CodecError:
        where = f"event {rec.event_id!r} (version {rec.version} of stream {rec.stream_id!r})"
        return _with_context(e, where, event_id=rec.event_id, stream_id=rec.stream_id)

    def decode_page(self, page: Sequence[RecordedEvent] | RowPage) -> Iterator[Event]:
        """The events of one page, lazily (an error surfaces at its event, after the ones before it).

        :class:`RowPage` rows become events straight from the row (no intermediate record) when no
        ``register_upcaster`` functions are registered: with the built-in JSON codec through its inlined
        loop (:mod:`eventsource.manager.fastrows`), else through the serializer's ``loads``; plain rows then
        go through their type's upcasting chain if it has one. Anything else goes through :meth:`decode_event`.
        """
        if not isinstance(page, RowPage):
            return map(self.decoder(), page)
        if self.upcasters:
            return map(self._general_row(page), page.rows)
        if self.json_scan is not None:
            return json_rows(page, self.json_scan, self.plain, self.chain, self._general_row(page))
        return self._plain_rows(page)

    def _general_row(self, page: RowPage) -> Callable[[EventRow], Event]:
        """The general path for one row of ``page``: a record (timestamp converted), then :meth:`decode_event`."""
        conv, decode, make = page.timestamp, self.decoder(), make_recorded_event

        def general(row: EventRow) -> Event:
            if conv is None:
                return decode(make(*row))
            (eid, sid, etype, ver, pos, data, meta, enc, _, c1, c2, uid, tid, aid, atype) = row
            ts = stored_time(conv, row)  # a timestamp of another type: CodecError naming the event
            return decode(make(eid, sid, etype, ver, pos, data, meta, enc, ts, c1, c2, uid, tid, aid, atype))

        return general

    def _plain_rows(self, page: RowPage) -> Iterator[Event]:
        """Rows through the serializer's ``loads`` (a serializer other than the built-in JSON one)."""
        conv = page.timestamp
        slow = self.chain.events.types  # only types with an upcasting chain are looked up
        upcast = self.chain.upcast_parts
        plain = self.plain
        loads = self.loads
        make = make_event
        general = self._general_row(page)
        for row in page.rows:
            (eid, sid, etype, ver, pos, data, meta, enc, ts, c1, c2, uid, tid, aid, atype) = row
            if enc != plain:
                yield general(row)
                continue
            if conv is not None:
                ts = conv(ts)
            d = loads(data)
            m = loads(meta) if meta else {}
            if not isinstance(m, dict):  # the general path names it
                yield general(row)
                continue
            if slow and etype in slow:
                etype, d = upcast(etype, d, m, (eid, sid, ver))
            yield make(eid, sid, etype, d, m, ver, pos, ts, c1, c2, uid, tid, aid, atype)

    @staticmethod
    def page_tail(page: Sequence[RecordedEvent] | RowPage) -> tuple[int, int]:
        """Version and position of a non-empty page's last event (where a resumed read continues)."""
        if isinstance(page, RowPage):
            row = page.rows[-1]
            return row[3], row[4]
        rec = page[-1]
        return rec.version, rec.position

    def register_upcaster(self, event_type: str, upcaster: Callable[[Event], Event]) -> None:
        """Transform events of ``event_type`` on read; applied in registration order."""
        self.upcasters.setdefault(event_type, []).append(upcaster)

    # ------------------------------------------------------------------ snapshots

    def encode_snapshot(
        self,
        stream_id: str,
        snapshot_id: str,
        tenant_id: str | None,
        data: Any,
        metadata: dict[str, Any],
        *,
        version: int,
    ) -> tuple[bytes, bytes, str, int]:
        """Stored data bytes, metadata bytes, descriptor and serialized size of one snapshot.

        With encryption on, the payloads are bound to ``(stream_id, snapshot_id, version, part)`` and
        sealed with the key of ``tenant_id`` / the stream under ``encryption_scope``.
        """
        pipeline = self.pipeline
        if self.cipher is None:
            raw, encoding, size = self._sized(data)
            if not metadata:
                return raw, b"", encoding, size
            meta, meta_size = self._metadata(metadata, encoding)
            return raw, meta, encoding, size + meta_size
        prefix = aad_prefix("s", stream_id, snapshot_id, version)
        scope = self.key_scope(stream_id=stream_id, tenant_id=tenant_id)
        aad = data_aad(prefix, None, has_meta=bool(metadata))
        raw, encoding, size = pipeline.encode_sized(data, aad=aad, scope=scope)
        if not metadata:
            return raw, b"", encoding, size
        meta, meta_size = self._metadata(metadata, encoding, aad=meta_aad(prefix, None), scope=scope)
        return raw, meta, encoding, size + meta_size

    def snapshot_readable(self, snap: RecordedSnapshot) -> bool:
        """Whether ``snap`` decodes here: its key stands and its bytes authenticate (what retention may cut by)."""
        try:
            self.decode_snapshot(snap.stream_id, snap)
        except (CodecError, ConfigurationError):  # shredded, damaged, no key here, cannot be upcast
            return False
        return True

    def decode_snapshot(self, sid: str, snap: RecordedSnapshot) -> Snapshot:
        """The snapshot of stream ``sid`` from its stored record (a shredded scope always raises)."""
        prefix = aad_prefix("s", sid, snap.snapshot_id, snap.version)
        scope = self.key_scope(stream_id=sid) if self.scope_mode == "stream" else None
        decode = self.pipeline.decode
        try:
            check_snapshot(snap)
            data = open_data(
                decode,
                snap.data,
                snap.encoding,
                prefix=prefix,
                scope=scope,
                event_type=None,
                has_meta=bool(snap.metadata),
            )
            meta = {}
            if snap.metadata:
                meta = open_meta(decode, snap.metadata, snap.encoding, prefix=prefix, scope=scope, event_type=None)
        except CodecError as e:
            where = f"snapshot {snap.snapshot_id!r} (version {snap.version} of stream {sid!r})"
            raise _with_context(e, where, snapshot_id=snap.snapshot_id, stream_id=sid) from e
        decoded = Snapshot(
            snapshot_id=snap.snapshot_id,
            stream_id=snap.stream_id,
            version=snap.version,
            data=data,
            metadata=meta,
            created_at=snap.created_at,
            aggregate_id=snap.aggregate_id,
            aggregate_type=snap.aggregate_type,
            position=snap.position,
        )
        return self.chain.upcast_snapshot(decoded) if self.chain.snapshots.types else decoded
