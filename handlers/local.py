"""The ``agglo`` command: binge's run modes on this machine.

Exit status: 0 when every record went through, 1 when a record (or, for ``validate``,
``lint`` and ``fmt``, the config) had a problem, 2 for a bad config or bad usage.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from itertools import islice
from typing import IO, Any

import orjson

from agglo_core import ConfigError, Record
from handlers.runtime.boot import UsageError, build_runtime, read_config_file
from handlers.runtime.driver import Runtime
from handlers.runtime.entwine_keys import compile_with_keys
from handlers.sources.jsonfile import open_events, read_events

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


def _batches(events: Iterator[tuple[int, Any]]) -> Iterator[list[tuple[int, Any]]]:
    while batch := list(islice(events, BATCH)):
        yield batch


def run(runtime: Runtime, raw: IO[bytes], name: str, out: IO[bytes], err: IO[str],
        progress: _Progress | None = None) -> int:
    """Process every event in ``raw``; outputs to ``out`` as JSON lines, failures to ``err``."""
    failed = 0
    dumps = orjson.dumps
    for batch in _batches(read_events(open_events(raw))):
        records = [Record(f"{name}#{line}", event, source=name) for line, event in batch]
        outcomes = runtime.process(records)
        chunks, errors = [], []
        for (line, _), outcome in zip(batch, outcomes, strict=True):
            chunks.extend(dumps(event) for _, event in outcome.outputs)
            errors.extend({"line": line, "pipeline": e.pipeline, "process": e.process, "error": e.message}
                          for e in outcome.errors)
        if chunks:
            out.write(b"\n".join(chunks) + b"\n")
        if errors:
            failed += len(errors)
            err.write("".join(dumps(e).decode() + "\n" for e in errors))
        if progress:
            progress.update()
    out.flush()
    err.flush()
    if progress:
        progress.done()
    return 1 if failed else 0


def _cmd_run(args: argparse.Namespace) -> int:
    if args.explain:
        from handlers.authoring import explain

        return explain.main(args)
    runtime = build_runtime(args.config, args.allow_exec, args.exec_timeout, dedupe=args.dedupe)
    progress = None
    if args.input == "-":
        raw, name = sys.stdin.buffer, "stdin"
    else:
        try:
            raw = open(args.input, "rb")  # noqa: SIM115 - closed below
        except OSError as e:
            raise UsageError(f"cannot read {args.input}: {e.strerror}") from None
        name = args.input
        if sys.stderr.isatty():
            progress = _Progress(raw, os.fstat(raw.fileno()).st_size)
    try:
        if args.output == "-":
            return run(runtime, raw, name, sys.stdout.buffer, sys.stderr, progress)
        with open(args.output, "wb") as out:
            return run(runtime, raw, name, out, sys.stderr, progress)
    finally:
        if raw is not sys.stdin.buffer:
            raw.close()


def _cmd_validate(args: argparse.Namespace) -> int:
    try:
        config = compile_with_keys(read_config_file(args.config)).config
    except ConfigError as e:
        for problem in e.problems:
            print(f"{args.config}: {problem}")
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


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="agglo", description="Run binge-format event pipelines locally.")
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("-c", "--config", required=True, help="pipeline config (JSON)")
        sp.add_argument("--allow-exec", action="append", metavar="PATH",
                        help="allow spawners and exec transforms to run PATH (repeatable; also AGGLO_ALLOW_EXEC)")
        sp.add_argument("--exec-timeout", type=float, default=30.0, metavar="SECONDS")

    r = sub.add_parser("run", help="process JSON events from a file or stdin (binge's standalone mode)")
    common(r)
    r.add_argument("-i", "--input", default="-", help="JSON lines, a JSON array or a JSON document; .gz too")
    r.add_argument("-o", "--output", default="-", help="where outputs go as JSON lines (default stdout)")
    r.add_argument("--dedupe", action="store_true",
                   help="treat records seen before (same file and line) as redeliveries: state changes once")
    r.add_argument("--explain", nargs="?", type=int, const=1, default=0, metavar="N",
                   help="instead of the outputs, show how the first N events (default 1) went through each "
                        "process: conditions, changes, effects")
    r.set_defaults(func=_cmd_run)

    v = sub.add_parser("validate", help="check a config and list every problem with its JSON path")
    v.add_argument("-c", "--config", required=True)
    v.set_defaults(func=_cmd_validate)

    s = sub.add_parser("serve", help="an HTTP daemon that runs each POSTed event (binge's daemon modes)")
    common(s)
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8080)
    s.add_argument("--path", default="/binge")
    s.add_argument("--max-body", type=int, default=1 << 20, metavar="BYTES")
    s.add_argument("--durable", metavar="DIR", help="queue events durably in DIR and answer 202 (persistent daemon)")
    s.add_argument("--workers", type=int, default=2, help="worker threads processing the durable queue")
    s.set_defaults(func=_cmd_serve)

    i = sub.add_parser("invoke", help="run a SAM template's function once with an event (sam local invoke, "
                                      "without a container)")
    i.add_argument("function", metavar="FUNCTION_LOGICAL_ID")
    i.add_argument("-e", "--event", metavar="EVENT_FILE", help="the event as JSON ('-' for stdin; default {})")
    i.add_argument("-t", "--template", default="template.yaml")
    i.add_argument("--env-vars", metavar="ENV_JSON", help='SAM\'s env.json: {"LogicalId": {"VAR": "value"}}')
    i.add_argument("--parameter-overrides", nargs="+", metavar="KEY=VALUE")
    i.set_defaults(func=_cmd_invoke)
    _entwine_commands(sub)
    _authoring_commands(sub)
    return p


def _command(module: str, name: str = "main") -> Callable[[argparse.Namespace], int]:
    """``module.name`` as a command, imported only when it runs: ``agglo run`` never loads the others."""

    def command(args: argparse.Namespace) -> int:
        import importlib

        return getattr(importlib.import_module(module), name)(args)

    return command


def _entwine_commands(sub: Any) -> None:
    """entwine: the ticker daemon and the substream tools (handlers/entwine/ticker.py, handlers/entwine/cli.py)."""
    t = sub.add_parser("ticker", help="entwine's ticker: a signed hash chain substreams anchor to")
    tsub = t.add_subparsers(dest="ticker_command", required=True)
    ts = tsub.add_parser("serve", help="serve the ticker's REST API (binge's paths)")
    ts.add_argument("--host", default="127.0.0.1")
    ts.add_argument("--port", type=int, default=9080)
    ts.add_argument("--interval", type=float, default=0, metavar="SECONDS", help="tick by itself this often")
    ts.add_argument("--state", required=True, metavar="sqlite:PATH|redis://…|dynamo:tableName=T",
                    help="where the chain is kept (shared by every ticker process on a redis:// or dynamo: store)")
    ts.add_argument("--key", metavar="PEM", help="the ticker's private key (default: one kept in the state)")
    ts.add_argument("--max-body", type=int, default=16 << 20, metavar="BYTES")
    ts.set_defaults(func=_command("handlers.entwine.ticker", "serve"))
    e = sub.add_parser("entwine", help="ask the ticker about order; re-verify substreams")
    esub = e.add_subparsers(dest="entwine_command", required=True)
    hb = esub.add_parser("happened-before", help="did SS:UUID:IDX happen before SS:UUID:IDX? (exit 0 if so)")
    hb.add_argument("--ticker", required=True, metavar="URL")
    hb.add_argument("lhs", metavar="SS:UUID:IDX")
    hb.add_argument("rhs", metavar="SS:UUID:IDX")
    hb.set_defaults(func=_command("handlers.entwine.cli", "happened_before"))
    ev = esub.add_parser("verify", help="re-verify each entwine substream of a config and its stored objects")
    ev.add_argument("-c", "--config", required=True)
    ev.add_argument("--ticker", metavar="URL", help="also check each genesis against the ticker's key")
    ev.set_defaults(func=_command("handlers.entwine.cli", "verify"))


def _authoring_commands(sub: Any) -> None:
    """The authoring tools (handlers/authoring/)."""
    t = sub.add_parser("test", help="run config unit tests (*.agglo-test.yaml / .json) without any cloud")
    t.add_argument("paths", nargs="*", default=["."], metavar="PATH", help="test files or directories (default .)")
    t.set_defaults(func=_command("handlers.authoring.testing"))

    g = sub.add_parser("genevents", help="generate events from a binge generator schema, as JSON lines")
    g.add_argument("-s", "--schema", required=True, help="generator schema (JSON)")
    g.add_argument("-n", "--count", type=int, default=100, metavar="N", help="how many events (default 100)")
    g.add_argument("--seed", type=int, help="the same seed gives the same events (default: random)")
    g.set_defaults(func=_command("handlers.authoring.genevents"))

    d = sub.add_parser("graph", help="draw a config's pipelines (mermaid, dot or svg) on stdout")
    d.add_argument("config", metavar="CONFIG")
    d.add_argument("--format", choices=("mermaid", "dot", "svg"), default="mermaid")
    d.set_defaults(func=_command("handlers.authoring.graph"))

    lt = sub.add_parser("lint", help="validate configs, then warn about what a reviewer would flag")
    lt.add_argument("configs", nargs="+", metavar="CONFIG")
    lt.add_argument("--format", choices=("text", "json"), default="text")
    lt.add_argument("--strict", action="store_true", help="warnings fail too (exit status 1)")
    lt.add_argument("--allow-exec", action="append", metavar="PATH",
                    help="an executable the deployment allows (repeatable; also AGGLO_ALLOW_EXEC)")
    lt.set_defaults(func=_command("handlers.authoring.lint"))

    sc = sub.add_parser("schema", help="print the JSON Schema of a config, for editors")
    sc.set_defaults(func=_command("handlers.authoring.schema"))

    f = sub.add_parser("fmt", help="print a config re-indented; --conditions rewrites its conditions as text")
    f.add_argument("configs", nargs="+", metavar="CONFIG")
    f.add_argument("--conditions", action="store_true", help="rewrite every condition (as text unless --to ast)")
    f.add_argument("--to", choices=("string", "ast"), help="the form --conditions writes (default string)")
    f.add_argument("-w", "--write", action="store_true", help="rewrite each CONFIG in place instead of printing")
    f.set_defaults(func=_command("handlers.authoring.fmt"))


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=os.environ.get("AGGLO_LOG_LEVEL", "WARNING"), format="agglo: %(message)s")
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except UsageError as e:
        print(f"agglo: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
