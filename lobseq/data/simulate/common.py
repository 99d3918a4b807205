"""Argument checks and the all-or-nothing staging folder both simulators share."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from lobseq.errors import LobseqError


def require(ok: bool, problem: str, field: str, fix: str) -> None:
    if not ok:
        raise LobseqError(problem, field=field, fix=fix)


def int_arg(value: object, name: str, minimum: int = 1) -> int:
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    require(ok and int(value) >= minimum, f"must be an integer >= {minimum}, got {value!r}",
            name, f"pass {name}={minimum} or more")
    return int(value)


def check_seed(seed: object) -> None:
    require(isinstance(seed, (int, np.integer)) and not isinstance(seed, bool) and seed >= 0,
            f"must be a non-negative integer, got {seed!r}", "seed", "pass e.g. seed=0")


def business_days(start_date: str, days: int, name: str) -> pd.DatetimeIndex:
    try:
        start = pd.Timestamp(start_date)
    except (ValueError, TypeError) as exc:
        raise LobseqError(f"is not a date: {start_date!r}", field=name,
                          fix="use the form YYYY-MM-DD") from exc
    require(start is not pd.NaT, f"is not a date: {start_date!r}", name,
            "use the form YYYY-MM-DD")
    return pd.bdate_range(start=start.normalize(), periods=days)


@contextlib.contextmanager
def staged(out_dir: Path) -> Iterator[tuple[Path, list[str]]]:
    """Yield (staging dir, names); on success move every name into out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".simulate.tmp-", dir=out_dir))
    names: list[str] = []
    try:
        yield stage, names
        for name in names:
            os.replace(stage / name, out_dir / name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
