"""Where work runs: in this process (`local`, the default) or on Ray (`ray`).

    with open_engine(EngineConfig(name="ray", address=None)) as engine:
        days = engine.map(read_day, files)   # one task per file, results in input order

The engine is generic: it knows no lobseq stage. Stage code that needs Ray
itself (Ray Train, Tune, Ray Data) imports `lobseq.engine.ray_engine` and
uses the session `open_engine` opened. Importing this package never imports
Ray; asking for the ray engine without Ray installed is a LobseqError.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from lobseq.engine.config import ENGINES, EngineConfig
from lobseq.engine.local import LocalEngine
from lobseq.engine.resources import cpu_share
from lobseq.engine.signals import sigterm_as_interrupt

__all__ = ["ENGINES", "EngineConfig", "LocalEngine", "cpu_share", "open_engine", "sigterm_as_interrupt"]


@contextlib.contextmanager
def open_engine(config: EngineConfig | str = "local", **ray_options: Any) -> Iterator[Any]:
    """The engine for `config` (a name or an EngineConfig), closed on the way out.

    `ray_options` go to `RayEngine` (env_vars, ship_code, temp_dir,
    log_to_driver). While a Ray engine is open, SIGTERM acts like Ctrl-C, so
    outstanding tasks are cancelled either way.
    """
    cfg = EngineConfig(name=config) if isinstance(config, str) else config
    cfg.validate()
    if cfg.name == "local":
        yield LocalEngine()
        return
    from lobseq.engine.ray_engine import RayEngine

    with sigterm_as_interrupt():
        engine = RayEngine(cfg, **ray_options).start()
        try:
            yield engine
        finally:
            engine.close()
