"""A kit test that cannot apply to a store's declarations is reported SKIPPED naming the capability, never PASSED.

The retention, retention-primitive, read and fault parts of the kit run here (a pytest run of their own) on
memory stores that declare operations unsupported and raise if asked anyway. Each feature's refusal test
must pass (it checks the error and that the store is unchanged); every test of the feature must be skipped
with the missing operation in its reason. Before this, they checked the refusal and returned: PASSED.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from conftest import ON_MEMORY

if TYPE_CHECKING:
    import pytest
    from _pytest.reports import TestReport

pytest_plugins = ["pytester"]

STORES = '''
import uuid

import pytest
from eventsource.memory import MemoryProvider
from eventsource.provider import Capabilities
from eventsource.testing.faults import ReadFaultSuite
from eventsource.testing.reads import PagedReadSuite
from eventsource.testing.retention import RetentionSuite
from eventsource.testing.retention_primitives import RetentionPrimitiveSuite


class Declaring(MemoryProvider):
    """A memory store declaring ``UNSUPPORTED`` unsupported, and raising if asked anyway."""

    UNSUPPORTED = frozenset()

    def __init_subclass__(cls) -> None:
        cls.capabilities = Capabilities(global_order="total", concurrency="in_process", unsupported=cls.UNSUPPORTED)

    async def truncate_stream(self, stream_id, before_version, *, if_holds=None):
        if "truncate_stream" in self.UNSUPPORTED:
            raise self.unsupported("truncate_stream")
        return await super().truncate_stream(stream_id, before_version, if_holds=if_holds)

    async def delete_events_before(self, cutoff, stream_id=None):
        if "delete_events_before" in self.UNSUPPORTED:
            raise self.unsupported("delete_events_before")
        return await super().delete_events_before(cutoff, stream_id)

    async def save_snapshot(self, snapshot):
        if "save_snapshot" in self.UNSUPPORTED:
            raise self.unsupported("save_snapshot")
        return await super().save_snapshot(snapshot)

    async def read_all_pages(self, *, from_position=0, page_size=500):
        if "read_all" in self.UNSUPPORTED:
            raise self.unsupported("read_all")
        async for page in super().read_all_pages(from_position=from_position, page_size=page_size):
            yield page


class NoTruncate(Declaring):
    UNSUPPORTED = frozenset({"truncate_stream"})


class NoDeletes(Declaring):
    UNSUPPORTED = frozenset({"truncate_stream", "delete_events_before"})


class NoSnapshots(Declaring):
    UNSUPPORTED = frozenset({"save_snapshot"})


class NoReadAll(Declaring):
    UNSUPPORTED = frozenset({"read_all"})


{ON_MEMORY}


class TestRetentionNoTruncate(RetentionSuite):
    provider = _on(NoTruncate)


class TestRetentionNoDeletes(RetentionSuite):
    provider = _on(NoDeletes)


class TestRetentionNoSnapshots(RetentionSuite):
    provider = _on(NoSnapshots)


class TestPrimitivesNoDeletes(RetentionPrimitiveSuite):
    provider = _on(NoDeletes)


class TestFaultsNoReadAll(ReadFaultSuite):
    provider = _on(NoReadAll)


class TestReadsNoReadAll(PagedReadSuite):
    provider = _on(NoReadAll)
'''

REFUSAL_MAX_AGE = "test_store_that_cannot_apply_max_age_reports_and_refuses_it"
REFUSAL_MAX_COUNT = "test_store_that_cannot_apply_max_count_reports_and_refuses_it"
REFUSAL_BEFORE_SNAPSHOT = "test_store_that_cannot_apply_before_snapshot_reports_and_refuses_it"
MAX_AGE = (
    "test_max_age_deletes_only_older_events",
    "test_max_age_deletes_an_older_event_behind_a_newer_one",
    "test_retention_period_is_the_default_policy",
    "test_a_stream_emptied_by_retention_keeps_its_version",
)
MAX_COUNT = (
    "test_max_count_keeps_the_latest_events_of_each_stream",
    "test_a_stream_created_again_during_a_run_is_left_whole[max_count]",
    "test_what_retention_deleted_is_gone_for_every_reader",
    "test_encrypted_events_stay_readable_after_retention",
)
BEFORE_SNAPSHOT = (
    "test_before_snapshot_truncates_what_the_latest_snapshot_covers",
    "test_a_stream_created_again_during_a_run_is_left_whole[before_snapshot]",
    "test_before_snapshot_keeps_a_margin",
)
RACE = "test_two_runs_with_different_cutoffs_racing_count_each_event_once"  # max_age, then max_count
APPLY_ALWAYS = ("test_policies_from_configuration_report_each_outcome", "test_a_scheduled_run_applies_the_policies")

EXPECTED: dict[str, tuple[set[str], dict[str, str]]] = {
    # class: (tests that must pass, {test that must be skipped: the operation its reason names})
    "TestRetentionNoTruncate": (
        {REFUSAL_MAX_COUNT, REFUSAL_BEFORE_SNAPSHOT, *MAX_AGE, *APPLY_ALWAYS},
        dict.fromkeys((*MAX_COUNT, *BEFORE_SNAPSHOT, RACE), "truncate_stream")
        | {REFUSAL_MAX_AGE: "delete_events_before"},
    ),
    "TestRetentionNoDeletes": (
        {REFUSAL_MAX_AGE, REFUSAL_MAX_COUNT, REFUSAL_BEFORE_SNAPSHOT, *APPLY_ALWAYS},
        dict.fromkeys((*MAX_AGE, RACE), "delete_events_before")
        | dict.fromkeys((*MAX_COUNT, *BEFORE_SNAPSHOT), "truncate_stream"),
    ),
    "TestRetentionNoSnapshots": (
        {REFUSAL_BEFORE_SNAPSHOT, *MAX_AGE, *MAX_COUNT, RACE, *APPLY_ALWAYS},
        dict.fromkeys(BEFORE_SNAPSHOT, "save_snapshot")
        | {REFUSAL_MAX_AGE: "delete_events_before", REFUSAL_MAX_COUNT: "truncate_stream"},
    ),
    "TestPrimitivesNoDeletes": (
        {
            "test_store_that_cannot_truncate_refuses_unchanged",
            "test_store_that_cannot_delete_by_time_refuses_unchanged",
        },
        {
            "test_truncate_stream_keeps_versions": "truncate_stream",
            "test_truncate_if_holds_leaves_another_incarnation": "truncate_stream",
            **{f"test_truncating_a_missing_stream_raises_stream_not_found[{v}]": "truncate_stream" for v in (0, 1, 5)},
            "test_delete_events_before_a_time": "delete_events_before",
        },
    ),
    "TestFaultsNoReadAll": (
        {"test_read_stream_resumes_after_a_fault_mid_read_on_the_page_path"},
        {"test_read_all_resumes_after_a_fault_mid_read_on_the_page_path": "read_all"},
    ),
    "TestReadsNoReadAll": (
        {"test_page_views_hold_the_same_events_as_the_record_views", "test_store_that_cannot_read_all_refuses_it"},
        {"test_read_all_page_view_holds_the_same_events_as_read_all": "read_all"},
    ),
}
"""Every test of each class run, and how it must be reported (the reads part runs only its page-view tests)."""


def _skip_reason(report: TestReport) -> str:
    longrepr = report.longrepr
    assert isinstance(longrepr, tuple), longrepr
    return str(longrepr[2]).removeprefix("Skipped: ")


def test_tests_that_cannot_apply_are_skipped_naming_the_capability_and_the_refusals_pass(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_declaring_stores=STORES.replace("{ON_MEMORY}", ON_MEMORY))
    run = pytester.inline_run(
        "-p", "no:cacheprovider", "-o", "asyncio_mode=auto", "-o", "asyncio_default_fixture_loop_scope=function",
        "-k", "not TestReadsNoReadAll or page_view or refuses",
    )  # fmt: skip
    outcomes: dict[str, dict[str, tuple[str, str]]] = {}
    for report in run.getreports("pytest_runtest_logreport"):
        if report.when == "call" or (report.when == "setup" and not report.passed):
            cls, test = report.nodeid.split("::")[1:]
            reason = _skip_reason(report) if report.skipped else ""
            outcomes.setdefault(cls, {})[test] = (report.outcome, reason)
    assert sorted(outcomes) == sorted(EXPECTED)
    for cls, (passed, skipped) in EXPECTED.items():
        got = outcomes[cls]
        for test, op in skipped.items():
            outcome, reason = got.get(test, ("not run", ""))
            assert outcome == "skipped", f"{cls}::{test} reported {outcome}: it cannot apply without {op!r}"
            assert reason.startswith("capability: ") and f"'{op}'" in reason, f"{cls}::{test}: {reason!r}"
        for test in passed:
            assert got.get(test, ("not run",))[0] == "passed", f"{cls}::{test} {got.get(test)}"
        assert sorted(got) == sorted(passed | set(skipped)), f"{cls}: the kit's tests changed; update EXPECTED"
