"""Entry-point discovery of a real third-party plugin distribution.

Each test installs throwaway distributions with pip (``--target`` into a temporary directory that
the test then puts on ``sys.path``), exactly as a user would install ``eventsource-<name>``: a
``pyproject.toml`` with ``[project.entry-points.eventsource]`` and a package with a ``plugin``
module holding the hookimpls. The projects use a tiny in-tree PEP 517 backend, so the build needs
neither the network nor setuptools.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest
from eventsource.cli import EXIT_ERROR, EXIT_OK, main
from eventsource.errors import PluginLoadError, ProviderNotFoundError
from eventsource.manager import EventSourcingManager
from eventsource.plugins import DISABLED_ENV, PluginHost

BACKEND = '''
"""A minimal PEP 517 backend: packs src/<package> and the [project] table into a wheel."""
import base64, hashlib, os, tomllib, zipfile

def _meta():
    with open("pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]

def _norm(name):
    return name.replace("-", "_")

def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    project = _meta()
    name, version = _norm(project["name"]), project["version"]
    info = f"{name}-{version}.dist-info"
    files = {}
    for root, _, names in os.walk("src"):
        for n in names:
            if n.endswith(".py"):
                path = os.path.join(root, n)
                with open(path, "rb") as f:
                    files[os.path.relpath(path, "src").replace(os.sep, "/")] = f.read()
    files[f"{info}/METADATA"] = f"Metadata-Version: 2.1\\nName: {project['name']}\\nVersion: {version}\\n".encode()
    files[f"{info}/WHEEL"] = (
        b"Wheel-Version: 1.0\\nGenerator: tiny-backend\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n"
    )
    eps = "".join(
        f"[{group}]\\n" + "".join(f"{k} = {v}\\n" for k, v in items.items())
        for group, items in project.get("entry-points", {}).items()
    )
    files[f"{info}/entry_points.txt"] = eps.encode()
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{info}/RECORD,,")
    files[f"{info}/RECORD"] = ("\\n".join(record) + "\\n").encode()
    wheel = f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(os.path.join(wheel_directory, wheel), "w") as z:
        for path, data in files.items():
            z.writestr(path, data)
    return wheel
'''

PYPROJECT = """
[build-system]
requires = []
build-backend = "tiny_backend"
backend-path = ["."]

[project]
name = "{dist}"
version = "{version}"
dependencies = ["eventsource>=0.1,<0.2"]

[project.entry-points.eventsource]
{entry_point} = "{module}.plugin"
"""

GOOD_PLUGIN = '''
"""Registers the Acme provider (an in-memory store under another name), a lease and a retention policy."""
import eventsource


@eventsource.hookimpl
def eventsource_register_providers(registry):
    from eventsource_acme.provider import AcmeProvider

    registry.add(AcmeProvider, schemes=("acme", "acme+mem"))
'''

GOOD_PROVIDER = '''
from marshmallow import Schema, fields

from eventsource.memory import MemoryProvider


class AcmeSettings(Schema):
    label = fields.String(load_default="acme")


class AcmeProvider(MemoryProvider):
    """A third-party store; behaves like memory:// with a name of its own."""

    kind = "acme"
    settings_schema = AcmeSettings
'''

BROKEN_PLUGIN = """
import eventsource
import eventsource_missing_driver_for_tests  # the driver is not installed


@eventsource.hookimpl
def eventsource_register_providers(registry):
    pass
"""

DUPLICATE_PLUGIN = """
import eventsource
from eventsource.memory import MemoryProvider


class AnotherMemory(MemoryProvider):
    kind = "memory"  # already taken by the built-in plugin


@eventsource.hookimpl
def eventsource_register_providers(registry):
    registry.add(AnotherMemory, schemes=("memory2",))
"""


TYPO_PLUGIN = """
import eventsource


@eventsource.hookimpl
def eventsource_register_provider(registry):  # misspelled: the spec is eventsource_register_providers
    pass
"""


def _project(root: Path, dist: str, *, version: str, entry_point: str, module: str, files: dict[str, str]) -> Path:
    project = root / dist
    pkg = project / "src" / module
    pkg.mkdir(parents=True)
    (project / "tiny_backend.py").write_text(BACKEND)
    (project / "pyproject.toml").write_text(
        PYPROJECT.format(dist=dist, version=version, entry_point=entry_point, module=module)
    )
    (pkg / "__init__.py").write_text("")
    for name, text in files.items():
        (pkg / name).write_text(textwrap.dedent(text))
    return project


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Four distributions, each pip-installed into its own target directory (in parallel)."""
    root = tmp_path_factory.mktemp("plugins")
    projects = {
        "good": _project(
            root,
            "eventsource-acme",
            version="1.2.3",
            entry_point="acme",
            module="eventsource_acme",
            files={"plugin.py": GOOD_PLUGIN, "provider.py": GOOD_PROVIDER},
        ),
        "broken": _project(
            root,
            "eventsource-broken",
            version="0.0.1",
            entry_point="broken",
            module="eventsource_broken",
            files={"plugin.py": BROKEN_PLUGIN},
        ),
        "duplicate": _project(
            root,
            "eventsource-dupe",
            version="0.3.0",
            entry_point="dupe",
            module="eventsource_dupe",
            files={"plugin.py": DUPLICATE_PLUGIN},
        ),
        "typo": _project(
            root,
            "eventsource-typo",
            version="0.0.2",
            entry_point="typo",
            module="eventsource_typo",
            files={"plugin.py": TYPO_PLUGIN},
        ),
    }
    targets = {key: root / f"site-{key}" for key in projects}
    procs = {
        key: subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--no-deps",
                "--no-index",
                "--no-build-isolation",
                "--disable-pip-version-check",
                "--target",
                str(targets[key]),
                str(project),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for key, project in projects.items()
    }
    for key, proc in procs.items():
        output, _ = proc.communicate(timeout=180)
        assert proc.returncode == 0, f"pip install of the {key} plugin failed:\n{output}"
    return targets


@pytest.fixture
def on_path(monkeypatch: pytest.MonkeyPatch, installed: dict[str, Path]):
    monkeypatch.delenv(DISABLED_ENV, raising=False)

    def add(*keys: str) -> None:
        for key in keys:
            monkeypatch.syspath_prepend(str(installed[key]))

    return add


def test_pip_installed_plugin_is_discovered(on_path) -> None:
    on_path("good")
    host = PluginHost()
    assert "acme" in host.plugin_names()
    assert host.distributions["acme"] == ("eventsource-acme", "1.2.3")
    assert "acme" in host.providers
    reg = host.providers.registration("acme")
    assert (reg.distribution, reg.version) == ("eventsource-acme", "1.2.3")
    row = next(r for r in host.describe() if r["type"] == "provider" and r["name"] == "acme")
    assert row == {
        "type": "provider",
        "name": "acme",
        "distribution": "eventsource-acme",
        "version": "1.2.3",
        "schemes": ["acme", "acme+mem"],
    }
    provider = host.create_provider("acme+mem://shop", label="hello")
    assert type(provider).__module__ == "eventsource_acme.provider"
    assert (provider.kind, provider.settings) == ("acme", {"label": "hello"})


async def test_discovered_provider_serves_a_manager(on_path) -> None:
    on_path("good")
    url = f"acme://{uuid.uuid4().hex}"
    async with EventSourcingManager({"providers": {"shop": url}}, host=PluginHost()) as m:
        await m.append_event(stream_id="order-1", event_type="Created", data={"total": 1})
        assert [e.data async for e in m.read_stream("order-1")] == [{"total": 1}]
        (info,) = m.get_provider_info()
        assert (info.kind, info.distribution, info.version) == ("acme", "eventsource-acme", "1.2.3")


def test_hosts_without_entry_points_do_not_see_it(on_path) -> None:
    on_path("good")
    host = PluginHost(load_entrypoints=False)
    assert "acme" not in host.providers
    with pytest.raises(ProviderNotFoundError, match="'acme'"):
        host.create_provider("acme://x")


def test_the_cli_lists_and_uses_it(installed: dict[str, Path], tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTSOURCE_") or k.startswith("EVENTSOURCE_TEST_")}
    env["PYTHONPATH"] = os.pathsep.join([str(installed["good"]), *filter(None, [os.environ.get("PYTHONPATH")])])
    cmd = [sys.executable, "-m", "eventsource.cli"]
    listed = subprocess.run(
        [*cmd, "providers", "--json"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False
    )
    assert listed.returncode == EXIT_OK, listed.stderr
    data = json.loads(listed.stdout)
    assert data["entry_points"]["acme"] == {"distribution": "eventsource-acme", "version": "1.2.3"}
    assert any(r["name"] == "acme" and r["distribution"] == "eventsource-acme" for r in data["plugins"])
    demo = subprocess.run(
        [*cmd, "--store", "acme://demo", "demo"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert demo.returncode == EXIT_OK, demo.stderr
    assert "(acme provider)" in demo.stdout


def test_a_plugin_that_fails_to_import_names_its_distribution(on_path, capsys: pytest.CaptureFixture[str]) -> None:
    on_path("good", "broken")
    with pytest.raises(PluginLoadError) as info:
        PluginHost()
    assert "eventsource-broken" in str(info.value)
    assert "eventsource_missing_driver_for_tests" in str(info.value)
    assert info.value.details == {"plugin": "broken", "distribution": "eventsource-broken"}
    assert isinstance(info.value.__cause__, ImportError)

    code = main(["providers"])
    err = capsys.readouterr().err
    assert code == EXIT_ERROR
    assert "eventsource-broken" in err and f"{DISABLED_ENV}=broken" in err and "Traceback" not in err


def test_disabled_plugins_are_not_loaded(on_path, monkeypatch: pytest.MonkeyPatch) -> None:
    on_path("good", "broken")
    monkeypatch.setenv(DISABLED_ENV, "broken")
    host = PluginHost()  # the broken plugin is never imported
    assert host.pm.is_blocked("broken")
    assert "broken" not in host.distributions
    assert "acme" in host.providers
    monkeypatch.setenv(DISABLED_ENV, " broken , acme ")
    host = PluginHost()
    assert "acme" not in host.providers
    assert set(host.distributions) & {"acme", "broken"} == set()
    with pytest.raises(ProviderNotFoundError):
        host.create_provider("acme://x")
    monkeypatch.delenv(DISABLED_ENV)
    host = PluginHost(blocked=["broken"])  # the constructor argument does the same
    assert "acme" in host.providers and "broken" not in host.distributions


def test_a_duplicate_provider_name_is_refused(on_path) -> None:
    on_path("duplicate")
    with pytest.raises(PluginLoadError, match=r"provider 'memory' is registered twice") as info:
        PluginHost()
    assert "eventsource" in str(info.value)
    # the same plugin is harmless when the built-in one it collides with is blocked
    host = PluginHost(blocked=["builtin"])
    assert host.providers.registration("memory").distribution == "eventsource-dupe"


def test_a_misspelled_hook_fails_start_up_naming_the_distribution(on_path) -> None:
    on_path("typo")
    with pytest.raises(PluginLoadError, match="eventsource_register_provider") as info:
        PluginHost()
    assert "eventsource-typo" in str(info.value)
