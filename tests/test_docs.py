"""Doc tests: what in the docs can drift from the code.

The API reference (docs/api/*.rst, built by ``nox -s docs``) must name every public manager method and
every ``ErrorType`` value; the README's API table must name only methods that exist; every Python and
TOML snippet in the README, the plugin READMEs and docs/*.md must parse (and import only what core has); every
store setting has a row in its README's table; and the plugin guide's
conformance-kit snippet must run, as a real pytest run in a directory of its own, for a provider name
no server default knows (the in-memory provider stands in for the store).
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import os
import re
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest
from eventsource import ErrorType, EventSourcingManager

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
API = DOCS / "api"
GUIDE = DOCS / "writing-a-provider.md"
README = ROOT / "README.md"
MARKDOWN = [README, *sorted(DOCS.glob("*.md")), ROOT / "core" / "README.md", *sorted(ROOT.glob("plugins/*/README.md"))]

FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.DOTALL | re.MULTILINE)


def _blocks(path: Path, lang: str) -> list[tuple[int, str]]:
    """``(line, code)`` of every fenced ``lang`` block in a Markdown file."""
    text = path.read_text(encoding="utf-8")
    return [(text[: m.start()].count("\n") + 1, m.group(2)) for m in FENCE.finditer(text) if m.group(1) == lang]


def _public_methods(cls: type) -> set[str]:
    return {name for name, _ in inspect.getmembers(cls) if not name.startswith("_")}


def _reference(prefix: str) -> set[str]:
    """Names documented by ``.. auto<kind>:: <prefix>.<name>`` anywhere in docs/api."""
    pattern = re.compile(
        r"^\.\. auto(?:method|property|attribute):: " + re.escape(prefix) + r"\.(\w+)\s*$", re.MULTILINE
    )
    return {m.group(1) for page in API.glob("*.rst") for m in pattern.finditer(page.read_text(encoding="utf-8"))}


# ----------------------------------------------------------------------------- the API reference


def test_every_public_manager_method_is_in_the_api_reference() -> None:
    documented = _reference("eventsource.EventSourcingManager")
    missing = _public_methods(EventSourcingManager) - documented
    assert not missing, f"docs/api/manager.rst does not document EventSourcingManager.{sorted(missing)}"


def test_the_api_reference_names_no_method_that_is_gone() -> None:
    stale = _reference("eventsource.EventSourcingManager") - _public_methods(EventSourcingManager)
    assert not stale, f"docs/api/manager.rst documents methods EventSourcingManager no longer has: {sorted(stale)}"


def test_the_reference_uses_public_import_paths_for_the_manager() -> None:
    """Modules are being split (manager/, sync, sqlite): the reference names what users import."""
    text = "\n".join(page.read_text(encoding="utf-8") for page in API.glob("*.rst"))
    for internal in ("eventsource.manager.", "eventsource.sync.", "eventsource.sqlite.", "eventsource.cli."):
        assert f":: {internal}" not in text, f"the reference autodocs the internal path {internal}*"


@pytest.mark.parametrize("member", list(ErrorType), ids=lambda m: m.name)
def test_every_error_type_is_listed(member: ErrorType) -> None:
    errors = (API / "errors.rst").read_text(encoding="utf-8")
    assert f"``{member.name}``" in errors, f"docs/api/errors.rst does not list ErrorType.{member.name}"
    assert f'``"{member.value}"``' in errors, f"docs/api/errors.rst does not give ErrorType.{member.name}'s value"


def test_sqlite_relative_and_absolute_urls_are_explained() -> None:
    for path in (README, API / "config.rst"):
        text = path.read_text(encoding="utf-8")
        assert "sqlite:////" in text, f"{path.name} does not show an absolute sqlite:////path URL"
        assert "working directory" in text, f"{path.name} does not say what a relative sqlite:/// path is relative to"


def test_the_readme_api_table_names_only_real_methods() -> None:
    text = README.read_text(encoding="utf-8")
    table = text[text.index("### The API") : text.index("### Semantics")]
    cells = [re.sub(r"\(.*?\)", "", row.split("|")[2]) for row in table.splitlines() if row.startswith("| ")]
    named = {m for cell in cells for m in re.findall(r"`(\w+)`", cell)}  # parentheses describe, not name
    unknown = named - _public_methods(EventSourcingManager)
    assert named, "README.md's API table names no method"
    assert not unknown, f"README.md's API table names methods EventSourcingManager lacks: {sorted(unknown)}"


def test_the_docs_build_runs_in_ci_with_warnings_as_errors() -> None:
    """The API reference is built by tox's ``docs`` env, which the README's test command (so CI) runs."""
    tox = (ROOT / "tox.ini").read_text(encoding="utf-8")
    env = tox[tox.index("[testenv:docs]") :]
    env = env[: env.index("\n[", 1)]
    assert "sphinx-build -W" in env
    readme = README.read_text(encoding="utf-8")
    assert re.search(r"tox run -e [\w,-]*\bdocs\b", readme), "the README's test command leaves the docs build out"
    assert '"tox", "run", "-e", "docs"' in (ROOT / "noxfile.py").read_text(encoding="utf-8")


# ----------------------------------------------------------------------------- snippets parse


def _snippets(lang: str) -> list[tuple[str, str]]:
    return [(f"{p.relative_to(ROOT)}:{line}", code) for p in MARKDOWN for line, code in _blocks(p, lang)]


@pytest.mark.parametrize(("where", "code"), _snippets("python"), ids=lambda v: v if ":" in str(v)[:60] else "")
def test_python_snippets_compile(where: str, code: str) -> None:
    # top-level await / async with / async for are how the README shows async calls
    compile(code, where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)


@pytest.mark.parametrize(("where", "code"), _snippets("python"), ids=lambda v: v if ":" in str(v)[:60] else "")
def test_python_snippets_import_only_what_core_has(where: str, code: str) -> None:
    """A snippet's ``from eventsource... import X`` names a module and a name core has (a rename breaks it here)."""
    tree = ast.parse(code, where)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "eventsource":
            module = importlib.import_module(node.module)
            for alias in node.names:
                assert hasattr(module, alias.name) or importlib.util.find_spec(f"{node.module}.{alias.name}"), (
                    f"{where}: {node.module} has no {alias.name!r}"
                )


@pytest.mark.parametrize(("where", "code"), _snippets("toml"), ids=lambda v: v if ":" in str(v)[:60] else "")
def test_toml_snippets_parse(where: str, code: str) -> None:
    tomllib.loads(code)


def test_readme_keeps_its_two_commands() -> None:
    text = README.read_text(encoding="utf-8")
    assert "pip install ./core && eventsource demo" in text
    assert re.search(r"python3 -m tox run -e \S+", text)


# ----------------------------------------------------------------------------- the guide's kit snippet runs

# The store under test: the in-memory provider behind the guide's constructor (url, namespace=...) and the
# guide's own settings schema (``AcmeSettings``, written from its "Settings" block), so the guide's fixture
# runs unchanged against the names the guide lets it use. spawn_args reaches the same namespace.
FAKE_PROVIDER = """
from eventsource.memory import MemoryProvider
from eventsource_acme.settings import AcmeSettings


class AcmeProvider(MemoryProvider):
    kind = "acme"
    settings_schema = AcmeSettings

    def __init__(self, url=None, **settings):
        self.acme_url = url or "acme://127.0.0.1:1234"
        namespace = settings.get("namespace", "eventsource")
        super().__init__(f"memory://acme-{self.acme_url}-{namespace}", **settings)

    def spawn_args(self):
        return {"url": self.acme_url, **self.settings}
"""


# The guide's fixture looks its namespace up with the store's driver (``acme_driver``): this one lists the
# memory stores the provider above made, by the namespace part of their name.
FAKE_DRIVER = """
import contextlib

import eventsource.memory


class Client:
    def __init__(self, url):
        self.prefix = f"acme-{url}-"

    async def list_namespaces(self):
        return [k.removeprefix(self.prefix) for k in eventsource.memory._NAMED if k.startswith(self.prefix)]

    async def drop_namespace(self, namespace, missing_ok=False):
        eventsource.memory._NAMED.pop(self.prefix + namespace, None)


@contextlib.asynccontextmanager
async def connect(url):
    yield Client(url)
"""


def _guide_block(lang: str, needle: str) -> str:
    found = [code for _, code in _blocks(GUIDE, lang) if needle in code]
    assert len(found) == 1, (
        f"docs/writing-a-provider.md should hold one {lang} block with {needle!r}, found {len(found)}"
    )
    return found[0]


def test_the_guide_fixture_runs_for_a_new_provider(tmp_path: Path) -> None:
    """The guide's pyproject (pytest section), conftest and test module, run by pytest on their own.

    No ``EVENTSOURCE_TEST_ACME_URL`` is set and this repository's pyproject is not read: the fixture
    must not raise ``KeyError`` and the asyncio mode must come from the guide's own configuration.
    """
    (tmp_path / "pyproject.toml").write_text(_guide_block("toml", "[tool.pytest.ini_options]"), encoding="utf-8")
    tests = tmp_path / "tests"
    tests.mkdir()
    (tests / "conftest.py").write_text(_guide_block("python", "pytest_plugins"), encoding="utf-8")
    (tests / "test_acme.py").write_text(
        _guide_block("python", "class TestAcmeProvider(ProviderSuite)"), encoding="utf-8"
    )
    package = tmp_path / "src" / "eventsource_acme"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("", encoding="utf-8")
    (package / "provider.py").write_text(textwrap.dedent(FAKE_PROVIDER), encoding="utf-8")
    (package / "settings.py").write_text(_guide_block("python", "class AcmeSettings("), encoding="utf-8")
    (tmp_path / "src" / "acme_driver.py").write_text(textwrap.dedent(FAKE_DRIVER), encoding="utf-8")

    env = {k: v for k, v in os.environ.items() if not k.startswith(("EVENTSOURCE_", "PYTEST_"))}
    env["PYTHONPATH"] = str(tmp_path / "src")
    # test_plugin_is_discovered needs an installed distribution, which a snippet cannot have
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path),
           "-k", "TestAcmeProvider", "tests"]  # fmt: skip
    run = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600, check=False)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-4000:]
    assert "KeyError" not in out
    passed = re.search(r"(\d+) passed", out)
    assert passed, out[-2000:]
    assert int(passed.group(1)) >= 20, f"too few kit tests ran: {out[-2000:]}"


# ----------------------------------------------------------------------------- the guide's benchmark backend


def test_the_guide_backend_names_only_what_the_harness_reads() -> None:
    """Each name the guide's ``AcmeBackend`` sets or defines is one ``harness.Backend`` has (no ignored knobs)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from harness import Backend
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    code = _guide_block("python", "class AcmeBackend(Backend)")
    cls = next(n for n in ast.parse(code).body if isinstance(n, ast.ClassDef))
    names = [t.id for n in cls.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)]
    names += [n.name for n in cls.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    assert len(names) >= 5, names
    unknown = [name for name in names if not hasattr(Backend, name)]
    assert not unknown, f"the guide's backend sets what harness.Backend never reads: {unknown}"


# ----------------------------------------------------------------------------- every setting has a table row


def _table_settings(text: str) -> set[str]:
    """Names in backquotes in the first cell of every Markdown table row (``| `a` / `b` | default | ... |``)."""
    rows = (line.split("|")[1] for line in text.splitlines() if line.startswith("| ") and line.count("|") >= 3)
    return {name for cell in rows for name in re.findall(r"`(\w+)`", cell)}


def _plugin_settings(plugin: Path) -> set[str]:
    """Fields of the provider's ``settings_schema`` and its bases in the plugin's settings module (read, not imported).

    The plugins are not installed in the core env; ``create_store`` comes from core's ``CreateStoreSettings``.
    """
    src = plugin / "src" / f"eventsource_{plugin.name.removeprefix('eventsource-')}"
    provider = ast.parse((src / "provider.py").read_text(encoding="utf-8"))
    schema = next(
        n.value.id
        for n in ast.walk(provider)
        if isinstance(n, ast.Assign) and isinstance(n.value, ast.Name)
        for t in n.targets
        if isinstance(t, ast.Name) and t.id == "settings_schema"
    )
    module = ast.parse((src / "settings.py").read_text(encoding="utf-8"))
    classes = {n.name: n for n in module.body if isinstance(n, ast.ClassDef)}
    names: set[str] = set()
    todo = [schema]
    while todo:
        cls = todo.pop()
        if cls == "CreateStoreSettings":
            names.add("create_store")
        elif cls in classes:
            node = classes[cls]
            todo += [b.id for b in node.bases if isinstance(b, ast.Name)]
            names |= {
                t.id
                for n in node.body
                if isinstance(n, ast.Assign) and isinstance(n.value, ast.Call)
                for t in n.targets
                if isinstance(t, ast.Name)
            }
    return names


@pytest.mark.parametrize("plugin", sorted(ROOT.glob("plugins/eventsource-*")), ids=lambda p: p.name)
def test_every_plugin_setting_has_a_row_in_its_readme(plugin: Path) -> None:
    settings = _plugin_settings(plugin)
    assert len(settings) >= 5, settings
    missing = settings - _table_settings((plugin / "README.md").read_text(encoding="utf-8"))
    assert not missing, f"{plugin.name}/README.md's settings table leaves out {sorted(missing)}"


def test_every_sqlite_setting_has_a_row_in_the_readme() -> None:
    """The default store's settings are what a newcomer tunes first (``?synchronous=normal``)."""
    from eventsource.sqlite.settings import SqliteSettings

    missing = set(SqliteSettings().fields) - _table_settings(README.read_text(encoding="utf-8"))
    assert not missing, f"README.md has no settings table row for the SQLite settings {sorted(missing)}"


def test_every_manager_module_is_in_the_module_table() -> None:
    """docs/manager.md's "Modules" table is where a reader looks up which module does what."""
    import eventsource.manager

    table = (DOCS / "manager.md").read_text(encoding="utf-8").split("## Modules", 1)[1].split("\n## ", 1)[0]
    modules = {p.name for p in Path(eventsource.manager.__file__).parent.glob("*.py")}
    missing = sorted(name for name in modules if f"`manager/{name}`" not in table)
    assert len(modules) >= 10, modules
    assert not missing, f"docs/manager.md's module table leaves out {missing}"


def test_the_postgres_code_layout_names_every_module() -> None:
    readme = (ROOT / "plugins" / "eventsource-postgres" / "README.md").read_text(encoding="utf-8")
    layout = readme.split("## Code layout", 1)[1].split("\n## ", 1)[0]
    src = ROOT / "plugins" / "eventsource-postgres" / "src" / "eventsource_postgres"
    modules = {p.name for p in src.glob("*.py")} - {"__init__.py"}
    missing = sorted(name for name in modules if f"`{name}`" not in layout)
    assert len(modules) >= 10, modules
    assert not missing, f"the PostgreSQL README's code layout leaves out {missing}"


def test_every_manager_setting_has_a_row_in_the_readme() -> None:
    """``ManagerConfig`` refuses unknown keys, so the README's table is the list a user writes a config from."""
    import dataclasses

    from eventsource import ManagerConfig

    missing = {f.name for f in dataclasses.fields(ManagerConfig)} - _table_settings(README.read_text(encoding="utf-8"))
    assert not missing, f"README.md's configuration table leaves out {sorted(missing)}"
