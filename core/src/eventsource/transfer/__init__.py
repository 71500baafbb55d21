"""Moving a store's data: a verified copy between stores, and export to / import from JSON Lines.

Everything travels as stored (ids, versions, timestamps, envelope fields, payload bytes with their encoding
descriptor), so encrypted events stay encrypted and still decrypt at the target. Global positions are the
target's own: a copy writes a :class:`PositionMap` that translates checkpoints. See docs/transfer.md.
"""

from __future__ import annotations

from eventsource.transfer.jsonl import JsonlSink, JsonlSource, open_input
from eventsource.transfer.output import finish_output, open_output
from eventsource.transfer.posmap import PositionMap
from eventsource.transfer.run import TransferProgress, TransferResult, copy_store, export_store, import_store, transfer
from eventsource.transfer.sink import PLACEHOLDER_TYPE, StoreSink
from eventsource.transfer.source import ProviderSource, StreamFilter
from eventsource.transfer.verify import VerifyReport, verify_stores

__all__ = [
    "PLACEHOLDER_TYPE",
    "JsonlSink",
    "JsonlSource",
    "PositionMap",
    "ProviderSource",
    "StoreSink",
    "StreamFilter",
    "TransferProgress",
    "TransferResult",
    "VerifyReport",
    "copy_store",
    "export_store",
    "finish_output",
    "import_store",
    "open_input",
    "open_output",
    "transfer",
    "verify_stores",
]
