"""Connection strings: binge's ``scheme:key=value,key=value`` form, URLs and paths.

Connection strings can carry secrets; a redactor is applied to every connection
string the core puts into an output. ``redact`` here goes by key names; the
adapters pass the connector specs' redaction instead (``compile_plan(...,
redact=...)``), which knows each connector's secret options and falls back to
this one for schemes no connector takes.
"""

from __future__ import annotations

import re

_SECRET_KEY = re.compile(r"(?i)(pass|secret|token|auth|credential|apikey|api_key|accesskey|signature|sig$)")
_URL_USERINFO = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*://)([^/@]*)@")
_QUERY_PARAM = re.compile(r"([?&;])([^=&;]+)=([^&;]*)")


def parse_options(options: str) -> dict[str, str]:
    """``a=1,b=2`` -> {"a": "1", "b": "2"} (values may contain '=' and ';')."""
    out: dict[str, str] = {}
    for part in options.split(","):
        if not part:
            continue
        key, sep, value = part.partition("=")
        out[key.strip()] = value.strip() if sep else ""
    return out


def scheme_of(connection_string: str) -> str:
    """``dynamo:tableName=x`` -> ``dynamo``; ``redis://h`` -> ``redis``; a bare path -> ``""``."""
    m = re.match(r"^([a-zA-Z][a-zA-Z0-9+.-]*):", connection_string)
    return m.group(1).lower() if m else ""


def redact_userinfo(connection_string: str) -> str:
    """A URL's ``user:password@`` as ``user:***@`` (a lone userinfo, often a token, as ``***@``)."""
    return _URL_USERINFO.sub(lambda m: m.group(1) + _redact_userinfo(m.group(2)) + "@", connection_string)


def redact(connection_string: str) -> str:
    """The connection string with passwords, tokens and auth values replaced by ``***``."""
    s = redact_userinfo(connection_string)
    s = _QUERY_PARAM.sub(
        lambda m: f"{m.group(1)}{m.group(2)}={'***' if _SECRET_KEY.search(m.group(2)) else m.group(3)}", s)
    scheme = scheme_of(s)
    if scheme and "://" not in s:
        rest = s[len(scheme) + 1:]
        parts = []
        for part in rest.split(","):
            key, sep, value = part.partition("=")
            parts.append(f"{key}=***" if sep and _SECRET_KEY.search(key) else part)
        s = s[:len(scheme) + 1] + ",".join(parts)
    return s


def _redact_userinfo(userinfo: str) -> str:
    user, sep, _password = userinfo.partition(":")
    # A lone userinfo is often a token (``redis://TOKEN@host``): hide it too.
    return f"{user}:***" if sep else "***"
