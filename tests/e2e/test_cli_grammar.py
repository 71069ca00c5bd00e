"""One command-line grammar: every command's help has examples that work, options say their defaults,
configs are ``-c CONFIG`` (and positional too where a command takes several), bad numbers are refused."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import pathlib
import re
import shlex
import shutil
from collections.abc import Iterator

import pytest
from _servers import run_agglo
from hypothesis import given, settings
from hypothesis import strategies as st

from handlers.local import parse_args, parser

REPO = pathlib.Path(__file__).resolve().parents[2]
DAEMONS_AND_CLOUDS = ("serve", "invoke", "ticker", "entwine")
"""Commands whose examples need a server or a cloud: they are parsed, not run."""


def commands(p: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...],
                                                                                       argparse.ArgumentParser]]:
    """Every parser of the ``agglo`` tree with its command path, the top-level one first."""
    yield path, p
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from commands(child, (*path, name))


def examples(p: argparse.ArgumentParser) -> list[str]:
    epilog = p.epilog or ""
    head, _, body = epilog.partition("\n")
    assert re.fullmatch(r"examples?:", head), f"{p.prog}: the help ends with no example: {epilog!r}"
    lines = [line.strip() for line in body.splitlines()]
    assert lines and all(line.startswith("agglo ") for line in lines), epilog
    return lines


def argv_of(example: str) -> tuple[list[str], str | None]:
    """The arguments of an example command line, and the file its stdout is redirected to."""
    words = shlex.split(example, comments=True)[1:]
    if ">" in words:
        at = words.index(">")
        return words[:at], words[at + 1]
    return words, None


ALL = list(commands(parser()))
LEAVES = [(path, p) for path, p in ALL if path and not any(
    isinstance(a, argparse._SubParsersAction) for a in p._actions)]


def test_the_tree_has_every_command():
    assert {" ".join(path) for path, _ in LEAVES} == {
        "run", "validate", "serve", "invoke", "ticker serve", "entwine happened-before", "entwine verify", "test",
        "genevents", "graph", "lint", "schema", "fmt", "compile", "requirements"}


@pytest.mark.parametrize(("path", "p"), ALL, ids=[" ".join(path) or "agglo" for path, _ in ALL])
def test_every_help_ends_with_examples_that_parse_as_that_command(path, p):
    shown = p.format_help()
    assert shown.rstrip().endswith(examples(p)[-1])
    for example in examples(p):
        argv, _ = argv_of(example)
        args = parse_args(argv)
        if path:
            assert args.command == path[0], example
        if len(path) > 1:
            assert getattr(args, f"{path[0]}_command") == path[1], example
        assert callable(args.func)


@pytest.mark.parametrize(("path", "p"), ALL, ids=[" ".join(path) or "agglo" for path, _ in ALL])
def test_every_option_has_help_and_shows_its_default(path, p):
    shown = p.format_help()
    for action in p._actions:
        if action.help == argparse.SUPPRESS or isinstance(action, argparse._SubParsersAction):
            continue
        assert action.help, f"{p.prog}: {action.option_strings or action.dest} has no help"
        if action.option_strings and action.default not in (None, False, argparse.SUPPRESS):
            assert f"(default: {action.default})" in " ".join(shown.split()), (p.prog, action.dest)


@pytest.fixture
def workspace(tmp_path: pathlib.Path) -> pathlib.Path:
    """What the examples refer to, copied: running them writes out/, outputs and reformatted configs here."""
    for tree in ("pipelines", "events", "tests/fixtures/binge/generators"):
        shutil.copytree(REPO / tree, tmp_path / tree)
    return tmp_path


RUNNABLE = [(path, example) for path, p in LEAVES if path[0] not in DAEMONS_AND_CLOUDS for example in examples(p)]


@pytest.mark.parametrize(("path", "example"), RUNNABLE, ids=[e for _, e in RUNNABLE])
def test_every_example_runs(path, example, workspace):
    argv, redirect = argv_of(example)
    result = run_agglo(argv, workspace)
    assert result.returncode == 0, (example, result.stdout.decode()[-2000:], result.stderr.decode()[-2000:])
    if redirect:
        assert json.loads(result.stdout)  # schema's JSON Schema, as the example saves it


def test_runnable_examples_cover_every_command_but_the_daemons():
    assert {path for path, _ in RUNNABLE} == {path for path, _ in LEAVES if path[0] not in DAEMONS_AND_CLOUDS}


# --- configs: -c everywhere, positional too where a command takes several --------------------------------------

@pytest.mark.parametrize("command", ["lint", "fmt"])
def test_several_configs_positional_and_c_together(command):
    args = parse_args([command, "a.json", "-c", "b.json", "c.json", "--config", "d.json", "e.json"])
    assert sorted(args.configs) == ["a.json", "b.json", "c.json", "d.json", "e.json"]
    assert parse_args([command, "-c", "b.json"]).configs == ["b.json"]
    assert parse_args([command, "b.json"]).configs == ["b.json"]


@pytest.mark.parametrize("command", ["lint", "fmt"])
def test_several_configs_need_at_least_one(command, capsys):
    with pytest.raises(SystemExit) as exit:
        parse_args([command])
    assert exit.value.code == 2
    assert "give at least one config: CONFIG ... or -c CONFIG" in capsys.readouterr().err


def test_test_takes_paths_and_configs_in_any_order():
    args = parse_args(["test", "-c", "a.json", "dir/", "--config", "b.json", "x.agglo-test.yaml"])
    assert args.configs == ["a.json", "b.json"] and args.paths == ["dir/", "x.agglo-test.yaml"]


@pytest.mark.parametrize("argv", [["lint", "a.json", "--bogus"], ["run", "-c", "a.json", "extra"],
                                  ["test", "-c", "a.json", "dir/", "--nope"]])
def test_unknown_arguments_are_still_refused(argv, capsys):
    with pytest.raises(SystemExit) as exit:
        parse_args(argv)
    assert exit.value.code == 2 and "unrecognized arguments" in capsys.readouterr().err


def test_graph_takes_c_and_still_its_old_positional_config(capsys):
    assert parse_args(["graph", "-c", "a.json"]).config == "a.json"
    assert parse_args(["graph", "a.json", "--format", "dot"]).config == "a.json"
    assert parse_args(["graph", "a.json", "-c", "a.json"]).config == "a.json"
    for argv, message in ((["graph", "a.json", "-c", "b.json"], "give the config once"),
                          (["graph"], "required: -c/--config")):
        with pytest.raises(SystemExit) as exit:
            parse_args(argv)
        assert exit.value.code == 2 and message in capsys.readouterr().err
    assert dict(ALL)[("graph",)].format_usage().startswith("usage: agglo graph [-h] -c CONFIG ")


@pytest.mark.parametrize("argv", [["run"], ["validate"], ["serve"], ["entwine", "verify"]])
def test_single_config_commands_require_c(argv, capsys):
    with pytest.raises(SystemExit) as exit:
        parse_args(argv)
    assert exit.value.code == 2 and "-c/--config" in capsys.readouterr().err
    assert parse_args([*argv, "--config", "x.json"]).config == "x.json"


def test_graph_old_positional_form_draws_the_same_picture():
    new = run_agglo(["graph", "-c", "pipelines/basic.json"], REPO)
    old = run_agglo(["graph", "pipelines/basic.json"], REPO)
    assert new.returncode == old.returncode == 0 and new.stdout == old.stdout and b"flowchart TD" in new.stdout


# --- numbers: negative (or otherwise impossible) values are refused, naming the option -------------------------

BOUNDED = [
    (["run", "-c", "x.json"], "--exec-timeout", st.floats(max_value=0, allow_nan=False)),
    (["run", "-c", "x.json"], "--explain", st.integers(max_value=0)),
    (["serve", "-c", "x.json"], "--exec-timeout", st.floats(max_value=0, allow_nan=False)),
    (["serve", "-c", "x.json"], "--port", st.integers(max_value=-1) | st.integers(min_value=65536)),
    (["serve", "-c", "x.json"], "--max-body", st.integers(max_value=0)),
    (["serve", "-c", "x.json"], "--workers", st.integers(max_value=0)),
    (["ticker", "serve", "--state", "sqlite:t.db"], "--port", st.integers(max_value=-1)),
    (["ticker", "serve", "--state", "sqlite:t.db"], "--interval",
     st.floats(max_value=0, exclude_max=True, allow_nan=False)),
    (["ticker", "serve", "--state", "sqlite:t.db"], "--max-body", st.integers(max_value=0)),
    (["genevents", "-s", "s.json"], "--count", st.integers(max_value=-1)),
]
"""(a command line, an option, values it must refuse)."""


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_values_out_of_an_options_range_are_refused_naming_it(data):
    base, option, values = data.draw(st.sampled_from(BOUNDED))
    value = data.draw(values)
    err = io.StringIO()
    with pytest.raises(SystemExit) as exit, contextlib.redirect_stderr(err):
        parse_args([*base, f"{option}={value}"])
    assert exit.value.code == 2
    assert f"argument {option}" in err.getvalue() or f"/{option}:" in err.getvalue(), err.getvalue()


@pytest.mark.parametrize(("argv", "message"), [
    (["serve", "-c", "x.json", "--workers", "-1"], "argument --workers: must be 1 or more, got -1"),
    (["serve", "-c", "x.json", "--port", "70000"], "argument --port: must be from 0 to 65535, got 70000"),
    (["run", "-c", "x.json", "--exec-timeout", "-0.5"], "argument --exec-timeout: must be more than 0 seconds"),
    (["run", "-c", "x.json", "--exec-timeout", "inf"], "argument --exec-timeout: must be more than 0 seconds"),
    (["ticker", "serve", "--state", "sqlite:t", "--interval", "-1"], "argument --interval: must be 0 or more"),
    (["genevents", "-s", "s.json", "-n", "-5"], "argument -n/--count: must be 0 or more, got -5"),
    (["genevents", "-s", "s.json", "-n", "lots"], "argument -n/--count: expected a whole number, got 'lots'"),
])
def test_refusals_say_which_option_and_why(argv, message, capsys):
    with pytest.raises(SystemExit) as exit:
        parse_args(argv)
    assert exit.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize(("argv", "dest", "value"), [
    (["serve", "-c", "x.json", "--port", "0"], "port", 0),
    (["ticker", "serve", "--state", "sqlite:t", "--interval", "0"], "interval", 0.0),
    (["genevents", "-s", "s.json", "-n", "0"], "count", 0),
    (["run", "-c", "x.json", "--exec-timeout", "0.25"], "exec_timeout", 0.25),
])
def test_the_least_values_are_taken(argv, dest, value):
    assert getattr(parse_args(argv), dest) == value


def test_a_refused_value_exits_2_from_the_real_command():
    result = run_agglo(["serve", "-c", "pipelines/basic.json", "--max-body", "-1"], REPO)
    assert result.returncode == 2 and b"argument --max-body: must be 1 or more, got -1" in result.stderr
