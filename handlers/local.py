"""The ``agglo`` command: binge's run modes on this machine.

Exit status: 0 when every record went through, 1 when a record (or, for ``validate``,
``lint`` and ``fmt``, the config) had a problem, 2 for a bad config or bad usage (or a
file, directory, port or disk that cannot be used: one line on stderr, no traceback),
141 when whoever reads the output stops reading (``| head``), quietly.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from itertools import islice
from typing import IO, Any

import orjson

from agglo_core import ConfigError, Record
from handlers.runtime.boot import UsageError, build_runtime, read_config_file
from handlers.runtime.driver import Runtime
from handlers.runtime.entwine_keys import validate_source
from handlers.sources.jsonfile import (
    DEFAULT_MAX_DECOMPRESSED_BYTES,
    DEFAULT_MAX_LINE_BYTES,
    Event,
    Limits,
    read_records,
)

BATCH = 512


class _Progress:
    """A one-line progress indicator on stderr, for file input when stderr is a terminal."""

    def __init__(self, raw: IO[bytes] | None, total: int) -> None:
        self.raw, self.total, self.shown = raw, total, -1

    def update(self) -> None:
        if self.raw is None or not self.total:
            return
        pct = min(100, int(self.raw.tell() * 100 / self.total))
        if pct != self.shown:
            self.shown = pct
            sys.stderr.write(f"\r{pct:3d}% ")
            sys.stderr.flush()

    def done(self) -> None:
        if self.shown >= 0:
            sys.stderr.write("\r     \r")


def _batches(events: Iterator[Event]) -> Iterator[list[Event]]:
    while batch := list(islice(events, BATCH)):
        yield batch


def input_name(path: str) -> str:
    """What the records of ``path`` are named by: ``file:`` and the real absolute path (``./x``, ``x``, ``/abs/x``
    and a symlink to it are one file); for stdin (``-``), a name new to this run: piped input is new data."""
    if path == "-":
        import uuid  # here: only piped input needs it, and it costs a start-up ~2 ms (platform)

        return f"stdin:{uuid.uuid4().hex}"
    return "file:" + os.path.realpath(path)


def _write(out: IO[bytes], data: bytes) -> None:
    """``data`` to ``out`` (none: flush it); a full disk or an I/O error there is a usage error, saying where."""
    try:
        if data:
            out.write(data)
        else:
            out.flush()
    except BrokenPipeError:
        raise
    except OSError as e:
        raise UsageError(f"cannot write {getattr(out, 'name', 'the output')}: {e.strerror or e}") from None


def run(runtime: Runtime, raw: IO[bytes], name: str, out: IO[bytes], err: IO[str],
        progress: _Progress | None = None, limits: Limits | None = None) -> int:
    """Process every event in ``raw``; outputs to ``out`` as JSON lines, failures to ``err``.

    A record's id is ``NAME#POSITION:HASH``: the same line of the same file is the same record (``--dedupe``
    changes state once for it), while other content at that position is new data.
    """
    failed = 0
    dumps = orjson.dumps
    prefix = name + "#"
    for batch in _batches(read_records(raw, limits)):
        records = [Record(f"{prefix}{line}:{digest}", event, name, proof) for line, event, digest, proof in batch]
        outcomes = runtime.process(records)
        # One pass each, no generator per record: this loop runs once a line.
        chunks = [dumps(event) for outcome in outcomes for _, event in outcome.outputs]
        errors: list[dict[str, Any]] = [
            {"line": line, "pipeline": e.pipeline, "process": e.process, "error": e.message}
            for (line, *_), outcome in zip(batch, outcomes, strict=True) if outcome.errors
            for e in outcome.errors]
        if chunks:
            _write(out, b"\n".join(chunks) + b"\n")
        if errors:
            failed += len(errors)
            err.write("".join(dumps(e).decode() + "\n" for e in errors))
        if progress:
            progress.update()
    _write(out, b"")
    err.flush()
    if progress:
        progress.done()
    return 1 if failed else 0


def _cmd_run(args: argparse.Namespace) -> int:
    if args.explain:
        from handlers.authoring import explain

        return explain.main(args)
    runtime = build_runtime(args.config, args.allow_exec, args.exec_timeout, dedupe=args.dedupe,
                            cached=not args.no_cache)
    limits = Limits(args.max_line_bytes, args.max_decompressed_bytes)
    progress = None
    if args.input == "-":
        raw = sys.stdin.buffer
    else:
        try:
            raw = open(args.input, "rb")  # noqa: SIM115 - closed below
        except OSError as e:
            raise UsageError(f"cannot read {args.input}: {e.strerror}") from None
        if sys.stderr.isatty():
            progress = _Progress(raw, os.fstat(raw.fileno()).st_size)
    try:
        if args.output == "-":
            status = run(runtime, raw, input_name(args.input), sys.stdout.buffer, sys.stderr, progress, limits)
        else:
            try:
                out = open(args.output, "wb")  # noqa: SIM115 - closed below
            except OSError as e:
                raise UsageError(f"cannot write {args.output}: {e.strerror}") from None
            with out:
                status = run(runtime, raw, input_name(args.input), out, sys.stderr, progress, limits)
    finally:
        if raw is not sys.stdin.buffer:
            raw.close()
        spawns_failed = runtime.execs.drain(2 * args.exec_timeout)  # asynchronous spawns still running
    return 1 if spawns_failed else status


def _cmd_validate(args: argparse.Namespace) -> int:
    try:
        config, warnings = validate_source(read_config_file(args.config))
    except ConfigError as e:
        for problem in e.problems:
            print(f"{args.config}: {problem}")
        return 1
    for warning in warnings:
        print(f"{args.config}: {'error' if args.strict else 'warning'}: {warning}")
    if warnings and args.strict:
        return 1
    print(f"{args.config}: ok ({len(config.pipelines)} pipeline(s), {len(config.processDefinitions)} "
          f"process definition(s), {len(config.externalSystems)} external system(s))")
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from handlers.daemons import serve

    return serve.main(args)


def _cmd_invoke(args: argparse.Namespace) -> int:
    from handlers.authoring import invoke

    return invoke.main(args)


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Examples keep their lines; an option's help ends with its default when it has one worth saying."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "%(default)" in text or action.default in (None, False, argparse.SUPPRESS) or \
                not (action.option_strings or action.nargs in ("?", "*")):
            return text
        return text + " (default: %(default)s)"


def _examples(*lines: str) -> str:
    return ("example:\n" if len(lines) == 1 else "examples:\n") + "\n".join("  " + line for line in lines)


def _whole(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    """An argparse type: a whole number from ``minimum`` (to ``maximum``); anything else is refused, saying why."""

    def whole(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum or (maximum is not None and value > maximum):
            bounds = f"from {minimum} to {maximum}" if maximum is not None else f"{minimum} or more"
            raise argparse.ArgumentTypeError(f"must be {bounds}, got {value}")
        return value

    return whole


def _seconds(zero_allowed: bool) -> Callable[[str], float]:
    """An argparse type: a finite number of seconds, more than 0 (or 0 too when ``zero_allowed``)."""

    def seconds(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
        if not math.isfinite(value) or value < 0 or (value == 0 and not zero_allowed):
            raise argparse.ArgumentTypeError(f"must be {'0 or more' if zero_allowed else 'more than 0'} seconds, "
                                             f"got {text}")
        return value

    return seconds


PORT = _whole(0, 65535)


class _Collect(argparse.Action):
    """Positional paths and each ``-c`` go to one list: neither form replaces what the other gave."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        given = values if isinstance(values, list) else [values]
        setattr(namespace, self.dest, [*(getattr(namespace, self.dest, None) or []), *given])


def _many_configs(sp: argparse.ArgumentParser, what: str) -> None:
    """CONFIG ... and -c CONFIG (repeatable), both into ``configs``; at least one is needed."""
    sp.add_argument("configs", nargs="*", action=_Collect, metavar="CONFIG", help=what)
    sp.add_argument("-c", "--config", dest="configs", action=_Collect, metavar="CONFIG",
                    help="the same as a positional CONFIG (repeatable)")

    def check(args: argparse.Namespace) -> None:
        if not args.configs:
            sp.error("give at least one config: CONFIG ... or -c CONFIG")

    sp.set_defaults(check=check, positional_paths="configs")


def _single_config(sp: argparse.ArgumentParser, legacy_positional: bool = False) -> None:
    """-c CONFIG; ``legacy_positional`` still takes the config as the one positional argument (not shown)."""
    if not legacy_positional:
        sp.add_argument("-c", "--config", required=True, help="the pipeline config (JSON)")
        return
    sp.add_argument("-c", "--config", help="the pipeline config (JSON); required")
    sp.add_argument("legacy_config", nargs="?", help=argparse.SUPPRESS)

    def check(args: argparse.Namespace) -> None:
        legacy = args.legacy_config
        if legacy is not None and args.config is not None and legacy != args.config:
            sp.error("give the config once: -c CONFIG")
        args.config = args.config or legacy
        if args.config is None:
            sp.error("the following arguments are required: -c/--config")

    sp.set_defaults(check=check)


def _add_command(sub: Any, name: str, summary: str, examples: Sequence[str], **kwargs: Any) -> argparse.ArgumentParser:
    return sub.add_parser(name, help=summary, description=summary, epilog=_examples(*examples),
                          formatter_class=_HelpFormatter, **kwargs)


def _cache_option(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--no-cache", action="store_true",
                    help="validate the config in full, using neither its compiled artefact (CONFIG.plan/) nor the "
                         "cache of validated plans ($AGGLO_CACHE_DIR; set to nothing, the cache is off)")


def _exec_options(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--allow-exec", action="append", metavar="PATH",
                    help="allow spawners and exec transforms to run PATH (repeatable; also AGGLO_ALLOW_EXEC)")
    sp.add_argument("--exec-timeout", type=_seconds(zero_allowed=False), default=30.0, metavar="SECONDS",
                    help="how long an executable may run before its record fails")


def parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole ``agglo`` grammar: one config is ``-c CONFIG``; commands taking several also take them as
    positional paths. Every command's help ends with examples (tests/e2e/test_cli_grammar.py runs them).

    ``only``: a command of ``FAST_COMMANDS``, the one the command line names: the grammar of that command
    alone, which parses its command lines exactly as the whole grammar does, in a tenth of the time (the
    whole grammar costs a run that starts from a cached plan about 5% of its CPU)."""
    p = argparse.ArgumentParser(prog="agglo", description="Run binge-format event pipelines locally.",
                                formatter_class=_HelpFormatter, epilog=_examples(
                                    "agglo run -c pipelines/basic.json -i events/basic.jsonl",
                                    "agglo test pipelines/"))
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    if only in FAST_COMMANDS:
        FAST_COMMANDS[only](sub)
        return p
    _run_command(sub)
    v = _add_command(sub, "validate", "check a config and list every problem with its JSON path",
                     ["agglo validate -c pipelines/basic.json"])
    _single_config(v)
    v.add_argument("--strict", action="store_true",
                   help="warnings (a private key file that cannot be read here) fail the check too")
    v.set_defaults(func=_cmd_validate)

    _serve_command(sub)
    i = _add_command(sub, "invoke", "run a SAM template's function once with an event (sam local invoke, "
                                    "without a container); the pipeline config comes from the function's "
                                    "environment, as on Lambda", [
        "agglo invoke PipelineFunction -e events/sqs.json --env-vars env.json"])
    i.add_argument("function", metavar="FUNCTION_LOGICAL_ID", help="the function's logical id in the template")
    i.add_argument("-e", "--event", metavar="EVENT_FILE", help="the event as JSON ('-': stdin; none given: {})")
    i.add_argument("-t", "--template", default="template.yaml", help="the SAM template (sam's -t)")
    i.add_argument("--env-vars", metavar="ENV_JSON", help='SAM\'s env.json: {"LogicalId": {"VAR": "value"}}')
    i.add_argument("--parameter-overrides", nargs="+", metavar="KEY=VALUE",
                   help="template parameters, as sam takes them")
    i.set_defaults(func=_cmd_invoke)
    _entwine_commands(sub)
    _authoring_commands(sub)
    return p


def _run_command(sub: Any) -> None:
    r = _add_command(sub, "run", "process JSON events from a file or stdin (binge's standalone mode)", [
        "agglo run -c pipelines/basic.json -i events/basic.jsonl -o outputs.jsonl",
        "agglo run -c pipelines/basic.json -i events/basic.jsonl --explain 2"])
    _single_config(r)
    _exec_options(r)
    _cache_option(r)
    r.add_argument("-i", "--input", default="-",
                   help="JSON lines, a JSON array or a JSON document, gzipped or not ('-': stdin)")
    r.add_argument("-o", "--output", default="-", help="where outputs go as JSON lines ('-': stdout)")
    r.add_argument("--dedupe", action="store_true",
                   help="treat records seen before (same file, line and content) as redeliveries: state changes "
                        "once")
    r.add_argument("--max-line-bytes", type=_whole(1), default=DEFAULT_MAX_LINE_BYTES, metavar="BYTES",
                   help="a longer line (array element, document) is that record's error")
    r.add_argument("--max-decompressed-bytes", type=_whole(1), default=DEFAULT_MAX_DECOMPRESSED_BYTES,
                   metavar="BYTES", help="gzipped input that decompresses to more is cut there, with one error")
    r.add_argument("--explain", nargs="?", type=_whole(1), const=1, metavar="N",
                   help="instead of the outputs, show how the first N events (1 when N is left out) went "
                        "through each process: conditions, changes, effects")
    r.set_defaults(func=_cmd_run)


def _serve_command(sub: Any) -> None:
    s = _add_command(sub, "serve", "an HTTP daemon that runs each POSTed event (binge's daemon modes)", [
        "agglo serve -c pipelines/basic.json --port 8080",
        "agglo serve -c pipelines/basic.json --durable /var/lib/agglo --workers 4"])
    _single_config(s)
    _exec_options(s)
    _cache_option(s)
    s.add_argument("--host", default="127.0.0.1", help="the address to listen on")
    s.add_argument("--port", type=PORT, default=8080, help="the port to listen on")
    s.add_argument("--path", default="/binge", help="the path events are POSTed to")
    s.add_argument("--max-body", type=_whole(1), default=1 << 20, metavar="BYTES",
                   help="larger bodies are refused with 413")
    s.add_argument("--durable", metavar="DIR", help="queue events durably in DIR and answer 202 (persistent daemon)")
    s.add_argument("--workers", type=_whole(1), default=2, help="worker threads processing the durable queue")
    s.add_argument("--queue-max", type=_whole(1), default=100_000, metavar="N",
                   help="the durable queue's bound: beyond N waiting events, POST answers 503 with Retry-After")
    s.add_argument("--read-timeout", type=_whole(1), default=10, metavar="SECONDS",
                   help="a request's head and body must arrive within this; idle connections close after it")
    s.set_defaults(func=_cmd_serve)


FAST_COMMANDS: dict[str, Callable[[Any], None]] = {"run": _run_command, "serve": _serve_command}
"""The commands whose start-up counts (a short ``agglo run``, a restarted daemon): built alone."""


def _command(module: str, name: str = "main") -> Callable[[argparse.Namespace], int]:
    """``module.name`` as a command, imported only when it runs: ``agglo run`` never loads the others."""

    def command(args: argparse.Namespace) -> int:
        import importlib

        result: int = getattr(importlib.import_module(module), name)(args)
        return result

    return command


def _entwine_commands(sub: Any) -> None:
    """entwine: the ticker daemon and the substream tools (handlers/entwine/ticker.py, handlers/entwine/cli.py)."""
    t = _add_command(sub, "ticker", "entwine's ticker: a signed hash chain substreams anchor to",
                     ["agglo ticker serve --state sqlite:ticker.db --interval 1"])
    tsub = t.add_subparsers(dest="ticker_command", required=True, metavar="COMMAND")
    ts = _add_command(tsub, "serve", "serve the ticker's REST API (binge's paths)", [
        "agglo ticker serve --state sqlite:ticker.db --interval 1",
        "agglo ticker serve --state redis://localhost:6379/0 --key ticker.pem --port 9080"])
    ts.add_argument("--host", default="127.0.0.1", help="the address to listen on")
    ts.add_argument("--port", type=PORT, default=9080, help="the port to listen on")
    ts.add_argument("--interval", type=_seconds(zero_allowed=True), default=0, metavar="SECONDS",
                    help="tick by itself this often (0: only when asked, POST /api/v1/tick)")
    ts.add_argument("--state", required=True, metavar="sqlite:PATH|redis://…|dynamo:tableName=T",
                    help="where the chain is kept (shared by every ticker process on a redis:// or dynamo: store)")
    ts.add_argument("--key", metavar="PEM", help="the ticker's private key (none given: one kept in the state)")
    ts.add_argument("--max-body", type=_whole(1), default=16 << 20, metavar="BYTES",
                    help="larger bodies are refused with 413")
    ts.set_defaults(func=_command("handlers.entwine.ticker", "serve"))
    e = _add_command(sub, "entwine", "ask the ticker about order; re-verify substreams", [
        "agglo entwine verify -c pipelines/entwine-a.json --ticker http://127.0.0.1:9080"])
    esub = e.add_subparsers(dest="entwine_command", required=True, metavar="COMMAND")
    hb = _add_command(esub, "happened-before", "did SS:UUID:IDX happen before SS:UUID:IDX? (exit 0 if so)", [
        "agglo entwine happened-before --ticker http://127.0.0.1:9080 "
        "EntwineA:0b7e4a1e-6d3c-4c1b-9f7e-2f1d4c3b2a10:3 EntwineB:9c1d2e3f-4a5b-4c6d-8e7f-0a1b2c3d4e5f:1"])
    hb.add_argument("--ticker", required=True, metavar="URL", help="the ticker's base URL")
    hb.add_argument("lhs", metavar="SS:UUID:IDX", help="a message: substream, uuid and index")
    hb.add_argument("rhs", metavar="SS:UUID:IDX", help="the message it is compared with")
    hb.set_defaults(func=_command("handlers.entwine.cli", "happened_before"))
    ev = _add_command(esub, "verify", "re-verify each entwine substream of a config and its stored objects", [
        "agglo entwine verify -c pipelines/entwine-a.json --ticker http://127.0.0.1:9080"])
    _single_config(ev)
    ev.add_argument("--ticker", metavar="URL", help="also check each genesis against the ticker's key")
    ev.set_defaults(func=_command("handlers.entwine.cli", "verify"))


def _authoring_commands(sub: Any) -> None:
    """The authoring tools (handlers/authoring/)."""
    t = _add_command(sub, "test", "run config unit tests (*.agglo-test.yaml / .json) without any cloud", [
        "agglo test pipelines/",
        "agglo test -c pipelines/basic.json -c pipelines/gcp.json"])
    t.add_argument("paths", nargs="*", metavar="PATH",
                   help="test files, or directories to find them in (neither PATH nor -c given: .)")
    t.add_argument("-c", "--config", dest="configs", action="append", metavar="CONFIG",
                   help="run the tests of CONFIG: the test files beside it that test it (repeatable)")
    t.set_defaults(func=_command("handlers.authoring.testing"), positional_paths="paths")

    g = _add_command(sub, "genevents", "generate events from a binge generator schema, as JSON lines", [
        "agglo genevents -s tests/fixtures/binge/generators/examples__basic__basic_event_gen.json -n 3 --seed 1"])
    g.add_argument("-s", "--schema", required=True, help="the generator schema (JSON; not a pipeline config)")
    g.add_argument("-n", "--count", type=_whole(0), default=100, metavar="N", help="how many events")
    g.add_argument("--seed", type=int, help="the same seed gives the same events (none given: random)")
    g.set_defaults(func=_command("handlers.authoring.genevents"))

    d = _add_command(sub, "graph", "draw a config's pipelines (mermaid, dot or svg) on stdout", [
        "agglo graph -c pipelines/basic.json --format svg"],
        usage="%(prog)s [-h] -c CONFIG [--format {mermaid,dot,svg}]")
    _single_config(d, legacy_positional=True)
    d.add_argument("--format", choices=("mermaid", "dot", "svg"), default="mermaid", help="the picture's format")
    d.set_defaults(func=_command("handlers.authoring.graph"))

    lt = _add_command(sub, "lint", "validate configs, then warn about what a reviewer would flag", [
        "agglo lint pipelines/basic.json pipelines/gcp.json",
        "agglo lint --format json --strict -c pipelines/basic.json"])
    _many_configs(lt, "the configs to check")
    lt.add_argument("--format", choices=("text", "json"), default="text", help="one finding a line, or JSON")
    lt.add_argument("--strict", action="store_true", help="warnings fail too (exit status 1)")
    lt.add_argument("--allow-exec", action="append", metavar="PATH",
                    help="an executable the deployment allows (repeatable; also AGGLO_ALLOW_EXEC)")
    lt.set_defaults(func=_command("handlers.authoring.lint"))

    sc = _add_command(sub, "schema", "print the JSON Schema of a config, for editors",
                      ["agglo schema > agglo.schema.json"])
    sc.set_defaults(func=_command("handlers.authoring.schema"))

    f = _add_command(sub, "fmt", "print a config re-indented; --conditions rewrites its conditions as text", [
        "agglo fmt --conditions -c pipelines/basic.json",
        "agglo fmt --conditions --to ast -w pipelines/basic.json pipelines/gcp.json"])
    _many_configs(f, "the configs to format (several only with -w)")
    f.add_argument("--conditions", action="store_true", help="rewrite every condition (as text unless --to ast)")
    f.add_argument("--to", choices=("string", "ast"), help="the form --conditions writes (none given: string)")
    f.add_argument("-w", "--write", action="store_true", help="rewrite each CONFIG in place instead of printing")
    f.set_defaults(func=_command("handlers.authoring.fmt"))

    cp = _add_command(sub, "compile", "compile a config's pipelines to Python: print it, or write the artefact", [
        "agglo compile -c pipelines/basic.json --show",
        "agglo compile -c pipelines/basic.json -o build/plan"])
    _single_config(cp)
    cp.add_argument("--show", action="store_true", help="print the generated Python on stdout")
    cp.add_argument("-o", "--output", metavar="DIR",
                    help="write plan.json (the IR and the config's SHA-256) and plan.py (the generated Python)")
    cp.set_defaults(func=_command("handlers.authoring.compile"))

    rq = _add_command(sub, "requirements", "print the pip requirements a deployment running the configs needs", [
        "agglo requirements -c pipelines/gcp.json --for gcp",
        "agglo requirements pipelines/aws-basic.json pipelines/basic.json --for aws"])
    _many_configs(rq, "the configs the deployment runs")
    rq.add_argument("--for", dest="platform", choices=("aws", "gcp", "local"), default="local",
                    help="the platform, whose own needs come first (local: agglo run and serve)")
    rq.set_defaults(func=_command("handlers.authoring.requirements"))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line as the command sees it (exits 2 with the usage when it is wrong)."""
    words = sys.argv[1:] if argv is None else argv
    p = parser(words[0] if words else None)
    args, extras = p.parse_known_args(argv)
    # argparse takes a command's positional paths in one run only: in `lint a.json -c b.json c.json` (or
    # `test -c x.json dir/`) the later ones come back unparsed. They are paths all the same.
    if extras:
        positional: str | None = getattr(args, "positional_paths", None)
        if positional is None or any(e.startswith("-") for e in extras):
            p.error(f"unrecognized arguments: {' '.join(extras)}")
        setattr(args, positional, [*(getattr(args, positional) or []), *extras])
    if (check := getattr(args, "check", None)) is not None:
        check(args)  # what argparse cannot say by itself: -c and positional configs together, at least one
    return args


# Optional extras by the top-level module a missing one shows up as (pyproject.toml's optional-dependencies).
EXTRAS = {"boto3": "aws", "botocore": "aws", "aws_lambda_powertools": "aws", "aws_xray_sdk": "aws",
          "google": "gcp", "functions_framework": "gcp", "cloudevents": "gcp", "redis": "redis",
          "gunicorn": "serve", "cryptography": "entwine", "yaml": "authoring"}
SIGPIPE_STATUS = 128 + 13


def _output_closed() -> int:
    """Whoever read stdout stopped (``| head``): end quietly, as Unix tools do, and keep Python's own flush of
    stdout at exit from failing again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return SIGPIPE_STATUS


def _os_error(e: OSError) -> str:
    """An OSError as one line: what failed on which file (the message alone when it names none)."""
    what = e.strerror or str(e) or type(e).__name__
    return f"{e.filename}: {what}" if e.filename else what


def _check_listen(host: str, port: int) -> None:
    """Can a server listen on ``host:port``? Asked before it starts, so a port in use or a host that is not
    this machine's is one line rather than a server retrying and logging."""
    import socket

    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server does
            probe.bind(address)
    except OSError as e:
        raise UsageError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None


def main(argv: Sequence[str] | None = None) -> int:
    """Ordinary mistakes (bad usage, a file, directory, port or disk that cannot be used, a missing extra) are
    one line on stderr and exit status 2; anything else is a bug and keeps its traceback for the report."""
    logging.basicConfig(level=os.environ.get("AGGLO_LOG_LEVEL", "WARNING"), format="agglo: %(message)s")
    args = parse_args(argv)
    try:
        if isinstance(getattr(args, "port", None), int) and isinstance(getattr(args, "host", None), str):
            _check_listen(args.host, args.port)
        result: int = args.func(args)
        return result
    except UsageError as e:
        print(f"agglo: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return _output_closed()
    except OSError as e:
        print(f"agglo: {_os_error(e)}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as e:
        extra = EXTRAS.get((e.name or "").partition(".")[0])
        if extra is None:
            raise
        print(f"agglo: this needs the {e.name} package, which is not installed: pip install 'agglo[{extra}]'",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as e:
        # The database's operation (cannot open, locked, full), not a bug. Only a run that used SQLite can
        # raise it, so sqlite3 is not imported to ask.
        sqlite3 = sys.modules.get("sqlite3")
        if sqlite3 is None or not isinstance(e, sqlite3.OperationalError):
            raise
        print(f"agglo: SQLite: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
