"""The README's "Team mode" section stays true, checked without starting a server.

The section's bash blocks were run verbatim, in order, against a real PostgreSQL
and `mlflow server` (what they do is tested against those servers in
tests/test_team_*.py). Here, in seconds: every `lobseq` command and option it
names exists and takes the values given; every LOBSEQ_/MLFLOW_ variable it names
is read by lobseq or by MLflow; the server command and the systemd unit use
options `mlflow server` has, agree with each other and bind 127.0.0.1; the auth
file's keys are MLflow's; no password is written out in the text.
"""

from __future__ import annotations

import ast
import configparser
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import click
import pytest

ROOT = Path(__file__).resolve().parents[1]
SECTION = "\n## Team mode\n"
HEREDOC = re.compile(r"<<-?\s*'?(\w+)'?")


def _section() -> str:
    text = (ROOT / "README.md").read_text()
    assert SECTION in text, "README.md has no '## Team mode' section"
    return text.split(SECTION, 1)[1].split("\n## ", 1)[0]


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", _section(), re.S)


def _script() -> tuple[list[str], dict[str, str]]:
    """The bash blocks as logical lines (continuations joined, heredoc bodies apart) and the
    heredoc bodies by the file they are written to (`python` for the one piped to python)."""
    lines, bodies = [], {}
    raw = "\n".join(_blocks("bash")).replace("\\\n", " ").splitlines()
    i = 0
    while i < len(raw):
        line = raw[i]
        i += 1
        found = HEREDOC.search(line)
        if found:
            end = raw.index(found.group(1), i)
            target = re.search(r">\s*(\S+)", line[found.end():] + " " + line[:found.start()])
            bodies[target.group(1) if target else line.split()[0]] = "\n".join(raw[i:end])
            i = end + 1
        lines.append(line)
    return lines, bodies


def _strip_comment(line: str) -> str:
    return re.split(r"\s#", line, maxsplit=1)[0]


def _lobseq_calls(prose: bool = True) -> list[tuple[list[str], bool]]:
    """Every `lobseq ...` in the bash blocks (complete: True) and in the prose's code spans
    (which may just name a command), as (argv without `lobseq`, complete)."""
    texts = [(_strip_comment(line), True) for line in _script()[0]]
    if prose:
        texts += [(span, False) for span in re.findall(r"`(lobseq\b[^`]*)`", _section())]
    calls = []
    for text, complete in texts:
        for found in re.finditer(r"(?:^|[\s;&|()])lobseq\s+([^;&|()\n]*)", text):
            calls.append((shlex.split(found.group(1)), complete))
    return calls


def _resolve(argv: list[str]) -> tuple[click.Command, list[str], str]:
    from lobseq.cli import cli

    cmd, path = cli, "lobseq"
    while isinstance(cmd, click.Group) and argv and not argv[0].startswith("-"):
        assert argv[0] in cmd.commands, f"`{path} {argv[0]}`: no such command"
        cmd, path, argv = cmd.commands[argv[0]], f"{path} {argv[0]}", argv[1:]
    return cmd, argv, path


def _convert(param: click.Parameter, value: str, where: str) -> None:
    if isinstance(param.type, (click.Path, click.File)):  # the files exist where it is run
        return
    ctx = click.Context(click.Command("readme"))
    try:
        param.type.convert(value, param, ctx)
    except click.BadParameter as e:
        raise AssertionError(f"{where}: {param.name}={value!r} is refused: {e.message}") from None


def _check_call(argv: list[str], complete: bool = True) -> None:
    cmd, argv, where = _resolve(argv)
    options = {o: p for p in cmd.params if isinstance(p, click.Option)
               for o in (*p.opts, *p.secondary_opts)}
    positional, tokens = [], list(argv)
    while tokens:
        token = tokens.pop(0)
        if not token.startswith("-") or token == "-":
            positional.append(token)
            continue
        name, _, inline = token.partition("=")
        assert name in options, f"`{where}` has no option {name} (README: {' '.join(argv)})"
        param = options[name]
        if param.is_flag or param.count:
            continue
        values = [inline] if inline else [tokens.pop(0) for _ in range(max(param.nargs, 1))]
        for value in values:
            _convert(param, value, f"`{where} {name}`")
    arguments = [p for p in cmd.params if isinstance(p, click.Argument)]
    if not any(a.nargs == -1 for a in arguments):
        assert len(positional) <= sum(a.nargs for a in arguments), \
            f"`{where}` takes {len(arguments)} argument(s), README gives {positional}"
    required = [a for a in arguments if a.required] if complete else []
    assert len(positional) >= len(required), f"`{where}` needs {[a.name for a in required]}"
    for arg, value in zip(arguments, positional, strict=False):
        if arg.nargs == 1:
            _convert(arg, value, f"`{where}` {arg.name}")


def test_the_section_has_its_command_blocks_and_one_systemd_unit():
    assert len(_blocks("bash")) >= 4 and len(_blocks("ini")) == 1
    assert {"serve", "models", "train"} <= {argv[0] for argv, _ in _lobseq_calls(prose=False)}


def test_every_lobseq_command_and_option_named_exists_and_takes_its_values():
    calls = _lobseq_calls()
    assert any(c[:2] == ["serve", "models:/lobseq-bars@champion"] and "--workers" in c
               for c, _ in calls), "the README no longer shows serve --workers following @champion"
    for argv, complete in calls:
        _check_call(argv, complete)


def _lobseq_strings() -> set[str]:
    """Every string constant in lobseq's code (a variable it reads is spelled out once)."""
    found = set()
    for path in (ROOT / "lobseq").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                found.add(node.value)
    return found


def test_every_variable_named_is_read_by_lobseq_or_mlflow():
    import mlflow.environment_variables as mlflow_env

    from lobseq.tracking.store import SERVER_DEFAULTS

    names = set(re.findall(r"\b(?:LOBSEQ|MLFLOW)_[A-Z0-9_]+\b", _section()))
    assert {"MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD",
            "LOBSEQ_LOCK_URI"} <= names
    ours = _lobseq_strings()
    unread = [n for n in names if n.startswith("LOBSEQ_") and n not in ours]
    unknown = [n for n in names if n.startswith("MLFLOW_")
               and not hasattr(mlflow_env, n) and n not in SERVER_DEFAULTS]
    assert (unread, unknown) == ([], []), "named in the README but read by nobody"


def _mlflow_server_argv(text: str) -> list[str]:
    argv = shlex.split(text.split("mlflow server", 1)[1].split(")", 1)[0], comments=True)
    return [a.replace("$TEAM", "/srv/lobseq-team") for a in argv]


def _unit() -> configparser.ConfigParser:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # systemd keys are case-sensitive
    unit.read_string(_blocks("ini")[0])
    return unit


def test_the_systemd_unit_parses_and_runs_the_same_server_command():
    unit = _unit()
    assert {"Unit", "Service", "Install"} <= set(unit.sections())
    exec_start = unit["Service"]["ExecStart"].replace("\\\n", " ")
    lines, _ = _script()
    by_hand = next(line for line in lines if "mlflow server" in line)
    assert "export TEAM=/srv/lobseq-team" in lines, "the unit's paths assume TEAM=/srv/lobseq-team"
    assert _mlflow_server_argv(exec_start) == _mlflow_server_argv(by_hand)
    assert unit["Service"]["EnvironmentFile"] == "/srv/lobseq-team/mlflow.env"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_analyze_verifies_the_unit(tmp_path):
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    text = _blocks("ini")[0].replace("/opt/lobseq/.venv/bin/mlflow", str(mlflow_bin))
    (tmp_path / "lobseq-mlflow.service").write_text(text)
    out = subprocess.run(["systemd-analyze", "verify", str(tmp_path / "lobseq-mlflow.service")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


def test_the_server_options_are_mlflow_servers_and_bind_loopback():
    from mlflow.cli import cli as mlflow_cli

    server = mlflow_cli.commands["server"]
    known = {o for p in server.params for o in (*p.opts, *p.secondary_opts)}
    argv = _mlflow_server_argv(next(line for line in _script()[0] if "mlflow server" in line))
    named = {a for a in argv if a.startswith("--")} | set(re.findall(r"--allowed-hosts", _section()))
    assert named - known == set()
    assert argv[argv.index("--host") + 1] == "127.0.0.1"
    assert {"--app-name", "--backend-store-uri", "--artifacts-destination"} <= named
    assert argv[argv.index("--app-name") + 1] == "basic-auth"
    assert argv[argv.index("--backend-store-uri") + 1].startswith("postgresql+psycopg2://")


def test_every_address_in_the_commands_is_loopback():
    text = "\n".join([*_blocks("bash"), *_blocks("ini")])
    hosts = set(re.findall(r"https?://([^/:\s'\"]+)", text))
    hosts |= set(re.findall(r"@([^/:\s]+):\d+/", text))  # database URIs
    hosts |= set(re.findall(r"--host[ =](\S+)", text))
    hosts |= set(re.findall(r"listen_addresses=(\S+?)[\"'\s]", text))
    assert hosts == {"127.0.0.1"}, hosts


def test_no_secret_is_written_out_only_read_from_files_under_team():
    lines, bodies = _script()
    text = "\n".join([*lines, *bodies.values()])
    from_file = r'"?\$\(cat \$TEAM/[\w.]+\)"?'
    values = re.findall(r"(?i)\b\w*password\w*\s*=\s*(\"?\$\([^)]*\)\"?|\S+)", text)
    values += re.findall(r'create_user\("\w+", ("?\$\([^)]*\)"?|[^,)]+)\)', text)
    assert len(values) >= 4 and [v for v in values if not re.fullmatch(from_file, v)] == []
    assert not re.search(r"://[^/@\s:]+:[^/@\s]+@", text), "a URI with a password in it"
    first_secret = next(i for i, line in enumerate(lines) if "openssl rand" in line)
    assert "umask 077" in lines[:first_secret]


def test_the_auth_file_and_server_environment_are_mlflows():
    import mlflow.environment_variables as mlflow_env
    from mlflow.server.auth.config import AuthConfig

    _lines, bodies = _script()
    auth = configparser.ConfigParser(interpolation=None)
    auth.read_string(bodies["$TEAM/auth.ini"])
    assert set(auth["mlflow"]) <= set(AuthConfig._fields), set(auth["mlflow"]) - set(AuthConfig._fields)
    assert auth["mlflow"]["default_permission"] in {"READ", "EDIT", "MANAGE", "NO_PERMISSIONS"}
    module, func = auth["mlflow"]["authorization_function"].split(":")
    assert callable(getattr(__import__(module, fromlist=[func]), func))
    env_keys = [line.split("=", 1)[0] for line in bodies["$TEAM/mlflow.env"].splitlines()]
    assert [k for k in env_keys if k != "PGPASSWORD" and not hasattr(mlflow_env, k)] == []


def test_the_auth_client_calls_exist_and_the_python_compiles():
    from mlflow.server.auth.client import AuthServiceClient

    _lines, bodies = _script()
    compile(bodies["python"], "README python block", "exec")
    called = set(re.findall(r"\b(?:auth|AuthServiceClient\([^)]*\))\.(\w+)\(", _section()))
    called |= set(re.findall(r"`(\w+)\(USER,", _section()))
    assert {"create_user", "grant_user_permission"} <= called
    assert [m for m in called if not hasattr(AuthServiceClient, m)] == []


def test_the_install_extra_named_exists():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for extra in re.findall(r"pip install -e '\.\[(\w+)\]'", _section()):
        assert extra in extras
