"""Every connector's spec, the registry every adapter builds from them, redaction and the README's table.

Importing this imports every connector module, none of which imports an SDK until
a connector is used.
"""

from __future__ import annotations

from agglo_core import connstr
from agglo_core.connstr import scheme_of
from handlers.connectors import (
    Registry,
    dynamo,
    files,
    firestore,
    gcs,
    http,
    kinesis,
    memory,
    pubsub,
    redis_kv,
    s3,
    sqlite,
    sqs,
)
from handlers.connectors.spec import ConnectorSpec

CATALOG: tuple[ConnectorSpec, ...] = (
    *memory.SPECS, *sqlite.SPECS, *redis_kv.SPECS, *files.SPECS, *http.SPECS,
    *dynamo.SPECS, *s3.SPECS, *sqs.SPECS, *kinesis.SPECS,
    *firestore.SPECS, *gcs.SPECS, *pubsub.SPECS,
)


def registry_of(catalog: tuple[ConnectorSpec, ...] = CATALOG) -> Registry:
    """Every connector of ``catalog``: one config runs on every adapter (a connector whose client library is
    not installed says so, with the extra to install, when it is built)."""
    registry = Registry()
    for spec in catalog:
        registry.register_spec(spec)
    return registry


def spec_for(external_type: str, scheme: str, catalog: tuple[ConnectorSpec, ...] = CATALOG) -> ConnectorSpec | None:
    """The connector that serves ``external_type`` with ``scheme`` on some platform."""
    return next((s for s in catalog if external_type in s.external_types and scheme in s.schemes), None)


def redact(connection_string: str, catalog: tuple[ConnectorSpec, ...] = CATALOG) -> str:
    """The connection string with every secret in it as ``***``.

    Its connector's secret options first (the spec says which), then what looks secret anywhere
    (``agglo_core.connstr.redact``): a URL's ``user:password@``, options and query parameters named
    like secrets (``token``, ``key``, ``sig``…), token-like path segments of webhook URLs. Apply it to
    the connection string as the config wrote it: a ``${VAR}`` stays a name, never its value.
    """
    scheme = scheme_of(connection_string)
    spec = next((s for s in catalog if scheme in s.schemes), None)
    return connstr.redact(connection_string if spec is None else spec.redact(connection_string))


def render_table(catalog: tuple[ConnectorSpec, ...] = CATALOG) -> str:
    """The README's connector table, in Markdown: one row per external type a connector serves."""
    rows = ["| externalType | connection string | needs | what it is |", "|---|---|---|---|"]
    order = {t: i for i, t in enumerate(
        ("ExternalKVStore", "ExternalObjectStore", "ExternalPubSub", "ExternalHttp", "ExternalLocalFile"))}
    extras = ("", "redis", "aws", "gcp")
    entries = sorted(((t, s) for s in catalog for t in s.external_types),
                     key=lambda ts: (order.get(ts[0], len(order)), extras.index(_extra(ts[1]))))
    for external_type, spec in entries:
        needs = f"`agglo[{spec.library.extra}]`" if spec.library else "—"
        rows.append(f"| `{external_type}` | {spec.usage()} | {needs} | {spec.doc}{_options_note(spec)} |")
    return "\n".join(rows) + "\n"


def _extra(spec: ConnectorSpec) -> str:
    return spec.library.extra if spec.library else ""


def _options_note(spec: ConnectorSpec) -> str:
    """The options' meanings, where the form alone does not say (all but a ``value`` form's value)."""
    options = spec.options[1:] if spec.form == "value" else spec.options
    if not options:
        return ""
    return "<br>Options: " + "; ".join(f"`{o.name}`: {o.doc}" for o in options if o.doc)
