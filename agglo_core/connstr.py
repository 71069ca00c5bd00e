"""Connection strings: binge's ``scheme:key=value,key=value`` form, URLs and paths.

Connection strings can carry secrets; a redactor is applied to every connection
string the core puts into an output. ``redact`` here knows no connector: it hides
what looks secret anywhere in a string (a URL's ``user:password@``, query
parameters and options named like secrets, token-like path segments of webhook
URLs). The adapters pass the connector specs' redaction instead (``compile_plan(...,
redact=...)``), which hides each connector's secret options and then applies this one.
"""

from __future__ import annotations

import re

_SECRET_KEY = re.compile(
    r"(?i)(pass|secret|token|auth|credential|api[-_]?key|accesskey|signature|sig$|^key$|^code$|^sas$)")
# ``scheme://userinfo@``, anywhere (an option's value may be a URL); userinfo stops where the authority does.
_URL_USERINFO = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://)([^/?#@\s]*)@")
_QUERY_PARAM = re.compile(r"([?&;])([^=&;#\s]+)=([^&;#\s]*)")
_URL_PATH = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://[^/?#\s]*)(/[^?#\s]*)")
_ENV_REF = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}")
# Webhook URLs whose path after the prefix is the credential itself.
_WEBHOOK_PREFIXES = (
    ("hooks.slack.com", "/services/"), ("hooks.slack.com", "/workflows/"), ("hooks.slack.com", "/triggers/"),
    ("discord.com", "/api/webhooks/"), ("discordapp.com", "/api/webhooks/"), ("ptb.discord.com", "/api/webhooks/"),
    ("canary.discord.com", "/api/webhooks/"), ("webhook.office.com", "/webhookb2/"),
    ("chat.googleapis.com", "/v1/spaces/"),
)
_HEX_ID = re.compile(r"[0-9a-fA-F-]{32,}")
REDACTED = "***"


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


def is_secret_name(name: str) -> bool:
    """Whether an option or query parameter named ``name`` holds a secret (``token``, ``sig``, ``api-key``…)."""
    return _SECRET_KEY.search(name.strip()) is not None


def redact_userinfo(text: str) -> str:
    """Every URL's ``user:password@`` as ``user:***@`` (a lone userinfo, often a token, as ``***@``)."""
    return _URL_USERINFO.sub(lambda m: m.group(1) + _redact_userinfo(m.group(2)) + "@", text)


def redact_url_paths(text: str) -> str:
    """Token-like path segments of every URL as ``***``: a webhook's credential, a long random-looking segment."""
    return _URL_PATH.sub(lambda m: m.group(1) + _redact_path(m.group(1), m.group(2)), text)


def redact_text(text: str) -> str:
    """Free text (an error from a library, an endpoint's answer) with the secrets of every URL in it as ``***``."""
    s = redact_url_paths(redact_userinfo(text))
    return _QUERY_PARAM.sub(
        lambda m: f"{m.group(1)}{m.group(2)}={_hidden(m.group(3)) if is_secret_name(m.group(2)) else m.group(3)}", s)


def redact(connection_string: str) -> str:
    """The connection string with passwords, tokens, keys and webhook credentials replaced by ``***``."""
    s = redact_text(connection_string)
    scheme = scheme_of(s)
    if scheme and "://" not in s[:len(scheme) + 3]:
        rest = s[len(scheme) + 1:]
        parts = []
        for part in rest.split(","):
            key, sep, value = part.partition("=")
            parts.append(f"{key}={_hidden(value)}" if sep and is_secret_name(key) else part)
        s = s[:len(scheme) + 1] + ",".join(parts)
    return s


def looks_random(segment: str) -> bool:
    """A path segment that reads like a credential: long, and mixing cases and digits (or a long hex id)."""
    if _ENV_REF.fullmatch(segment):
        return False
    if len(segment) >= 32 and _HEX_ID.fullmatch(segment) and any(c.isdigit() for c in segment):
        return True
    return (len(segment) >= 20 and any(c.isdigit() for c in segment) and any(c.islower() for c in segment)
            and any(c.isupper() for c in segment))


def _redact_path(authority: str, path: str) -> str:
    host = authority.rpartition("@")[2].split("//", 1)[-1].split(":", 1)[0].lower()
    for webhook_host, prefix in _WEBHOOK_PREFIXES:
        if (host == webhook_host or host.endswith("." + webhook_host)) and path.startswith(prefix):
            rest = path[len(prefix):]
            return prefix + "/".join(_hidden(seg) if seg else seg for seg in rest.split("/"))
    return "/".join(REDACTED if looks_random(seg) else seg for seg in path.split("/"))


def _hidden(value: str) -> str:
    """``***``, but a ``${VAR}`` reference stays: it names a secret, it is not one."""
    return value if _ENV_REF.fullmatch(value) else REDACTED


def _redact_userinfo(userinfo: str) -> str:
    user, sep, password = userinfo.partition(":")
    # A lone userinfo is often a token (``redis://TOKEN@host``): hide it too.
    return f"{user}:{_hidden(password)}" if sep else _hidden(user)
