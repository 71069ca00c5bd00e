"""``ExternalHttp`` (a URL): POST the body as JSON with ``Idempotency-Key`` set to the tee's uuid.

A 2xx answer with a JSON body becomes the tee's ``response``; one without a body
(or with ``null``, ``{}`` or text that is not JSON, still a success) leaves the
key out, as binge does. Any other answer fails the record: a timeout, a refused
connection, 408, 429 or a 5xx as transient (retried per the process's
``retryStrategy``, then redelivered); any other 4xx as permanent (the endpoint
refuses the record itself).

What the connection string sets, besides the URL itself:

* ``aggloDeadline=SECONDS`` (default 10): the whole request (connect, send, every
  byte of the answer) must finish within it, or the record fails (transient) and
  the connection is closed. A stalled or trickling endpoint costs one deadline per
  record, and at most ``concurrency`` requests wait at once. The parameter is
  agglo's: it is not sent to the endpoint.
* ``http://user:password@host/``: HTTP basic authentication (the userinfo is
  never sent in the URL and never shown).

Redirects: a POST never becomes a GET. A 307 or 308 to the same origin (scheme,
host and port) is POSTed again, at most ``MAX_REDIRECTS`` times; any other
redirect fails the record (permanent), naming it.
"""

from __future__ import annotations

import base64
import contextlib
import socket
import threading
import time
from typing import Any
from urllib.parse import SplitResult, parse_qsl, unquote, urlencode, urljoin, urlsplit

import orjson

from agglo_core.connstr import redact_text
from agglo_core.effects import EffectFailed, Put
from handlers.connectors.base import BaseConnector, status_is_permanent
from handlers.connectors.spec import ConnectorSpec, Option

_MAX_RESPONSE = 1 << 20
MAX_REDIRECTS = 5
DEFAULT_DEADLINE_S = 10.0
DEADLINE_OPTION = "aggloDeadline"


class DeadlineExceeded(Exception):
    """The whole request took longer than its deadline."""


class HttpTarget(BaseConnector):
    capabilities = frozenset({"Put"})
    concurrency = 16

    def __init__(self, url: str, deadline_s: float = DEFAULT_DEADLINE_S, shown: str | None = None) -> None:
        from handlers.connectors.catalog import redact  # late: the catalog imports this module

        parts = urlsplit(url)
        self._auth = _basic_auth(parts)
        self._target = _without_userinfo(parts)
        self.url = self._target.geturl()
        self.deadline_s = deadline_s
        self._shown = shown if shown is not None else redact(url)

    def put(self, e: Put, body: bytes) -> Any:
        headers = {"Content-Type": "application/json", "Idempotency-Key": e.key, "User-Agent": "agglo"}
        if self._auth:
            headers["Authorization"] = self._auth
        import http.client  # here, not at import: most configs post nothing, and it costs ~10 ms at start-up

        deadline = time.monotonic() + self.deadline_s
        target = self._target
        for _ in range(MAX_REDIRECTS + 1):
            try:
                status, location, answer = _post(target, body, headers, deadline)
            except DeadlineExceeded:
                return EffectFailed(f"POST {self._shown} did not finish within its deadline of "
                                    f"{self.deadline_s:g}s ({DEADLINE_OPTION}=…)")
            except (OSError, http.client.HTTPException) as err:
                return EffectFailed(f"POST {self._shown} failed: {_reason(err)}")
            if 300 <= status < 400:
                following = _same_origin_repost(target, status, location)
                if following is None:
                    return self._refused_redirect(status, location)
                target = following
                continue
            if status >= 300 or status < 200:
                detail = answer[:300].decode("utf-8", "replace")
                return EffectFailed(f"POST {self._shown} answered {status}: {_redacted(detail)}", {"status": status},
                                    transient=not status_is_permanent(status))
            return _json_or_none(answer)
        return EffectFailed(f"POST {self._shown}: more than {MAX_REDIRECTS} redirects", {"status": status},
                            transient=False)

    def _refused_redirect(self, status: int, location: str | None) -> EffectFailed:
        where = f" to {_redacted(location)}" if location else " without a Location"
        why = ("a POST is re-sent only for 307 or 308" if status not in (307, 308)
               else "a POST is re-sent only to the same origin")
        return EffectFailed(f"POST {self._shown} answered {status}, a redirect{where}: not followed ({why}; "
                            "point the connection string at the final URL)", {"status": status}, transient=False)

    def describe(self) -> str:
        return f"POST {self._shown}"

    def __repr__(self) -> str:
        return f"HttpTarget({self._shown})"


def _post(target: SplitResult, body: bytes, headers: dict[str, str],
          deadline: float) -> tuple[int, str | None, bytes]:
    """(status, Location, body) of one POST, all of it before ``deadline`` (else ``DeadlineExceeded``)."""
    import http.client

    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise DeadlineExceeded
    kind = http.client.HTTPSConnection if target.scheme == "https" else http.client.HTTPConnection
    conn = kind(target.hostname or "", target.port, timeout=remaining)
    expired = threading.Event()

    def cut() -> None:  # a socket timeout bounds each read only: a trickling answer is cut here
        expired.set()
        sock = conn.sock
        if sock is not None:
            with contextlib.suppress(OSError):  # already closed
                sock.shutdown(socket.SHUT_RDWR)

    watchdog = threading.Timer(remaining, cut)
    watchdog.daemon = True
    watchdog.start()
    try:
        path = target.path or "/"
        conn.request("POST", path + (f"?{target.query}" if target.query else ""), body=body, headers=headers)
        resp = conn.getresponse()
        answer = resp.read(_MAX_RESPONSE)
    except (OSError, http.client.HTTPException):
        if expired.is_set() or time.monotonic() >= deadline:
            raise DeadlineExceeded from None
        raise
    finally:
        watchdog.cancel()
        conn.close()
    if expired.is_set():  # cut short: an answer read until the connection closed may look complete
        raise DeadlineExceeded
    return resp.status, resp.getheader("Location"), answer


def _same_origin_repost(target: SplitResult, status: int, location: str | None) -> SplitResult | None:
    """Where a 307/308 sends the POST again, when that is the same origin (None: the redirect is refused)."""
    if status not in (307, 308) or not location:
        return None
    following = urlsplit(urljoin(target.geturl(), location))
    if (following.scheme, following.hostname, _port(following)) != (target.scheme, target.hostname, _port(target)):
        return None
    return _without_userinfo(following)


def _port(parts: SplitResult) -> int | None:
    try:
        return parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return None


def _basic_auth(parts: SplitResult) -> str | None:
    if parts.username is None and parts.password is None:
        return None
    credentials = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}".encode()
    return "Basic " + base64.b64encode(credentials).decode("ascii")


def _without_userinfo(parts: SplitResult) -> SplitResult:
    """The URL the request goes to: no userinfo (sent as a header), no agglo option in the query."""
    netloc = parts.netloc.rpartition("@")[2]
    query = parts.query
    if DEADLINE_OPTION in query:
        query = urlencode([(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k != DEADLINE_OPTION])
    return parts._replace(netloc=netloc, query=query, fragment="")


def _reason(err: BaseException) -> str:
    if isinstance(err, TimeoutError):
        return "timed out"
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    return _redacted(str(err) or type(err).__name__)


def _redacted(text: str) -> str:
    return redact_text(text)


def _json_or_none(answer: bytes) -> Any:
    if not answer.strip():
        return None
    try:
        return orjson.loads(answer)
    except orjson.JSONDecodeError:
        return None  # a 2xx without JSON (e.g. "OK") is still a success


def _build(ext: Any, opts: dict[str, str], shown: str) -> HttpTarget:
    return HttpTarget(ext.connection_string, float(opts.get(DEADLINE_OPTION) or DEFAULT_DEADLINE_S), shown)


_DEADLINE = Option(
    DEADLINE_OPTION, "seconds", default=f"{DEFAULT_DEADLINE_S:g}", metavar="SECONDS",
    doc="the whole request's deadline (connect, send, the whole answer), default 10; agglo's, not sent")

SPECS = (ConnectorSpec(
    "HTTP", ("http", "https"), ("ExternalHttp",), HttpTarget.capabilities, None,
    "`POST` of the JSON body with `Idempotency-Key: <tee uuid>`; a 2xx JSON answer is kept as the tee's "
    "`response`; a timeout, 408, 429 or 5xx fails the record as transient, any other 4xx as permanent; "
    "`user:password@` is basic auth; a 307/308 to the same origin is POSTed again, any other redirect fails "
    "the record",
    _build, form="url", options=(_DEADLINE,), query_passthrough=True, url_shape="[user:password@]host[/path]",
    shows_template=True),)
