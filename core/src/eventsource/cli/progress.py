"""A progress line for long operations, so a person at a terminal sees work moving and nothing else sees it.

The line goes to stderr, is rewritten in place every :data:`PROGRESS_EVERY` items, and is shown only when
stderr is a terminal: piped or redirected output stays exactly the data.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from eventsource.cli.output import Output

PROGRESS_EVERY = 1000
"""Events between two progress lines on a terminal."""


class Progress:
    """A progress line on stderr, rewritten every ``every`` items, only when stderr is a terminal."""

    def __init__(self, out: Output, what: str, every: int = PROGRESS_EVERY) -> None:
        self.out = out
        self.what = what
        self.every = every
        self.count = 0
        self.shown = False

    def step(self) -> None:
        """Count one item; refresh the line every ``every`` items."""
        self.count += 1
        if self.count % self.every == 0 and self.out.interactive:
            self.out.err.write(f"\r{self.what}: {self.count:,} events...")
            self.out.err.flush()
            self.shown = True

    def done(self) -> None:
        """Erase the progress line."""
        if self.shown:
            self.out.err.write("\r\x1b[K")
            self.out.err.flush()
