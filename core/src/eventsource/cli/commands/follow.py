"""``eventsource follow [STREAM]``: print events as they are appended, after catching up from ``--from``.

It runs a live subscription (all streams in the store's global order, or one stream) and prints one line
per event, flushed as each batch arrives, until Ctrl-C (exit 130, the CLI's convention) or ``--limit``
events (exit 0). ``--json`` prints one JSON object per event. A terminal sees the closing count on stderr.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from eventsource.cli.arguments import duration, positive
from eventsource.cli.exitcodes import EXIT_OK
from eventsource.cli.output import short, when
from eventsource.errors import ValidationError

if TYPE_CHECKING:
    from eventsource.cli.output import Output
    from eventsource.cli.parser import Commands
    from eventsource.cli.session import Session
    from eventsource.manager import EventSourcingManager
    from eventsource.model import Event
    from eventsource.subscriptions import Subscription


def start_point(text: str) -> int | str:
    """``--from``: a non-negative position (a version with STREAM) or ``end``."""
    if text == "end":
        return text
    if not text.isdigit():
        msg = f"takes a position (a whole number) or 'end', not {text[:40]!r}"
        raise argparse.ArgumentTypeError(msg)
    return int(text)


def register(commands: Commands) -> None:
    """Add the ``follow`` command."""
    p = commands.add("follow", "print events live as they are appended (catch up first; Ctrl-C stops)", follow)
    p.add_argument("stream", metavar="STREAM", nargs="?", default=None, help="one stream (default: every stream)")
    p.add_argument(
        "--from",
        dest="start",
        metavar="POSITION",
        type=start_point,
        default=0,
        help="first global position (with STREAM: version) to print; 'end': only new events (default: 0, all)",
    )
    p.add_argument(
        "--type", dest="types", metavar="T", action="append", default=None, help="only this event type (repeatable)"
    )
    p.add_argument("--prefix", metavar="P", default=None, help="only streams whose id starts with P")
    p.add_argument("--limit", metavar="N", type=positive, default=None, help="exit (0) after N events")
    p.add_argument(
        "--skip-undecodable",
        action="store_true",
        help="report and pass over events that cannot be decoded (default: stop with an error naming the event)",
    )
    p.add_argument(
        "--poll", metavar="DURATION", type=duration, default=1.0, help="longest wait if a wake-up is lost (default 1s)"
    )


def follow(session: Session) -> int:
    """Subscribe and print until interrupted or ``--limit`` events were printed."""
    a, out = session.args, session.out

    async def body(m: EventSourcingManager) -> int:
        from eventsource.errors import ConfigurationError, KeyProviderError, PayloadTooLargeError
        from eventsource.subscriptions import EventDecodeError

        sub = await _subscription(m, a)
        count = reported = 0
        talk = out.interactive or not out.as_json
        try:
            async with sub:
                if talk:
                    out.note(f"following {_what(a)} from {_where(a, sub)} (Ctrl-C to stop)")
                    out.err.flush()
                while a.limit is None or count < a.limit:
                    batch = await sub.next_batch(sub.page_size if a.limit is None else min(a.limit - count, 500))
                    if not batch:
                        break
                    for ev in batch:
                        if a.types and ev.event_type not in a.types:  # one stream: filtered here
                            continue
                        print_event(out, ev)
                        count += 1
                    out.out.flush()
                    reported = _report_skipped(out, sub, reported)
        except EventDecodeError as e:  # the way out here is a flag, not the API's on_decode_error="skip"
            d, cause = e.details, e.__cause__ or e
            way = (  # a key provider's or the configuration's failure stops a skipping subscription too
                "Such a failure is never skipped: fix the key provider or the configuration (--config FILE), "
                "then follow again"
                if isinstance(cause, (KeyProviderError, ConfigurationError, PayloadTooLargeError))
                else "Fix the codec, key or upcaster (--config FILE with the store's keys), or pass "
                "--skip-undecodable to report and skip it"
            )
            msg = (
                f"cannot decode the event at position {d['position']} (id {d['event_id']!r}, stream "
                f"{d['stream_id']!r} version {d['version']}): {type(cause).__name__}: {cause}. {way}"
            )
            raise EventDecodeError(msg, **d) from cause
        finally:
            if talk:
                noun = "event" if count == 1 else "events"
                out.note(f"{count:,} {noun} followed" + (f", {sub.skipped} skipped" if sub.skipped else ""))
        return EXIT_OK

    return session.with_manager(body, existing=True)


async def _subscription(m: EventSourcingManager, a: argparse.Namespace) -> Subscription:
    policy = "skip" if a.skip_undecodable else "raise"
    if a.poll <= 0:
        msg = "--poll must be a positive number of seconds"
        raise ValidationError(msg, field="poll")
    if a.stream is not None:
        if a.prefix is not None:
            msg = "--prefix applies to every stream; with STREAM leave it out"
            raise ValidationError(msg, field="prefix")
        start = a.start if a.start == "end" else max(a.start, 1)  # end: of a stream not created yet, its first
        return m.subscribe(stream_id=a.stream, from_version=start, poll_interval=a.poll, on_decode_error=policy)
    # end: the store's end_position, taken when the subscription starts (on PostgreSQL below every running
    # transaction, so an append already under way when follow starts is printed when it commits)
    return m.subscribe(
        stream_prefix=a.prefix, event_types=a.types, from_position=a.start, poll_interval=a.poll, on_decode_error=policy
    )


def _what(a: argparse.Namespace) -> str:
    what = f"stream {a.stream!r}" if a.stream else "every stream"
    if a.prefix:
        what += f" starting with {a.prefix!r}"
    if a.types:
        what += f" (types {', '.join(a.types)})"
    return what


def _where(a: argparse.Namespace, sub: Subscription) -> str:
    unit = "version" if a.stream else "position"
    return f"{unit} {sub.position + 1}"


def _report_skipped(out: Output, sub: Subscription, reported: int) -> int:
    """Name each skip the subscription kept; count the ones it dropped (one read can skip more than it keeps).

    ``reported``: skips told so far; returns the new figure.
    """
    from eventsource.subscriptions.subscription import SKIPPED_KEPT

    kept = list(sub.skipped_events)
    sub.skipped_events.clear()
    if (unnamed := sub.skipped - reported - len(kept)) > 0:
        out.note(f"{unnamed:,} more undecodable events skipped before these (not named: a subscription keeps "
                 f"the latest {SKIPPED_KEPT})")  # fmt: skip
    for s in kept:
        out.note(f"skipped undecodable event at position {s.position} (id {s.event_id}, {s.stream_id}@{s.version}): "
                 f"{s.error}")  # fmt: skip
    return sub.skipped


def print_event(out: Output, ev: Event) -> None:
    """One event: a JSON line, or position, time, stream@version, type and data."""
    if out.as_json:
        out.json(ev)
        return
    where = f"{ev.stream_id}@{ev.version}"
    out.line(f"{ev.position:>7}  {when(ev.timestamp)}  {where}  {ev.event_type:<20} {short(ev.data)}")
