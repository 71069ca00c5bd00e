"""``agglo run`` and ``agglo serve`` parse with their own grammar alone (``FAST_COMMANDS``): for any command line
it gives what the whole grammar gives, the parsed arguments, the usage errors and the help, word for word."""

from __future__ import annotations

import contextlib
import io
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from handlers import local

WORDS = ["-c", "cfg.json", "--config", "-i", "in.jsonl", "-o", "-", "--dedupe", "--explain", "2", "0", "x",
         "--max-line-bytes", "--max-decompressed-bytes", "--allow-exec", "/bin/true", "--exec-timeout", "1.5",
         "-5", "nan", "--no-cache", "--host", "::1", "--port", "70000", "8080", "--path", "/p", "--durable",
         "--workers", "--queue-max", "--read-timeout", "--max-body", "-h", "--help", "--nope", "validate", "run",
         "serve", "--", "--dedup", "--no-c"]


def parsed(p: Any, argv: list[str]) -> tuple[object, str, str]:
    """(the namespace without its functions, or the exit status; stdout; stderr) of parsing ``argv``."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            args, extras = p.parse_known_args(argv)
            result: object = ({k: v for k, v in vars(args).items() if not callable(v)}, extras)
        except SystemExit as e:
            result = e.code
    return result, out.getvalue(), err.getvalue()


@settings(max_examples=300, deadline=None)
@given(command=st.sampled_from(sorted(local.FAST_COMMANDS)), words=st.lists(st.sampled_from(WORDS), max_size=8))
def test_a_fast_command_parses_as_the_whole_grammar_does(command: str, words: list[str]) -> None:
    argv = [command, *words]
    assert parsed(local.parser(command), argv) == parsed(local.parser(), argv)


def test_only_the_named_command_is_built_and_the_rest_keep_the_whole_grammar() -> None:
    assert parsed(local.parser("run"), ["validate", "-c", "x"])[0] == 2  # not in the fast grammar
    assert parsed(local.parser("lint"), ["lint", "x.json"]) == parsed(local.parser(), ["lint", "x.json"])
    assert local.parse_args(["validate", "-c", "x.json"]).config == "x.json"
    assert local.parse_args(["run", "-c", "x.json", "--no-cache"]).no_cache is True
