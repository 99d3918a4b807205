"""The class convention shared by labels, metrics, backtests and the service."""

from __future__ import annotations

CLASS_NAMES = {2: ("down", "up"), 3: ("down", "stationary", "up")}


def class_names(n_classes: int) -> tuple[str, ...]:
    return CLASS_NAMES[n_classes]
