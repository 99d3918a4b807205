"""Aliases: who is champion, moving `@champion` (promote, rollback) and remembering its history.

Promotion rule (`decide`): the challenger replaces the champion only when its
score on the configured metric beats the champion's, on the same dataset and
split, by more than `margin` (and, with `require_ci`, also lies beyond the
champion's bootstrap interval). No champion yet: the challenger is promoted.

Every champion change is remembered in a registered-model tag
(`lobseq.champion_history`, a JSON list of versions) and mirrored in the
alias `previous_champion`, so `rollback` can step back more than once.
The alias is always the last thing written: a run that fails earlier never
moves it. Every change of the champion (promote, rollback, a champion/challenger
decision) holds that model's registry lock (`registry_lock(name)`: a file next to a
local store, or an advisory lock in the lock database shared by every host), so two
changes of one model never interleave on its history; a second one raises
`LockHeld`. Different models never block each other.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from lobseq.errors import LobseqError

CHAMPION = "champion"
PREVIOUS = "previous_champion"
HISTORY_TAG = "lobseq.champion_history"


def client():
    from mlflow import MlflowClient

    return MlflowClient()


# ------------------------------------------------------------------ the lock

_held = threading.local()  # per model name: how deep this thread is inside registry_lock


def registry_lock_path(name: str) -> Path:
    """The local lock file of model `name`'s registry changes: `<lock folder>/registry-NAME.lock`
    (`tracking.local_lock_dir`: next to a sqlite store)."""
    import re

    from lobseq.tracking.store import local_lock_dir

    return local_lock_dir() / f"registry-{re.sub(r'[^A-Za-z0-9._-]+', '_', name)}.lock"


@contextlib.contextmanager
def registry_lock(name: str) -> Iterator[None]:
    """Hold the lock on model `name`'s champion for the block (re-entrant within a thread);
    `LockHeld` if another process holds it. Different models never block each other.

    With a lock database (`LOBSEQ_LOCK_URI`, or a pipeline's `lock_uri:`) it is the
    advisory lock `registry:NAME` there, shared by every host; else a flock on
    `registry_lock_path(name)`.
    """
    from lobseq.locks import run_lock

    depths = _held.__dict__.setdefault("depth", {})
    if depths.get(name):
        depths[name] += 1
        try:
            yield
        finally:
            depths[name] -= 1
        return
    with run_lock(registry_lock_path(name), what=f"change of {name}'s champion",
                  name=f"registry:{name}"):
        depths[name] = 1
        try:
            yield
        finally:
            depths[name] = 0


# ------------------------------------------------------------------ aliases


def version_by_alias(name: str, alias: str, c=None):
    from mlflow.exceptions import MlflowException

    c = c or client()
    try:
        return c.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def champion_version(name: str, c=None) -> str | None:
    mv = version_by_alias(name, CHAMPION, c)
    return str(mv.version) if mv is not None else None


def _history(name: str, c) -> list[str]:
    from mlflow.exceptions import MlflowException

    try:
        tags = c.get_registered_model(name).tags or {}
    except MlflowException:
        raise LobseqError(f"no registered model named '{name}'", field="name",
                          fix="see `lobseq models list`") from None
    try:
        return [str(v) for v in json.loads(tags.get(HISTORY_TAG, "[]"))]
    except ValueError:
        return []


def _write_aliases(name: str, history: list[str], c) -> None:
    c.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history[-50:]))
    if len(history) >= 2:
        c.set_registered_model_alias(name, PREVIOUS, history[-2])
    elif version_by_alias(name, PREVIOUS, c) is not None:
        c.delete_registered_model_alias(name, PREVIOUS)
    # Last: the alias servers load is the final write.
    c.set_registered_model_alias(name, CHAMPION, history[-1])


def promote(name: str, version: str | int, c=None, reason: str = "manual") -> str | None:
    """Make `version` the champion; returns the version it replaced (or None)."""
    c = c or client()
    version = str(version)
    from mlflow.exceptions import MlflowException

    with registry_lock(name):
        try:
            c.get_model_version(name, version)
        except MlflowException:
            raise LobseqError(f"model '{name}' has no version {version}", field="version",
                              fix="see `lobseq models list`") from None
        current = champion_version(name, c)
        if current == version:
            return current
        history = _history(name, c)
        if current is not None and (not history or history[-1] != current):
            history.append(current)
        history.append(version)
        c.set_model_version_tag(name, version, "lobseq.promoted_at",
                                time.strftime("%Y-%m-%dT%H:%M:%S"))
        c.set_model_version_tag(name, version, "lobseq.promotion_reason", reason[:500])
        _write_aliases(name, history, c)
        return current


def rollback(name: str, c=None, to: str | int | None = None) -> tuple[str, str]:
    """Move `champion` back to the previous champion, or to `to`, an earlier champion.

    The history is cut back to that version, so a later rollback continues from there.
    Returns (from, to).
    """
    c = c or client()
    with registry_lock(name):
        current = champion_version(name, c)
        history = _history(name, c)
        if current is not None and (not history or history[-1] != current):
            history.append(current)
        earlier = history[:-1]
        if not earlier:
            raise LobseqError(f"model '{name}' has no previous champion to roll back to",
                              field="name",
                              fix=f"promote a version by hand: lobseq models promote {name} VERSION")
        target = earlier[-1] if to is None else str(to)
        if target not in earlier:
            raise LobseqError(f"v{target} was not an earlier champion of '{name}'", field="to",
                              fix=f"earlier champions: {', '.join(dict.fromkeys(reversed(earlier)))}"
                                  " (newest first)")
        last = max(i for i, v in enumerate(earlier) if v == target)  # its latest reign
        del history[last + 1:]
        c.set_model_version_tag(name, target, "lobseq.promotion_reason", f"rollback from v{current}")
        _write_aliases(name, history, c)
        return str(current), target


def list_versions(name: str | None = None, c=None) -> list[dict]:
    """One dict per model version: name, version, aliases, run, decision and scores."""
    from mlflow.exceptions import MlflowException

    c = c or client()
    names = [name] if name else [m.name for m in c.search_registered_models()]
    rows = []
    for n in names:
        by_version: dict[str, list[str]] = {}
        try:
            aliases = c.get_registered_model(n).aliases or {}
        except MlflowException:
            raise LobseqError(f"no registered model named '{n}'", field="name",
                              fix="run `lobseq models list` for the registered names") from None
        for alias, v in aliases.items():
            by_version.setdefault(str(v), []).append(alias)
        for mv in c.search_model_versions(f"name='{n}'"):
            tags = mv.tags or {}
            rows.append({
                "name": n, "version": str(mv.version),
                "aliases": ",".join(sorted(by_version.get(str(mv.version), []))),
                "run_id": mv.run_id or "",
                "created": time.strftime("%Y-%m-%d %H:%M", time.localtime(mv.creation_timestamp / 1000)),
                # The automatic decision, then any later manual promotion or rollback.
                "decision": "; ".join(filter(None, (tags.get("lobseq.decision"),
                                                    tags.get("lobseq.promotion_reason")))),
                "score": tags.get("lobseq.challenger_score", ""),
                "champion_score": tags.get("lobseq.champion_score", ""),
            })
    rows.sort(key=lambda r: (r["name"], int(r["version"])))
    return rows


# ------------------------------------------------------- champion/challenger

