"""A stop request that a signal handler can make: a flag the main thread polls.

Not a ``threading.Event``: a Python signal handler runs in the main thread between two
bytecodes, and a SIGTERM that arrived while the main thread was inside ``Event.wait`` (in the
``with`` block of the event's condition, holding its lock) ran a handler whose ``set()``
waited for that lock for ever: ``meshdex serve`` ignored the SIGTERM and had to be killed
(seen once in the test suite). Setting an attribute takes no lock.
"""

from __future__ import annotations

import time


class StopFlag:
    """``set()`` from a signal handler; ``wait(timeout)`` polls it from the main thread."""

    def __init__(self) -> None:
        self._requested = False

    def set(self, *_signal: object) -> None:
        """Request the stop (callable as a signal handler)."""
        self._requested = True

    def clear(self) -> None:
        self._requested = False

    def is_set(self) -> bool:
        return self._requested

    def wait(self, timeout: float) -> bool:
        """Sleep up to ``timeout`` seconds unless a stop is requested; whether one is. A
        signal cuts the sleep short only by its handler's run, so a stop is seen within
        ``timeout``."""
        if not self._requested:
            time.sleep(timeout)
        return self._requested
