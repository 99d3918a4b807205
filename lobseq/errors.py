"""One error type for every input a user can fix.

The message always says *where* (file, row, field) and *what to do*; the CLI
turns it into a clean one-line failure instead of a traceback.
"""

from __future__ import annotations

from pathlib import Path


class LobseqError(ValueError):
    """A bad input or setting the user can fix."""

    def __init__(
        self,
        problem: str,
        *,
        file: str | Path | None = None,
        row: int | None = None,
        field: str | None = None,
        fix: str | None = None,
    ) -> None:
        self.problem = problem
        self.file = str(file) if file is not None else None
        self.row = row
        self.field = field
        self.fix = fix
        super().__init__(self._render())

    def _render(self) -> str:
        where = []
        if self.file is not None:
            where.append(self.file)
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.field is not None:
            where.append(f"field '{self.field}'")
        text = (": ".join([", ".join(where), self.problem]) if where else self.problem)
        if self.fix:
            text += f". Fix: {self.fix}"
        return text


class LockHeld(LobseqError):
    """Another run holds the lock (the scheduler should just try later)."""
