"""``eventsource retention --yes``: apply the configured retention policies (or ``--policy SPEC``...) now.

The policies are built and checked before anything connects, and the run is refused without ``--yes`` (it
deletes events). Each policy runs on each store in turn, with a line when it starts and one when it ends; a
policy a store cannot carry out is reported (exit 6), one that fails is reported and the rest still run
(exit 1). A store that is not there is refused, never created. Policies: ``docs/internals/retention.md``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from typing import TYPE_CHECKING, Any

from eventsource.cli.errors import Interrupted, UsageError
from eventsource.cli.exitcodes import EXIT_ERROR, EXIT_OK, EXIT_UNSUPPORTED
from eventsource.errors import ConfigurationError, RetentionError, UnsupportedOperationError

if TYPE_CHECKING:
    from datetime import datetime

    from eventsource.cli.parser import Commands
    from eventsource.cli.session import Session
    from eventsource.config import ManagerConfig
    from eventsource.manager import EventSourcingManager
    from eventsource.retention import PolicyOutcome, RetentionPolicy, RetentionReport

VALUE_PARAMETER = {"max_age": "max_age", "max_count": "max_events", "before_snapshot": "keep_events"}
"""The parameter ``--policy NAME=VALUE`` sets, per built-in policy."""

_UNITS = (("d", 86400), ("h", 3600), ("m", 60))


def register(commands: Commands) -> None:
    """Add the ``retention`` command."""
    p = commands.add(
        "retention",
        "delete old events now by the configured retention policies, or by --policy (needs --yes)",
        retention,
    )
    p.add_argument(
        "--policy",
        dest="policies",
        metavar="SPEC",
        action="append",
        default=None,
        help="run this policy instead of the configured ones (repeatable): max_age=30d, max_count=1000 (events "
        "kept per stream), before_snapshot or before_snapshot=10 (events kept below the snapshot), a policy "
        'name, or a JSON object such as \'{"policy": "max_count", "max_events": 1000}\'',
    )
    p.add_argument("--provider", metavar="NAME", help="run on this configured store only (default: every one)")
    p.add_argument("--yes", action="store_true", help="really delete: without it the command refuses and says why")
    p.epilog = (
        "exit codes: 0 every policy ran on every store; 6 a store cannot run a policy; 1 a policy failed (the others "
        "still run); 2 a bad --policy, no policy, or no --yes; 3 the store does not exist (it is never created); "
        "130 Ctrl-C (what was deleted stays deleted: run it again to finish)"
    )


def parse_spec(spec: str) -> dict[str, Any]:
    """One ``--policy`` value as the ``{"policy": name, **params}`` dict ``apply_retention`` takes."""
    text = spec.strip()
    if text.startswith("{"):
        try:
            given = json.loads(text)
        except json.JSONDecodeError as e:
            msg = f"--policy {spec!r} is not valid JSON ({e.msg} at column {e.colno})"
            raise UsageError(msg, field="--policy") from None
        except RecursionError:
            msg = f"--policy {spec[:40]!r}... nests too deeply to be read as JSON"
            raise UsageError(msg, field="--policy") from None
        if not isinstance(given, dict) or not isinstance(given.get("policy"), str):
            msg = f'--policy {spec!r}: a JSON policy is an object with a "policy" name'
            raise UsageError(msg, field="--policy")
        return given
    name, eq, raw = (part.strip() for part in text.partition("="))
    if not name:
        msg = f"--policy {spec!r}: give a policy name, e.g. max_age=30d, max_count=1000 or before_snapshot"
        raise UsageError(msg, field="--policy")
    if not eq:
        return {"policy": name}
    if name not in VALUE_PARAMETER:
        known = ", ".join(f"{k}=VALUE" for k in VALUE_PARAMETER)
        msg = f"--policy {spec!r}: NAME=VALUE is for {known}; give other policies as a JSON object"
        raise UsageError(msg, field="--policy")
    if not raw:
        msg = f"--policy {spec!r}: no value after '='"
        raise UsageError(msg, field="--policy")
    value: Any = raw
    if name != "max_age":  # a count; a word stays a string, so the policy's own message names what it got
        with contextlib.suppress(ValueError):
            value = int(raw)
    return {"policy": name, VALUE_PARAMETER[name]: value}


def _seconds_text(seconds: float) -> str:
    for unit, size in _UNITS:
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def label(policy: RetentionPolicy) -> str:
    """A policy as ``--policy`` spells it (``max_age=30d``, ``max_count=1000``), else its name and parameters."""
    params = {k: v for k, v in policy.describe().items() if k != "policy"}
    shown = {k: _seconds_text(v) if k == "max_age" else v for k, v in params.items()}
    if list(shown) == [VALUE_PARAMETER.get(policy.name)]:
        return f"{policy.name}={next(iter(shown.values()))}"
    return " ".join([policy.name, *(f"{k}={v}" for k, v in shown.items())])


def chosen_policies(session: Session, cfg: ManagerConfig) -> list[RetentionPolicy]:
    """The policies this run applies, built (and so checked) before anything connects."""
    from eventsource.retention import build_policies

    registry = session.plugin_host().retention_policies
    if session.args.policies is None:
        policies = build_policies(registry, cfg)
        if not policies:
            msg = (
                "no retention policy is configured (retention_period or retention_policies in --config or "
                "EVENTSOURCE_* variables): pass --policy, e.g. --policy max_age=30d"
            )
            raise UsageError(msg, field="--policy")
        return policies
    out = []
    for spec in session.args.policies:
        entry = parse_spec(spec)
        one = dataclasses.replace(cfg, retention_policies=[entry], retention_period=None)
        try:
            out.extend(build_policies(registry, one))
        except ConfigurationError as e:
            raise UsageError(f"--policy {spec!r}: {e}", field="--policy") from e
    return out


def _targets(session: Session, cfg: ManagerConfig) -> list[str]:
    """The configured stores' names this run touches (``--provider``: that one, if configured)."""
    names = list(cfg.providers)
    chosen = session.args.provider
    if chosen is None:
        return names
    if chosen not in names:
        msg = f"--provider {chosen!r} is not a configured store (configured: {', '.join(names)})"
        raise UsageError(msg, field="--provider")
    return [chosen]


def _refuse(session: Session, cfg: ManagerConfig, policies: list[RetentionPolicy], targets: list[str]) -> None:
    where = ", ".join(session.shown(str(cfg.providers[n]["url"])) for n in targets)
    what = "; ".join(label(p) for p in policies)
    msg = f"retention deletes events: would run {what} on {where}; pass --yes to run it"
    raise UsageError(msg, field="--yes")


def retention(session: Session) -> int:
    """Check the policies, refuse without ``--yes``, then run each policy on each store, reporting as it goes."""
    from eventsource.cli.config import load_config
    from eventsource.model import utcnow
    from eventsource.retention import RetentionReport

    a, out = session.args, session.out
    cfg = load_config(a)
    session.scrub.add_config(cfg)
    policies = chosen_policies(session, cfg)
    targets = _targets(session, cfg)
    if not a.yes:
        _refuse(session, cfg, policies, targets)

    outcomes: list[PolicyOutcome] = []
    running: list[str] = []  # the policy under way and its store, for a Ctrl-C's note

    async def body(m: EventSourcingManager) -> int:
        started = now = utcnow()
        for name in targets:
            kind = m.get_provider(name).kind
            for policy in policies:
                out.line(f"{name} ({kind}): {label(policy)}: running...")
                out.out.flush()
                running[:] = [f"{label(policy)} on {name!r}"]
                outcome = await _run_one(m, policy, name, now)
                running.clear()
                if outcome.message:  # a driver's error may carry the URL with its password
                    outcome = dataclasses.replace(outcome, message=session.scrub(outcome.message))
                outcomes.append(outcome)
                out.line(f"{name} ({kind}): {policy.name}: {_ended(outcome)}")
                out.out.flush()
        report = RetentionReport(started_at=started, finished_at=utcnow(), outcomes=tuple(outcomes))
        return _summary(session, report)

    try:
        return session.with_manager(body, existing=True)
    except KeyboardInterrupt:  # say what is gone and how to finish; the CLI then exits 130
        during = f" while running {running[0]}" if running else ""
        maybe = ", and maybe some by the one under way" if running else ""
        deleted = sum(o.deleted_events for o in outcomes)
        msg = (
            f"retention stopped by Ctrl-C{during}: what it deleted stays deleted ({deleted:,} events by the "
            f"{len(outcomes)} policy run(s) that finished{maybe}); run the same command again to apply the rest"
        )
        raise Interrupted(msg) from None


async def _run_one(m: EventSourcingManager, policy: RetentionPolicy, name: str, now: datetime) -> PolicyOutcome:
    """One policy on one store, its outcome whatever happened (``unsupported`` and ``failed`` included)."""
    from eventsource.retention import PolicyOutcome

    try:
        return (await m.apply_retention([policy], provider=name, now=now)).outcomes[0]
    except UnsupportedOperationError as e:
        params = {k: v for k, v in policy.describe().items() if k != "policy"}
        return PolicyOutcome(name, policy.name, "unsupported", message=e.message, parameters=params)
    except RetentionError as e:
        outcome: PolicyOutcome = e.report.outcomes[0]
        return outcome


def _ended(o: PolicyOutcome) -> str:
    counts = f"deleted {o.deleted_events:,} events, {o.streams_touched:,} streams touched"
    if o.status == "ok":
        return counts
    if o.status == "unsupported":
        return f"unsupported: {o.message}"
    return f"FAILED: {o.message} ({counts} before it failed)"


def _summary(session: Session, report: RetentionReport) -> int:
    """The last line (or the JSON report) and the exit code: 1 if a policy failed, else 6 if one was unsupported."""
    out = session.out
    outcomes = report.outcomes
    failed = [o for o in outcomes if o.status == "failed"]
    unsupported = [o for o in outcomes if o.status == "unsupported"]
    code = EXIT_ERROR if failed else EXIT_UNSUPPORTED if unsupported else EXIT_OK
    deleted = report.deleted()
    touched = sum(o.streams_touched for o in outcomes)
    out.json({**report.as_dict(), "deleted_events": deleted, "streams_touched": touched, "exit_code": code})
    stores = len({o.provider for o in outcomes})
    out.line(
        f"retention: deleted {deleted:,} events, {touched:,} streams touched, on {stores} store(s)"
        f" ({len(outcomes) - len(failed) - len(unsupported)} ok, {len(unsupported)} unsupported, {len(failed)} failed)"
    )
    if code != EXIT_OK and not out.as_json:
        bad = ", ".join(f"{o.policy} on {o.provider!r} {o.status}" for o in failed + unsupported)
        out.note(f"error: retention did not complete: {bad} (see above)")
    return code
