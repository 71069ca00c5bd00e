"""What a connector declares about itself, beside its code: the connection strings it takes and what it can do.

Validation, lint, the runtime's registries, redaction and the README's connector
table read these specs; nothing else knows a connector's options. A spec names
its factory, but importing it imports no SDK (boto3, google, redis are imported
when a connector is first used: cold start matters).
"""

from __future__ import annotations

import difflib
import importlib.util
import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

from agglo_core.connstr import parse_options, redact_text, redact_userinfo, scheme_of

OptionType = Literal["str", "int", "bool", "seconds"]
Form = Literal["options", "value", "url"]
"""How a connection string carries its options:

* ``options``: ``scheme:key=value,key=value`` (binge's form);
* ``value``: ``scheme:VALUE``, one positional option (a path, a name, a topic); scheme "" is a bare path;
  any further options follow as a query, ``scheme:VALUE?key=value&key=value``;
* ``url``: ``scheme://[user[:password]@]host…[?key=value]``; the query's keys are the options, and the
  password in the userinfo is always secret.
"""

ENV_REF = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}")
"""``${NAME}``: filled in from the environment when the connector is built, so any value is accepted."""


def project_name(requirement: str) -> str:
    """A pip requirement's project name, normalised as pip compares them (``Google_RE2>=1`` is ``google-re2``)."""
    name = re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0]
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True, slots=True)
class ClientLibrary:
    """The client library a connector imports when it is first used, and how a user gets it."""

    module: str
    """What the connector imports (``boto3``, ``google.cloud.pubsub_v1``)."""
    extra: str
    """The agglo extra that installs it: ``pip install 'agglo[EXTRA]'``."""
    requirement: str
    """What a deployment artefact installs for it (a pip requirement, as in ``pyproject.toml``)."""

    def installed(self) -> bool:
        if self.module in sys.modules:  # imported already, or blocked (None)
            return sys.modules[self.module] is not None
        try:
            return importlib.util.find_spec(self.module) is not None
        except (ImportError, ValueError):  # a parent package is missing (``google`` for ``google.cloud.x``)
            return False

    def missing(self, connector: str) -> str:
        """The message for a connector used where its library is not installed."""
        return (f"{connector} needs the Python package {project_name(self.requirement)}, which is not installed "
                f"here: pip install 'agglo[{self.extra}]'")


@dataclass(frozen=True, slots=True)
class Option:
    name: str
    type: OptionType = "str"
    required: bool = False
    default: str | None = None
    secret: bool = False
    doc: str = ""
    metavar: str = "…"
    pattern: str | None = None
    """A regular expression the whole value must match (``type`` is checked first)."""

    def problem(self, value: str) -> str | None:
        """Why ``value`` is not a valid value of this option (None: it is)."""
        if ENV_REF.search(value):
            return None
        # A secret's value is never echoed, nor a password in a URL given where something else belongs.
        shown = "the value given" if self.secret else repr(redact_text(value))
        if self.type == "int" and not re.fullmatch(r"[+-]?\d+", value):
            return f"{self.name} must be an integer, not {shown}"
        if self.type == "seconds" and not _positive_number(value):
            return f"{self.name} must be a positive number of seconds, not {shown}"
        if self.type == "bool" and value.lower() not in ("true", "false"):
            return f"{self.name} must be true or false, not {shown}"
        if self.pattern is not None and not re.fullmatch(self.pattern, value):
            return f"{self.name} must look like {self.metavar}, not {shown}"
        return None


@dataclass(frozen=True, slots=True)
class ConnectorSpec:
    name: str
    """The connector's name in messages and the README ("DynamoDB")."""
    schemes: tuple[str, ...]
    """Connection-string schemes, lower case; "" stands for a bare path."""
    external_types: tuple[str, ...]
    """The ``externalType`` values it serves."""
    capabilities: frozenset[str]
    """The effects it performs, by class name in ``agglo_core.effects``."""
    library: ClientLibrary | None
    """The client library it needs beyond agglo's own (None: none). Every adapter offers every connector
    whose library is installed."""
    doc: str
    """One line for the README's connector table."""
    build: Callable[..., Any] = field(repr=False, compare=False)
    """``build(external, options) -> connector`` (the external's connection string already expanded)."""
    form: Form = "options"
    options: tuple[Option, ...] = ()
    query_passthrough: bool = False
    """``url`` form: other query parameters belong to the URL itself (an HTTP endpoint's), not to agglo."""
    url_shape: str = "…"
    """``url`` form: what follows ``scheme://`` (for the README)."""
    shows_template: bool = False
    """``build`` takes a third argument: the connection string as the config wrote it (``${VAR}`` unexpanded),
    redacted, which the connector shows in its messages instead of the expanded one."""

    def construct(self, external: Any, options: dict[str, str], shown: str) -> Any:
        """The connector, from the expanded external, its options and how its connection string is shown."""
        return self.build(external, options, shown) if self.shows_template else self.build(external, options)

    def option(self, name: str) -> Option | None:
        return next((o for o in self.options if o.name == name), None)

    def display(self, scheme: str) -> str:
        """How a scheme is written: ``dynamo:``, ``redis://``, or a directory path."""
        if not scheme:
            return "a directory path"
        return f"{scheme}://" if self.form == "url" else f"{scheme}:"

    def usage(self) -> str:
        """The connection string's shape, from the options (for the README and messages)."""
        shapes = []
        for scheme in self.schemes:
            if self.form == "value":
                metavar = self.options[0].metavar + self._query_shape(self.options[1:])
                shapes.append(f"`{scheme}:{metavar}`" if scheme else f"`{metavar}` (binge's form)")
            elif self.form == "url":
                shapes.append(f"`{scheme}://{self.url_shape}{self._query_shape(self.options)}`")
            else:
                parts = [f"{o.name}={o.metavar}" for o in self.options if o.required]
                parts += [f"[,{o.name}={o.metavar}]" for o in self.options if not o.required]
                shapes.append(f"`{scheme}:" + ",".join(p for p in parts if not p.startswith("[")) +
                              "".join(p for p in parts if p.startswith("[")) + "`")
        return ", ".join(shapes)

    @staticmethod
    def _query_shape(options: tuple[Option, ...]) -> str:
        return "".join(f"[{'?' if i == 0 else '&'}{o.name}={o.metavar}]" for i, o in enumerate(options))

    def parse(self, connection_string: str) -> dict[str, str]:
        """The options a connection string of this connector sets (userinfo passwords as ``password``)."""
        scheme = scheme_of(connection_string)
        if self.form == "value":
            value = connection_string[len(scheme) + 1:] if scheme else connection_string
            if len(self.options) == 1:  # the value is all there is, whatever it holds
                return {self.options[0].name: value}
            value, _, query = value.partition("?")
            return {self.options[0].name: value, **dict(parse_qsl(query, keep_blank_values=True))}
        if self.form == "url":
            parts = urlsplit(connection_string)
            opts = dict(parse_qsl(parts.query, keep_blank_values=True))
            return {k: v for k, v in opts.items() if self.option(k) is not None or not self.query_passthrough}
        return parse_options(connection_string.split(":", 1)[1] if ":" in connection_string else "")

    def format(self, scheme: str, options: dict[str, str], location: str = "host") -> str:
        """The connection string that sets ``options`` (the inverse of ``parse``)."""
        if self.form == "value":
            value = options.get(self.options[0].name, "")
            value += "".join(f"{'?' if i == 0 else '&'}{k}={v}" for i, (k, v) in enumerate(
                (k, v) for k, v in options.items() if k != self.options[0].name))
            return f"{scheme}:{value}" if scheme else value
        if self.form == "url":
            query = "&".join(f"{k}={v}" for k, v in options.items())
            return f"{scheme}://{location}" + (f"?{query}" if query else "")
        return f"{scheme}:" + ",".join(f"{k}={v}" for k, v in options.items())

    def problems(self, connection_string: str) -> list[str]:
        """What is wrong with the options of a connection string this connector takes."""
        problems = []
        given = self.parse(connection_string)
        names = [o.name for o in self.options]
        meant: set[str] = set()  # options a misspelling stands for: not reported missing as well
        for key, value in given.items():
            option = self.option(key)
            if option is None:
                hint = did_you_mean(key, names, lambda name: _noted(meant, name))
                problems.append(f"unknown option {key!r} for {self.display(scheme_of(connection_string))}"
                                f"{hint} (it takes: {', '.join(names) or 'no options'})")
                continue
            problem = option.problem(value)
            if problem:
                problems.append(problem)
        for option in self.options:
            if option.required and not given.get(option.name) and option.name not in meant:
                where = self.display(scheme_of(connection_string))
                problems.append(f"{where} needs {option.name}=…" if self.form == "options"
                                else f"{where} needs {option.metavar} ({option.doc or option.name})")
        return problems

    def redact(self, connection_string: str) -> str:
        """The connection string with the values of secret options, and any URL password, as ``***``."""
        s = redact_userinfo(connection_string)
        secret = {o.name for o in self.options if o.secret}
        if not secret:
            return s
        if self.form == "value":
            return f"{scheme_of(s)}:***" if scheme_of(s) else "***"
        if self.form == "url":
            base, sep, query = s.partition("?")
            return base + sep + "&".join(
                f"{k}=***" if k in secret else part
                for part in query.split("&") for k in [part.partition("=")[0]]) if sep else s
        scheme = scheme_of(s)
        rest = s[len(scheme) + 1:]
        return f"{scheme}:" + ",".join(
            f"{k}=***" if sep and k.strip() in secret else part
            for part in rest.split(",") for k, sep, _ in [part.partition("=")])


def _positive_number(value: str) -> bool:
    if not re.fullmatch(r"[0-9]+(\.[0-9]+)?|\.[0-9]+", value):
        return False
    return float(value) > 0


def did_you_mean(word: str, choices: Iterable[str], shown: Callable[[str], str] = repr) -> str:
    """``; did you mean 'x'?`` for the closest of ``choices`` (case ignored), or ""."""
    by_folded = {c.lower(): c for c in choices if c}
    close = difflib.get_close_matches(word.lower(), list(by_folded), n=1, cutoff=0.5)
    return f"; did you mean {shown(by_folded[close[0]])}?" if close else ""


def _noted(seen: set[str], name: str) -> str:
    """``name`` quoted, remembered in ``seen``."""
    seen.add(name)
    return repr(name)
