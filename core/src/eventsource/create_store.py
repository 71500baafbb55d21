"""The ``create_store`` setting every provider takes: whether ``connect()`` may create or migrate its store.

On (the default), ``connect()`` creates what is missing (tables, a schema, a stream, buckets, topics) and brings
the store to its current schema. Off, it creates and changes nothing: a store that is not there, or not at its
current schema, is refused with :class:`~eventsource.errors.StoreNotFoundError`, which names what is missing and
how to create it, and the server is left as it was. The CLI's commands that only read turn it off, so a mistyped
schema, prefix or path is reported instead of created. A provider's settings schema inherits
:class:`CreateStoreSettings`, and :func:`store_not_found` words the refusal. Checkpoint stores take it as a
constructor keyword (:func:`existing_checkpoints` builds one with it off, for what only reads checkpoints).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from marshmallow import Schema, fields

from eventsource.errors import StoreNotFoundError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from eventsource.checkpoints.base import CheckpointStore
    from eventsource.plugins import PluginHost
    from eventsource.provider import Provider

CREATE_STORE = "create_store"
"""The setting's name."""


class CreateStoreSettings(Schema):
    """The ``create_store`` setting; a provider's settings schema inherits it (``class S(CreateStoreSettings)``)."""

    create_store = fields.Boolean(load_default=True)
    """``True``: ``connect()`` creates and migrates the store as needed. ``False``: it creates and changes nothing,
    and refuses a store that is missing or needs a migration (:class:`~eventsource.errors.StoreNotFoundError`)."""


def store_not_found(store: str, why: str, *, missing: Sequence[str] = (), outdated: bool = False) -> StoreNotFoundError:
    """The refusal of ``connect()`` with ``create_store`` off.

    :param store: the store as it may be shown (masked URL, and the namespace: schema, prefix, stream...).
    :param why: what was found instead (``schema 'x' does not exist``, ``no file 'y.db'``...).
    :param missing: the names of what is missing (tables, streams, buckets, topics).
    :param outdated: the store is there, but needs a migration (which ``create_store`` off never runs).
    """
    head = f"the eventsource store at {store} needs a migration" if outdated else f"no eventsource store at {store}"
    done, do = ("migrated", "migrate") if outdated else ("created", "create")
    how = f"create_store is off, so nothing was {done} (connect once with create_store on, the default, to {do} it)"
    return StoreNotFoundError(
        f"{head}: {why}; {how}", store=store, why=why, missing=", ".join(missing), outdated=outdated
    )


def takes_create_store(cls: type[Provider]) -> bool:
    """Whether the provider class has the ``create_store`` setting (a third-party store may not have it yet)."""
    schema = cls.settings_schema
    return schema is not None and CREATE_STORE in schema().fields


def existing_checkpoints(host: PluginHost, url: str) -> tuple[CheckpointStore, bool]:
    """The checkpoint store at ``url`` with ``create_store`` off, and whether it took the keyword.

    A third-party checkpoint store that predates the keyword is built as it is (``False``): nothing then stops
    its ``connect()`` creating what it finds missing.
    """
    import inspect

    cls = host.checkpoint_stores.for_url(url)
    try:
        takes = CREATE_STORE in inspect.signature(cls).parameters
    except (TypeError, ValueError):  # no signature to look at: build it as it is
        takes = False
    return (host.create_checkpoint_store(url, **{CREATE_STORE: False}) if takes else cls(url)), takes
