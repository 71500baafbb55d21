"""The conformance kit skips only on a declared capability, naming it; never on a store's kind or a probe.

Every ``pytest.skip`` in ``eventsource.testing`` is read from the source: its reason must start with a
``Capabilities`` field and its value (``global_order=per_stream: ...``), ``unsupported: <operation>``, or
``capability: `` followed by a field or an operation name. A reason built from ``provider.kind`` or any other
runtime value fails here. The ``if`` above each skip is read too (following the local names it tests to their
assignments): it may not probe the store (its ``kind``, a method, ``type()``, an ``await``), so an honest-looking
reason cannot hide a skip keyed on something other than a declaration.
"""

from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path

import pytest
from eventsource.memory import MemoryProvider
from eventsource.provider import OPERATIONS, Capabilities, Provider
from eventsource.testing.subscriptions import SubscriptionSuite

KIT = Path(__file__).resolve().parent.parent / "core" / "src" / "eventsource" / "testing"
FIELDS = {f.name for f in dataclasses.fields(Capabilities)} - {"extra", "unsupported"}


def _constants(tree: ast.Module) -> dict[str, str]:
    """Module-level ``NAME = "text"`` assignments (a reason may name an operation through one)."""
    out: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            out.update({t.id: node.value.value for t in node.targets if isinstance(t, ast.Name)})
    return out


def _render(arg: ast.expr, constants: dict[str, str]) -> str | None:
    """The reason's text, each runtime value as ``{}`` (a module constant as its value); ``None`` if not a string."""
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return arg.value
    if not isinstance(arg, ast.JoinedStr):
        return None
    parts = []
    for v in arg.values:
        if isinstance(v, ast.Constant):
            parts.append(str(v.value))
        elif isinstance(v, ast.FormattedValue) and isinstance(v.value, ast.Name) and v.value.id in constants:
            value = constants[v.value.id]
            parts.append(repr(value) if v.conversion == ord("r") else value)
        else:
            parts.append("{}")
    return "".join(parts)


def _skips() -> list[tuple[str, str | None]]:
    found = []
    for path in sorted(KIT.glob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        constants = _constants(tree)
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "skip"
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "pytest"
            ):
                where = f"{path.name}:{node.lineno}"
                found.append((where, _render(node.args[0], constants) if node.args else None))
    return found


PROBES = ({name for name in vars(Provider) if not name.startswith("_")} | {"kind", "__class__"}) - {"capabilities"}
"""Attributes a skip condition must not read off the store: what it is or does, rather than what it declares."""


def _probe_in(expr: ast.expr) -> str | None:
    """The first probe of the store in ``expr`` (``.kind``, a method, ``type()``...), else ``None``."""
    for node in ast.walk(expr):
        if isinstance(node, ast.Await):
            return "an await (the store asked at test time)"
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _CALLS:
            return f"{node.func.id}()"
        if isinstance(node, ast.Attribute) and node.attr in PROBES:
            on_caps = isinstance(node.value, ast.Attribute) and node.value.attr == "capabilities"
            if not on_caps:
                return f".{node.attr}"
    return None


_CALLS = {"type", "isinstance", "hasattr", "getattr", "issubclass"}


def _condition_probes(tree: ast.Module) -> list[tuple[int, str]]:
    """``(line, probe)`` for each ``pytest.skip`` under an ``if`` that tests the store by a probe.

    The names the test reads are followed to their assignments in the same function (``head = await
    provider.head_position()`` then ``if head is None``), so a probe cannot hide behind a local variable.
    """
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "skip"):
            continue
        tests: list[ast.expr] = []
        func: ast.AST | None = None
        up: ast.AST = node
        while up in parents:
            up = parents[up]
            if isinstance(up, ast.If):
                tests.append(up.test)
            if isinstance(up, (ast.FunctionDef, ast.AsyncFunctionDef)):
                func = up
                break
        assigned: dict[str, list[ast.expr]] = {}
        for n in ast.walk(func) if func is not None else ():
            if isinstance(n, (ast.Assign, ast.AnnAssign)) and n.value is not None:
                targets = n.targets if isinstance(n, ast.Assign) else [n.target]
                for t in targets:
                    for name in ast.walk(t):
                        if isinstance(name, ast.Name):
                            assigned.setdefault(name.id, []).append(n.value)
        seen: set[str] = set()
        while tests:
            expr = tests.pop()
            probe = _probe_in(expr)
            if probe is not None:
                found.append((node.lineno, probe))
                break
            for name in ast.walk(expr):
                if isinstance(name, ast.Name) and name.id not in seen:
                    seen.add(name.id)
                    tests.extend(assigned.get(name.id, []))
    return found


NEEDED = "capability: the store declares {} unsupported (this test needs it)"
"""base.py's one skip naming a runtime value: the operation an UnsupportedOperationError named, skipped only when the
store declares it unsupported (tests/test_plugin_authoring.py checks that an undeclared one still fails)."""


def _names_a_declaration(reason: str) -> bool:
    if reason == NEEDED:
        return True
    m = re.match(r"(\w+)=", reason)
    if m:
        return m.group(1) in FIELDS
    m = re.match(r"unsupported: (\w+)", reason)
    if m:
        return m.group(1) in OPERATIONS
    if reason.startswith("capability: "):
        return any(re.search(rf"\b{re.escape(n)}\b", reason) for n in (*FIELDS, *OPERATIONS))
    return False


def test_the_kit_has_skips_to_check() -> None:
    assert len(_skips()) >= 10  # the scan finds the kit's skips (a wrong path would pass the next test vacuously)


@pytest.mark.parametrize(("where", "reason"), _skips(), ids=[w for w, _ in _skips()])
def test_every_kit_skip_names_a_declared_capability(where: str, reason: str | None) -> None:
    assert reason is not None, f"{where}: pytest.skip without a literal reason"
    assert _names_a_declaration(reason), (
        f"{where}: skip reason {reason!r} names no Capabilities field ({sorted(FIELDS)}) nor an unsupported operation"
    )


@pytest.mark.parametrize("path", sorted(KIT.rglob("*.py")), ids=lambda p: str(p.relative_to(KIT)))
def test_no_kit_skip_is_keyed_on_a_probe_of_the_store(path: Path) -> None:
    """The reason names a declaration; the condition must read one too, not the store's kind or methods."""
    probes = _condition_probes(ast.parse(path.read_text(), str(path)))
    assert not probes, f"{path.name}: skips keyed on a probe of the store, not its Capabilities: {probes}"


def test_a_probe_keyed_condition_is_refused_however_honest_its_reason() -> None:
    """The condition check can fail: the three conditions the kit used before the declarations are probes."""
    old = [
        'if provider.kind == "memory":\n    pytest.skip("live_wakeup=False: x")',
        'head = await provider.head_position()\nif head is None:\n    pytest.skip("head_position=False: x")',
        'if type(provider).wait_for_change is Provider.wait_for_change:\n    pytest.skip("live_wakeup=False: x")',
    ]
    for body in old:
        src = "async def t(provider):\n" + "\n".join("    " + line for line in body.splitlines())
        assert _condition_probes(ast.parse(src)), body
    ok = "def t(provider):\n    if not provider.capabilities.head_position:\n        pytest.skip('head_position=False')"
    assert _condition_probes(ast.parse(ok)) == []


def test_the_kit_uses_no_other_way_to_skip() -> None:
    for path in sorted(KIT.glob("*.py")):
        text = path.read_text()
        for banned in ("pytest.mark.skip", "skipif", "xfail", "importorskip", "skip.Exception", "from pytest import"):
            assert banned not in text, f"{path.name} uses {banned}: the kit skips only by pytest.skip naming one"


def test_a_kind_keyed_reason_is_refused() -> None:
    """The check itself can fail: the reasons the kit used to give are not declarations."""
    assert not _names_a_declaration("{}: head_position() unknown; a start beyond the store cannot be detected")
    assert not _names_a_declaration("memory: close() releases nothing (the data stays readable)")
    assert not _names_a_declaration("unsupported: frobnicate")
    assert _names_a_declaration("live_wakeup=False: subscriptions poll")


class _PollingMemory(MemoryProvider):
    """A store with neither a change signal nor a known head: the base ``Provider`` methods, declared so."""

    kind = "memory-polling"
    capabilities = Capabilities(global_order="total", concurrency="in_process", cross_process_reads=False)
    wait_for_change = Provider.wait_for_change
    head_position = Provider.head_position


async def test_a_store_declaring_no_head_and_no_wakeup_is_skipped_naming_them() -> None:
    p = _PollingMemory()
    suite = SubscriptionSuite()
    await suite.test_live_capabilities_are_declared_as_implemented(p)  # the declaration is true
    with pytest.raises(pytest.skip.Exception, match=r"^head_position=False: "):
        await suite.test_position_beyond_the_store_is_refused(None, p, None)  # type: ignore[arg-type]
    with pytest.raises(pytest.skip.Exception, match=r"^live_wakeup=False: "):
        await suite.test_deleted_tail_does_not_make_a_waiting_subscription_spin(None, p, None)  # type: ignore[arg-type]


async def test_a_live_declaration_the_store_does_not_keep_fails_the_kit() -> None:
    class Lying(_PollingMemory):
        capabilities = dataclasses.replace(_PollingMemory.capabilities, head_position=True)

    with pytest.raises(AssertionError, match="head_position=True"):
        await SubscriptionSuite().test_live_capabilities_are_declared_as_implemented(Lying())


async def test_a_store_that_overrides_the_live_methods_but_forgot_to_declare_them_fails_the_kit() -> None:
    """A third-party store written before the declarations (it overrides both methods) is told, not quietly skipped."""

    class Undeclared(MemoryProvider):
        kind = "memory-undeclared"
        capabilities = Capabilities(global_order="total", concurrency="in_process", cross_process_reads=False)

    with pytest.raises(AssertionError, match="declares head_position=False"):
        await SubscriptionSuite().test_live_capabilities_are_declared_as_implemented(Undeclared())

    class HeadDeclared(Undeclared):
        capabilities = dataclasses.replace(Undeclared.capabilities, head_position=True)

    with pytest.raises(AssertionError, match="declares live_wakeup=False"):
        await SubscriptionSuite().test_live_capabilities_are_declared_as_implemented(HeadDeclared())


def _early_returns(tree: ast.Module) -> list[tuple[int, str]]:
    """``(line, test)`` for each ``return`` in a kit test method's own body (nested functions are theirs)."""
    found = []
    for cls in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)):
        for func in cls.body:
            if not (isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)) and func.name.startswith("test_")):
                continue
            stack: list[ast.AST] = list(func.body)
            while stack:
                node = stack.pop()
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
                    continue
                if isinstance(node, ast.Return):
                    found.append((node.lineno, func.name))
                stack.extend(ast.iter_child_nodes(node))
            # every check under a last "if supported:", none before it: without the capability, the same pass
            last = func.body[-1]
            if (
                isinstance(last, ast.If)
                and not last.orelse
                and _CAPABILITY.search(ast.unparse(last.test))
                and not any(_checks(n) for n in func.body[:-1])
            ):
                found.append((last.lineno, func.name))
    return sorted(found)


_CAPABILITY = re.compile(r"support|capabilit|declare|caps")


def _checks(statement: ast.stmt) -> bool:
    """Whether ``statement`` asserts something (``assert``, ``pytest.raises``), docstrings aside."""
    return any(
        isinstance(n, ast.Assert) or (isinstance(n, ast.Attribute) and n.attr == "raises") for n in ast.walk(statement)
    )


@pytest.mark.parametrize("path", sorted(KIT.rglob("*.py")), ids=lambda p: str(p.relative_to(KIT)))
def test_no_kit_test_returns_early(path: Path) -> None:
    """A test that stops early (after checking a refusal) reports PASSED without running its feature.

    What cannot apply to a declaration is skipped naming it; a refusal is its own test.
    """
    returns = _early_returns(ast.parse(path.read_text(), str(path)))
    assert not returns, f"{path.name}: kit tests that return early and so pass untested: {returns}"


def test_an_early_return_after_a_refusal_is_found() -> None:
    """The check can fail: the shape the retention part used before (refusal checked, then ``return``)."""
    old = """
class S:
    async def test_x(self, manager, provider):
        if not self.supports(provider, policy):
            await self._unsupported(manager, policy)
            return
        def helper():
            return 1
"""
    assert _early_returns(ast.parse(old)) == [(6, "test_x")]
    guarded = """
class S:
    async def test_y(self, manager, provider):
        await manager.append_events_batch(stream_id="s", events=[])
        if provider.capabilities.supports("truncate_stream"):
            assert await manager.truncate_stream("s", 2) == 1
"""
    assert _early_returns(ast.parse(guarded)) == [(5, "test_y")]
    documented = guarded.replace("provider):\n", 'provider):\n        """It raises nothing without it."""\n', 1)
    assert _early_returns(ast.parse(documented)) == [(6, "test_y")]  # a docstring saying "raises" checks nothing
