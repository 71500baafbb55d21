"""The keyword forms of the request objects (eventsource.request_args) never drift from the dataclasses:
same fields in the same order, a key required exactly when its field has no default, the same types; and
each request-style method (async manager and sync facade) is typed by its pair."""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Sequence
from typing import Any

import pytest
from eventsource import (
    AppendEventRequest,
    AppendEventsBatchRequest,
    CreateSnapshotRequest,
    CreateStreamRequest,
    EventSourcingManager,
    GetEventsRequest,
    SyncEventSourcingManager,
)
from eventsource.domain import DomainEvent
from eventsource.request_args import (
    AppendEventArgs,
    AppendEventsBatchArgs,
    CreateSnapshotArgs,
    CreateStreamArgs,
    GetEventsArgs,
)

TYPE_CHECKING_NAMES = {"DomainEvent": DomainEvent, "Sequence": Sequence}
PAIRS: dict[str, tuple[type, Any]] = {
    "create_stream": (CreateStreamRequest, CreateStreamArgs),
    "append_event": (AppendEventRequest, AppendEventArgs),
    "append_events_batch": (AppendEventsBatchRequest, AppendEventsBatchArgs),
    "get_events": (GetEventsRequest, GetEventsArgs),
    "create_snapshot": (CreateSnapshotRequest, CreateSnapshotArgs),
}


@pytest.mark.parametrize("method", sorted(PAIRS))
def test_the_keyword_form_has_the_request_objects_fields_defaults_and_types(method: str) -> None:
    request, args = PAIRS[method]
    fields = dataclasses.fields(request)
    assert list(args.__annotations__) == [f.name for f in fields]
    no_default = {
        f.name for f in fields if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }
    assert args.__required_keys__ == no_default
    # (the model names some types only for type checkers: DomainEvent, Sequence)
    assert typing.get_type_hints(args) == typing.get_type_hints(request, localns=TYPE_CHECKING_NAMES)


@pytest.mark.parametrize("cls", [EventSourcingManager, SyncEventSourcingManager])
@pytest.mark.parametrize("method", sorted(PAIRS))
def test_each_request_style_method_takes_the_request_or_its_keyword_form(method: str, cls: type) -> None:
    request, args = PAIRS[method]
    by_request, by_keywords = typing.get_overloads(getattr(cls, method))
    first = list(inspect.signature(by_request).parameters.values())[1:]
    assert (first[0].name, first[0].annotation, first[0].kind) == (
        "request",
        request.__name__,
        first[0].POSITIONAL_ONLY,
    )
    kwargs = inspect.signature(by_keywords).parameters["kwargs"]
    assert kwargs.annotation == f"Unpack[{args.__name__}]"
    assert kwargs.kind is kwargs.VAR_KEYWORD
