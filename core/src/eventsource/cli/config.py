"""Which store and settings one run uses: ``--store``, ``$EVENTSOURCE_STORE``, ``--config`` and the defaults.

:func:`load_config` is the one place that decides; every command that touches a store gets its
:class:`~eventsource.config.ManagerConfig` from here, through the session.
"""

from __future__ import annotations

import os
from dataclasses import fields
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import argparse

    from eventsource.config import ManagerConfig

STORE_ENV = "EVENTSOURCE_STORE"


def load_config(args: argparse.Namespace, environ: dict[str, str] | os._Environ[str] | None = None) -> ManagerConfig:
    """The manager configuration for this run.

    Fields come from ``--config FILE`` (else from ``EVENTSOURCE_*`` variables). The store is
    ``--store``, else ``$EVENTSOURCE_STORE``, else the configured providers, else
    ``sqlite:///eventsource.db``; a single store is named ``default``.
    """
    from eventsource.config import DEFAULT_SQLITE_URL, ManagerConfig

    env = os.environ if environ is None else environ
    cfg = ManagerConfig.from_file(args.config) if args.config else ManagerConfig.from_env(env)
    data: dict[str, Any] = {f.name: getattr(cfg, f.name) for f in fields(cfg)}
    url = args.store or env.get(STORE_ENV) or None
    if url is None and cfg.providers == ManagerConfig().providers:
        url = DEFAULT_SQLITE_URL
    if url is not None:
        data["providers"] = {"default": {"url": url, "settings": {}}}
        data["default_provider"] = "default"
    if args.timeout is not None:
        data["timeout"] = args.timeout
    return ManagerConfig.from_dict(data)
