"""Follow a registry alias: when `models:/NAME@champion` moves, serve the new version.

A `Follower` polls the registry every `every_s` seconds (one small REST call).
When the alias names another version it loads that version beside the one
being served (download, `Forecaster.load`, which compiles and warms up both
forward passes), then swaps `service.model`: requests already running finish
on the old model, the next ones use the new one, none waits or fails. If the
new version does not load, the old one keeps serving and the log says why; a
version that failed for any reason but the network (not a lobseq model, a
broken file) is not tried again until the alias moves; a download that failed
on the network is tried again at the next poll.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable

from lobseq.errors import LobseqError

logger = logging.getLogger("lobseq.serving.follow")


def alias_of(uri: str) -> tuple[str, str] | None:
    """(name, alias) of a `models:/NAME@ALIAS` URI, else None (nothing to follow)."""
    if not uri.startswith("models:/") or "@" not in uri:
        return None
    name, alias = uri[len("models:/"):].split("@", 1)
    return (name, alias) if name and alias else None


def alias_version(name: str, alias: str) -> str:
    """The version `alias` names now (one registry call)."""
    from mlflow import MlflowClient

    return str(MlflowClient().get_model_version_by_alias(name, alias).version)


def load_version(name: str, version: str, alias_uri: str):
    """Load `models:/NAME/VERSION`, reported under the alias URI it was followed from."""
    from lobseq.serving.loader import load_model

    return dataclasses.replace(load_model(f"models:/{name}/{version}"), uri=alias_uri)


class Follower:
    """Polls the alias of `service.model.uri` and swaps in the version it names."""

    def __init__(self, service, every_s: float, *, resolve: Callable[[str, str], str] = alias_version,
                 load: Callable[[str, str, str], object] = load_version,
                 on_switch: Callable[[object, object], None] | None = None,
                 on_failure: Callable[[], None] | None = None) -> None:
        target = alias_of(service.model.uri)
        if target is None:
            raise LobseqError(f"{service.model.uri} names no alias to follow", field="model_uri",
                              fix="serve models:/NAME@ALIAS, or turn following off (0)")
        self.service, self.every_s = service, float(every_s)
        self.name, self.alias = target
        self._resolve, self._load = resolve, load
        self._on_switch, self._on_failure = on_switch, on_failure
        self._skip: str | None = None  # a version that is no servable model: not retried
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_check: float | None = None
        self.last_error: str | None = None
        self.switches = 0

    def state(self) -> dict:
        """What /ready reports about following."""
        return {"alias": f"{self.name}@{self.alias}", "every_s": self.every_s,
                "last_check": None if self.last_check is None
                else time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(self.last_check)),
                "last_error": self.last_error, "switches": self.switches}

    def check(self) -> str:
        """Poll once: 'same', 'switched', 'failed' (the old model stays) or 'unreachable'."""
        current = self.service.model
        try:
            version = self._resolve(self.name, self.alias)
        except Exception as e:  # noqa: BLE001 - the registry may be down: keep serving
            return self._failed("unreachable", f"cannot read {self.name}@{self.alias}: {_line(e)}")
        self.last_check = time.time()
        if version == current.version or version == self._skip:
            return "same"
        t0 = time.perf_counter()
        try:
            new = self._load(self.name, version, current.uri)
        except Exception as e:  # noqa: BLE001 - a bad version must not stop the service
            from lobseq.tracking.server import unreachable

            if not unreachable(e):  # not a network hiccup: wait for the alias to move
                self._skip = version
            if self._on_failure is not None:
                self._on_failure()
            return self._failed("failed", f"{self.name}@{self.alias} now names v{version}, which "
                                          f"failed to load; still serving v{current.version}: "
                                          f"{_line(e)}")
        self.service.model = new  # one attribute: the next request uses it
        self.switches += 1
        self.last_error = None
        if self._on_switch is not None:
            self._on_switch(new, current)
        logger.info("following %s@%s: v%s -> v%s (loaded and warmed up beside it in %.1f s)",
                    self.name, self.alias, current.version, version, time.perf_counter() - t0)
        return "switched"

    def _failed(self, outcome: str, message: str) -> str:
        if message != self.last_error:  # once per streak, not every poll
            logger.warning(message)
        self.last_error = message
        return outcome

    def start(self) -> Follower:
        self._thread = threading.Thread(target=self._loop, name="lobseq-follow", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            self.check()


def _line(e: BaseException) -> str:
    text = str(e).strip()
    return (text.splitlines()[0][:300] if text else type(e).__name__)
