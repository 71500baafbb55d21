"""``memory://`` checkpoints: a dict in this process (tests, and subscriptions that restart with the process)."""

from __future__ import annotations

from eventsource.checkpoints.base import Checkpoint, CheckpointStore, check_name


class MemoryCheckpointStore(CheckpointStore):
    """Checkpoints in a dict; ``memory://<name>`` shares one dict per name within the process."""

    kind = "memory"
    _named: dict[str, dict[tuple[str, str], Checkpoint]] = {}  # noqa: RUF012 - shared by design

    def __init__(self, url: str = "memory://", *, create_store: bool = True) -> None:
        super().__init__(url, create_store=create_store)  # (nothing to create: a dict is never missing)
        name = url.split("://", 1)[-1].strip("/")
        self._data: dict[tuple[str, str], Checkpoint] = self._named.setdefault(name, {}) if name else {}

    async def get(self, name: str, source: str) -> Checkpoint | None:
        """The stored checkpoint, or ``None``."""
        return self._data.get((check_name("name", name), check_name("source", source)))

    async def put(self, checkpoint: Checkpoint, *, force: bool = False) -> Checkpoint:
        """Store it (no await between the check and the write)."""
        cp = self.checked(checkpoint)
        self.check_move(self._data.get((cp.name, cp.source)), cp, force=force)
        self._data[cp.name, cp.source] = cp
        return cp

    async def delete(self, name: str, source: str) -> bool:
        """Remove it; whether there was one."""
        return self._data.pop((check_name("name", name), check_name("source", source)), None) is not None

    async def list(self, source: str | None = None) -> list[Checkpoint]:
        """Every checkpoint (of ``source`` only, when given), by name then source."""
        if source is not None:
            check_name("source", source)
        return sorted(
            (cp for cp in self._data.values() if source is None or cp.source == source),
            key=lambda cp: (cp.name, cp.source),
        )
