"""The subscriptions one manager opened: each built on its call policy, codec and plugin host, ended at close.

:meth:`OpenSubscriptions.open` checks a ``subscribe`` call's options and builds the subscription
(:func:`eventsource.subscriptions.build.build_subscription`); the manager's ``close()`` ends every one still
open (:meth:`OpenSubscriptions.close`), so none waits on a closed store. They are held weakly: a subscription
nobody holds any more is not kept alive by its manager.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from eventsource.manager.codec import EventCodec
    from eventsource.manager.policy import CallPolicy
    from eventsource.plugins import PluginHost
    from eventsource.provider import Provider
    from eventsource.subscriptions.subscription import Subscription


class OpenSubscriptions:
    """The subscriptions of one manager."""

    def __init__(self, policy: CallPolicy, codec: EventCodec, host: PluginHost) -> None:
        self._policy = policy
        self._codec = codec
        self._host = host
        self._open: weakref.WeakSet[Subscription] = weakref.WeakSet()

    def open(self, p: Provider, **options: Any) -> Subscription:
        """A subscription on ``p`` with the options of ``EventSourcingManager.subscribe`` (bad ones raise here)."""
        from eventsource.subscriptions.build import build_subscription  # (it imports the manager package)

        sub = build_subscription(p, self._policy, self._codec, self._host, **options)
        self._open.add(sub)
        return sub

    async def close(self) -> None:
        """End every subscription still open."""
        for sub in list(self._open):
            await sub.close()
