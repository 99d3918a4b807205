"""The local engine: everything runs in this process, one item after another."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any


class LocalEngine:
    """No Ray: `map` is a plain loop, so the first bad item raises its own error."""

    name = "local"

    def map(self, fn: Callable[[Any], Any], items: Iterable[Any], *, cpus: float = 1.0,
            label: str | None = None, retries: int = 3) -> list:
        return [fn(item) for item in items]

    def mapper(self, *, cpus: float = 1.0, label: str | None = None, retries: int = 3) -> Callable:
        """The builtin `map`: lazy, in this process (the settings are the Ray engine's)."""
        return map

    def imap(self, fn: Callable[[Any], Any], items: Iterable[Any], *, cpus: float = 1.0,
             label: str | None = None, retries: int = 3) -> Iterator:
        """fn(item) for each item, lazily: one item's work at a time, as a plain loop."""
        return (fn(item) for item in items)

    def node_cpus(self) -> list[float]:
        return [float(os.cpu_count() or 1)]

    def close(self) -> None:
        pass
