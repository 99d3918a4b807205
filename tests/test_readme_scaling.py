"""The README's "Scaling out" commands name commands, options and files that exist.

Read from the README itself, checked against the click commands (nothing runs,
no Ray): a renamed option or a moved pipeline file fails here, not in a user's shell.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

from lobseq.cli import cli

ROOT = Path(__file__).resolve().parents[1]


def scaling_commands() -> list[list[str]]:
    """The `lobseq ...` lines of the section's bash block, continuation lines joined."""
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Scaling out\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1).replace("\\\n", " ")
    return [shlex.split(line, comments=True) for line in block.splitlines()
            if line.strip().startswith("lobseq ")]


def resolve(words: list[str]) -> tuple[click.Command, list[str]]:
    """The (sub)command the words name, and the words after it."""
    cmd, rest = cli, words[1:]
    while isinstance(cmd, click.Group) and rest and rest[0] in cmd.commands:
        cmd, rest = cmd.commands[rest[0]], rest[1:]
    return cmd, rest


COMMANDS = scaling_commands()


def test_the_section_covers_every_ray_entry_point():
    named = {" ".join(words[:2]) for words in COMMANDS}
    assert {"lobseq ingest", "lobseq tune", "lobseq walkforward", "lobseq predict",
            "lobseq train", "lobseq run"} <= named
    engines = [w for words in COMMANDS for w in words if w.startswith("--engine")]
    assert engines and len(engines) >= 5


@pytest.mark.parametrize("words", COMMANDS, ids=[" ".join(w[:2]) for w in COMMANDS])
def test_each_command_and_option_exists(words):
    cmd, rest = resolve(words)
    assert not isinstance(cmd, click.Group), f"{' '.join(words[:3])}: no such command"
    known = {opt for p in cmd.params for opt in (*p.opts, *p.secondary_opts)}
    used = [w.split("=", 1)[0] for w in rest if w.startswith("--")]
    assert set(used) <= known, f"{cmd.name}: unknown {sorted(set(used) - known)}"
    for w in rest:  # repository files the command reads (pipelines, search spaces)
        if w.startswith("pipelines/"):
            assert (ROOT / w).is_file(), f"{w} is not in the repository"


def test_the_pipeline_and_space_it_names_validate():
    from lobseq.training.config import TrainConfig
    from lobseq.training.tune_space import load_space
    from lobseq.workflow.spec import load_pipeline

    pipe = load_pipeline(ROOT / "pipelines" / "scaleout.yaml")
    assert pipe.engine.name == "ray"
    tune = pipe.stage("tune").settings
    space = load_space(ROOT / tune["space"], TrainConfig(model="gru"))
    assert {"units", "lr", "epochs"} <= set(space.names)
