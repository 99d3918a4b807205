"""Line numbers of a YAML file's keys, so an error can say where a bad setting is.

    lines = YamlLines(text, path)
    raise lines.error(("stages", 0, "with", "epochs"), "must be >= 1", fix="...")
    # LobseqError: path: line 12, key 'stages.0.with.epochs': must be >= 1. Fix: ...
"""

from __future__ import annotations

from pathlib import Path

import yaml

from lobseq.errors import LobseqError


class YamlLines:
    """Line numbers (1-based) of every key and list item, from yaml's node marks."""

    def __init__(self, text: str, file: Path) -> None:
        self.file = file
        self.lines: dict[tuple, int] = {}
        self.overridden: set[tuple] = set()
        try:
            node = yaml.compose(text)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            at = f"line {mark.line + 1}: " if mark else ""
            raise LobseqError(f"{at}not valid YAML: {getattr(e, 'problem', e)}", file=file,
                              fix="check indentation and quoting") from None
        if node is not None:
            self._walk(node, ())

    def _walk(self, node, path: tuple) -> None:
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                key = path + (k.value,)
                self.lines[key] = k.start_mark.line + 1
                self._walk(v, key)
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                self._walk(v, path + (i,))

    def error(self, path: tuple, problem: str, fix: str | None = None) -> LobseqError:
        line = None
        for n in range(len(path), -1, -1):  # nearest enclosing node that has a line
            if path[:n] in self.lines:
                line = self.lines[path[:n]]
                break
        key = ".".join(str(p) for p in path) or "(top)"
        origin = " (from --set)" if path in self.overridden else ""
        at = f"line {line}, " if line else ""
        return LobseqError(f"{at}key '{key}'{origin}: {problem}", file=self.file, fix=fix)
