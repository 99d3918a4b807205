"""CLI options derived from the stage configs, and a CLI that starts without TensorFlow."""

import dataclasses
import subprocess
import sys
from pathlib import Path
from typing import Literal

import click
import pytest
from click.testing import CliRunner
from pydantic import Field, StrictBool, StrictInt

from lobseq.cli import cli
from lobseq.cli.options import build, config_options
from lobseq.config import default_of, fields_of, stage_config


@stage_config
class Toy:
    size: StrictInt = Field(7, ge=1, description="How big.")
    colour: Literal["red", "blue"] = Field("red", description="Which colour.")
    n_legs: Literal[2, 4] = Field(4, alias="legs", description="Legs.")
    rate: float = Field(0.5, gt=0, lt=1, description="A fraction.")
    loud: StrictBool = Field(False, description="Make noise.")
    weights: tuple[float, float] = Field((0.3, 0.7), description="Two weights.")
    name: str = Field(description="Required name.")


def _toy_command(**kw):
    seen = {}

    @click.command()
    @config_options(Toy, **kw)
    def toy(**settings):
        seen["cfg"] = build(Toy, settings)

    return toy, seen


def test_help_shows_defaults_choices_and_descriptions():
    toy, _ = _toy_command()
    text = CliRunner().invoke(toy, ["--help"]).output
    for piece in ("--size INTEGER RANGE", "How big.", "[default: 7; x>=1]", "--colour [red|blue]",
                  "--legs [2|4]", "--loud", "--weights", "[default: 0.3,0.7]", "--name TEXT",
                  "[required]"):
        assert piece in text, piece


def test_parsed_options_build_the_config():
    toy, seen = _toy_command()
    result = CliRunner().invoke(toy, ["--name", "x", "--legs", "2", "--colour", "blue", "--loud",
                                      "--weights", "0.1,0.9", "--size", "3"])
    assert result.exit_code == 0, result.output
    assert seen["cfg"] == Toy(name="x", n_legs=2, colour="blue", loud=True, weights=(0.1, 0.9), size=3)


def test_defaults_come_from_the_config():
    toy, seen = _toy_command()
    CliRunner().invoke(toy, ["--name", "x"])
    assert seen["cfg"] == Toy(name="x")


def test_ranges_and_choices_are_checked_by_click():
    toy, _ = _toy_command()
    assert CliRunner().invoke(toy, ["--name", "x", "--size", "0"]).exit_code == 2
    assert CliRunner().invoke(toy, ["--name", "x", "--colour", "green"]).exit_code == 2
    assert CliRunner().invoke(toy, ["--name", "x", "--rate", "1"]).exit_code == 2


def test_rename_exclude_and_command_defaults():
    toy, seen = _toy_command(rename={"size": "n"}, exclude={"loud"}, defaults={"size": 9})
    text = CliRunner().invoke(toy, ["--help"]).output
    assert "--n INTEGER RANGE" in text and "--loud" not in text and "[default: 9" in text
    CliRunner().invoke(toy, ["--name", "x"])
    assert seen["cfg"].size == 9


def _options(command: click.Command) -> dict[str, click.Option]:
    return {p.name: p for p in command.params if isinstance(p, click.Option)}


@pytest.mark.parametrize("command, config_path", [
    ("simulate", "lobseq.data.simulate_config:SimulateConfig"),
    ("ingest", "lobseq.data.ingest:IngestConfig"),
    ("train", "lobseq.training.config:TrainConfig"),
    ("evaluate", "lobseq.evaluation.config:EvaluateConfig"),
    ("backtest", "lobseq.evaluation.config:BacktestConfig"),
    ("walkforward", "lobseq.evaluation.config:WalkForwardConfig"),
    ("predict", "lobseq.serving.config:PredictConfig"),
    ("tune", "lobseq.training.tune:TuneConfig"),
])
def test_every_command_option_default_is_its_configs(command, config_path):
    import importlib

    module, name = config_path.split(":")
    cls = getattr(importlib.import_module(module), name)
    options = _options(cli.commands[command])
    for field, info in fields_of(cls).items():
        if field not in options or options[field].required and field == "model":
            continue  # --model is required on the command line
        default = default_of(info)
        shown = options[field].default
        if isinstance(default, tuple):
            default = ",".join(map(str, default))
        if default is dataclasses.MISSING:
            assert options[field].required, field
        else:
            assert shown == default, (command, field, shown, default)


def test_existing_option_names_are_kept():
    names = {c: {o for p in cli.commands[c].params for o in getattr(p, "opts", [])}
             for c in ("simulate", "ingest", "train", "walkforward", "backtest", "predict")}
    assert {"--classes", "--split-dates", "--fractions", "--symbol-column"} <= names["ingest"]
    assert {"--format", "--symbols", "--ticker", "--days", "--kind"} <= names["simulate"]
    assert {"--lr", "--param", "--model", "--max-train-windows", "--register"} <= names["train"]
    assert {"--backtest-mode", "--mode", "--val-fraction", "--lr", "--at-touch"} <= names["walkforward"]
    assert {"--cost-bps", "--at-touch", "--tau", "--periods-per-year"} <= names["backtest"]


def test_walkforward_trains_shorter_by_default():
    options = _options(cli.commands["walkforward"])
    assert (options["epochs"].default, options["patience"].default) == (10, 3)


def test_a_config_error_from_the_cli_is_one_line_with_exit_2(tmp_path):
    (tmp_path / "raw").mkdir()
    result = CliRunner().invoke(cli, ["ingest", str(tmp_path / "raw"), "--format", "lobster",
                                      "--out", str(tmp_path / "d"), "--embargo", "3"])
    assert result.exit_code == 2
    assert result.output.strip().count("\n") == 0 and "field 'embargo'" in result.output


_IMPORTED = ("import sys; from lobseq.cli import main\n"
             "sys.argv = ['lobseq'] + sys.argv[1:]\n"
             "try:\n    main()\nexcept SystemExit:\n    pass\n"
             "heavy = sorted({m.split('.')[0] for m in sys.modules} & "
             "{'tensorflow', 'keras', 'mlflow', 'pandas', 'ray'})\n"
             "print('HEAVY', heavy, file=sys.stderr)\n")


@pytest.mark.parametrize("args", [["models"], ["--help"], ["ingest", "--help"], ["tune", "--help"]])
def test_listing_models_and_help_import_no_tensorflow_or_mlflow(args):
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", _IMPORTED, *args], capture_output=True, text=True,
                         cwd=root, env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
                         timeout=120)
    assert "HEAVY []" in out.stderr, out.stderr[-2000:]
    if args == ["models"]:
        assert "lstm" in out.stdout and "units = 64" in out.stdout and "preset dixon" in out.stdout


@pytest.mark.parametrize("command", ["ingest", "walkforward", "predict", "tune", "train"])
def test_engine_options_come_from_the_engine_config(command):
    """--engine, --ray-address, --ray-num-cpus on every command that runs on an engine, with the
    EngineConfig's defaults and choices, under their own names (no clash with e.g. ingest's name)."""
    options = {o.opts[0]: o for o in cli.commands[command].params if isinstance(o, click.Option)}
    assert options["--engine"].default == "local" and list(options["--engine"].type.choices) == ["local", "ray"]
    assert options["--ray-address"].default is None and options["--ray-num-cpus"].default is None
    assert options["--engine"].name == "engine_name"


def test_ray_settings_without_the_ray_engine_are_one_line_exit_2(tmp_path):
    (tmp_path / "raw").mkdir()
    result = CliRunner().invoke(cli, ["ingest", str(tmp_path / "raw"), "--format", "lobster",
                                      "--out", str(tmp_path / "d"), "--ray-num-cpus", "2"])
    assert result.exit_code == 2
    assert result.output.strip() == ("Error: field 'engine': a Ray address or num_cpus was given but "
                                      "the engine is local. Fix: add --engine ray (or `engine: ray`), "
                                      "or drop the Ray settings")
