"""Orchestration only: tox.ini is the matrix; nox selects providers and runs benchmarks.

    nox -s "tests(provider='postgres')"   # one provider, core + that plugin only
    nox -s plugins_vs_core                # every plugin installed together with the core
    nox -s benchmarks -- --quick          # the benchmark harness (not a test)
    nox -s docs                           # the API reference (Sphinx autodoc), warnings are errors
"""

from __future__ import annotations

from pathlib import Path

import nox

ROOT = Path(__file__).parent
PLUGINS = sorted(p.name.removeprefix("eventsource-") for p in (ROOT / "plugins").iterdir() if (p / "pyproject.toml").exists())

nox.options.error_on_missing_interpreters = True
nox.options.sessions = ["tests"]
PYTEST = ["pytest", "-c", str(ROOT / "pyproject.toml"), "--rootdir", str(ROOT)]


def _install(session: nox.Session, plugins: list[str]) -> None:
    session.install("./core[testing]", *(f"./plugins/eventsource-{p}[test]" for p in plugins))


@nox.session
@nox.parametrize("provider", ["core", *PLUGINS])
def tests(session: nox.Session, provider: str) -> None:
    """The core suite, or one plugin's suite with only that plugin installed."""
    if provider == "core":
        _install(session, [])
        session.run(*PYTEST, "tests", *session.posargs)
    else:
        _install(session, [provider])
        session.run(*PYTEST, f"plugins/eventsource-{provider}/tests", *session.posargs)


@nox.session
def plugins_vs_core(session: nox.Session) -> None:
    """Every plugin installed at once: discovery must not collide, and every suite still passes."""
    _install(session, PLUGINS)
    session.run(*PYTEST, "tests", *(f"plugins/eventsource-{p}/tests" for p in PLUGINS), *session.posargs)


@nox.session
def benchmarks(session: nox.Session) -> None:
    """Run the benchmark harness for every backend (pass harness options after --)."""
    _install(session, PLUGINS)
    backends = [arg for p in ["sqlite", "memory", *PLUGINS] for arg in ("--backend", p)]
    session.run("python", "benchmarks/run.py", *backends, *session.posargs)


DOCS_DEPS = ["sphinx>=7.2", "myst-parser>=2"]  # docs-only: never the library's runtime dependencies


@nox.session
def docs(session: nox.Session) -> None:
    """Build docs/ with Sphinx: autodoc reads the installed core's docstrings; any warning fails the build."""
    session.install("./core[testing]", *DOCS_DEPS)  # [testing]: the reference documents the kit, which imports pytest
    out = session.posargs[0] if session.posargs else str(ROOT / "docs" / "_build" / "html")
    session.run("sphinx-build", "-W", "--keep-going", "-b", "html", "-d", str(ROOT / "docs" / "_build" / "doctrees"), str(ROOT / "docs"), out)
