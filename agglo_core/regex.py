"""Regular expressions from configs and events, compiled with RE2: linear time, whatever the pattern.

binge's Go ``regexp`` is RE2, so this is also its dialect: no backreferences and
no lookaround (a pattern that needs them is refused by ``compile``, and ``agglo
validate``/``agglo lint`` name it), ``\\d``/``\\w``/``\\s`` are ASCII, ``$`` is the
end of the text. ``sub`` replaces the way Go's ``ReplaceAllString`` does (an empty
match right after a previous match is skipped).

Every pattern a config or an event supplies is compiled here; fixed internal
patterns (the condition tokenizer, connection-string parsing) stay on ``re``.
RE2 is driven through its extension module directly: the ``re2`` package's
``str`` layer costs several times the match itself, and its string templates go
through ``unicode_escape`` (which mangles non-ASCII text).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any

_CACHE_SIZE = 512
_MAX_PROGRAM_MEMORY = 8 << 20
"""RE2 refuses a pattern whose compiled program would need more (``x{1000}{1000}``): bounded memory."""

_NO_MATCH = (-1, -1)

_PLAIN = r"[^\\.\[\]{}()*+?|^$]"
_LINEAR_SHAPE = re.compile(rf"\^?{_PLAIN}+(?:\.[*+]|\((?:\?:)?\.[*+]\))?")
"""Patterns Python's ``re`` runs in linear time with exactly RE2's matches: an optional ``^``, a nonempty
run of plain characters, and at most a trailing ``.*`` or ``.+`` (in a group or not).

Why linear: ``re`` finds a literal prefix without backtracking, and a trailing ``.*`` consumes to the end of
the line with nothing after it that could make it give characters back. Why the same matches: plain
characters mean themselves in both dialects; ``.`` is any character but a newline, ``^`` the start of the
text in both; a match is never empty, so Go's rule for empty matches next to a previous one never applies;
the choice between overlapping matches (leftmost, then greedy) is the same."""


class RegexError(ValueError):
    """A pattern RE2 cannot compile (bad syntax, or a backreference or lookaround RE2 does not have)."""


class Match:
    """One match of a ``Regex``: its groups as strings (an unmatched group is None)."""

    __slots__ = ("_data", "_spans", "_names")

    def __init__(self, data: bytes, spans: list[tuple[int, int]], names: dict[str, int]) -> None:
        self._data = data
        self._spans = spans
        self._names = names

    def group(self, group: int | str = 0) -> str | None:
        index = self._names[group] if isinstance(group, str) else group
        start, end = self._spans[index]
        return None if start < 0 else self._data[start:end].decode("utf-8", "surrogatepass")


Replacement = str | Callable[[Any], str]
"""A literal, or a function of the match (a ``Match``, or ``re``'s for patterns ``re`` runs)."""


class Regex:
    """A compiled pattern: ``search`` and ``sub`` on ``str``, ``groups`` and ``groupindex`` as in ``re``."""

    __slots__ = ("pattern", "groups", "groupindex", "_match", "_unanchored", "_linear")

    def __init__(self, pattern: str, use_re: bool = True) -> None:
        """``use_re``: run patterns of ``_LINEAR_SHAPE`` on Python's ``re`` (False: always RE2, the reference)."""
        re2 = _engine()
        options = re2.RE2.Options()
        options.log_errors = False  # RE2 would print every refused pattern to stderr
        options.max_mem = _MAX_PROGRAM_MEMORY
        compiled = re2.RE2(pattern.encode("utf-8", "surrogatepass"), options)
        if not compiled.ok():
            raise RegexError(describe_error(compiled.error()))
        self.pattern = pattern
        self.groups: int = compiled.NumberOfCapturingGroups()
        self.groupindex: dict[str, int] = {
            name.decode("utf-8", "surrogatepass") if isinstance(name, bytes) else name: index
            for name, index in compiled.NamedCapturingGroups()}
        self._match = compiled.Match
        self._unanchored = re2.RE2.Anchor.UNANCHORED
        self._linear: re.Pattern[str] | None = (
            re.compile(pattern) if use_re and _LINEAR_SHAPE.fullmatch(pattern) is not None else None)
        """The same pattern on ``re``, where that is provably as fast and the same (``_LINEAR_SHAPE``): a
        call into RE2 costs several times what ``re`` does on short text."""

    def search(self, text: str) -> Match | re.Match[str] | None:
        if self._linear is not None:
            return self._linear.search(text)
        data = text.encode("utf-8", "surrogatepass")
        spans = self._match(self._unanchored, data, 0, len(data))
        return None if spans[0] == _NO_MATCH else Match(data, spans, self.groupindex)

    def matches(self, text: str) -> bool:
        """Whether the pattern is found anywhere in ``text`` (``search`` without building a match)."""
        if self._linear is not None:
            return self._linear.search(text) is not None
        data = text.encode("utf-8", "surrogatepass")
        found: bool = self._match(self._unanchored, data, 0, len(data))[0] != _NO_MATCH
        return found

    def sub(self, replacement: Replacement, text: str) -> str:
        """Every match replaced (a string is used as is; a function gets the ``Match``), Go's way."""
        if self._linear is not None:
            # A string is a literal here; re would read its backslashes as escapes.
            return self._linear.sub(replacement.replace("\\", "\\\\") if isinstance(replacement, str) else replacement,
                                    text)
        data = text.encode("utf-8", "surrogatepass")
        end = len(data)
        out: list[bytes] = []
        search_at = last_end = 0
        literal = replacement.encode("utf-8", "surrogatepass") if isinstance(replacement, str) else None
        while search_at <= end:
            spans = self._match(self._unanchored, data, search_at, end)
            start, stop = spans[0]
            if start < 0:
                break
            out.append(data[last_end:start])
            if stop > last_end or start == 0:  # Go skips an empty match that abuts the previous match
                if literal is not None:
                    out.append(literal)
                else:
                    piece = replacement(Match(data, spans, self.groupindex))  # type: ignore[operator]
                    out.append(str(piece).encode("utf-8", "surrogatepass"))
            last_end = stop
            if stop == end and stop > start:
                break  # any later match is empty at the end, abutting this one: Go skips it
            width = _char_width(data, search_at) if search_at < end else 1
            search_at = search_at + width if search_at + width > stop else stop
        if not out:
            return text
        out.append(data[last_end:])
        return b"".join(out).decode("utf-8", "surrogatepass")

    def __repr__(self) -> str:
        return f"Regex({self.pattern!r})"


_FOUND_AS_TEXT = re.compile(rf"(\^?)({_PLAIN}+)(?:\.\*|\((?:\?:)?\.\*\))?")


def as_text_search(pattern: str) -> tuple[str, bool] | None:
    """``(text, at_start)`` when finding ``pattern`` is finding a plain text (anywhere, or at the start for
    ``^``): a literal, perhaps followed by ``.*``, which matches even nothing. None for any other pattern."""
    shape = _FOUND_AS_TEXT.fullmatch(pattern)
    return None if shape is None else (shape.group(2), shape.group(1) == "^")


def compile(pattern: str) -> Regex:  # noqa: A001 - the name every regex module uses
    """``pattern`` compiled with RE2, from a small cache; raises ``RegexError``."""
    return _cached(pattern)


def problem(pattern: str) -> str | None:
    """Why RE2 cannot compile ``pattern`` (None: it can)."""
    try:
        compile(pattern)
    except RegexError as e:
        return str(e)
    return None


def describe_error(message: bytes | str) -> str:
    """RE2's reason, with a hint where Python's ``re`` (or PCRE) would have accepted the pattern."""
    text = message.decode("utf-8", "replace") if isinstance(message, bytes) else message
    if "invalid escape sequence: \\" in text and text[-1:].isdigit():
        return f"{text} (RE2 has no backreferences)"
    if "invalid perl operator: (?=" in text or "invalid perl operator: (?!" in text or "(?<=" in text \
            or "(?<!" in text:
        return f"{text} (RE2 has no lookaround)"
    if "pattern too large" in text:
        return f"{text} (the compiled pattern would need more than {_MAX_PROGRAM_MEMORY >> 20} MiB)"
    return text


@lru_cache(maxsize=_CACHE_SIZE)
def _cached(pattern: str) -> Regex:
    return Regex(pattern)


@lru_cache(maxsize=1)
def _engine() -> Any:
    # Imported on first use: the extension costs a few milliseconds at cold start, and many configs have no regex.
    from re2 import _re2  # type: ignore[import-untyped]

    return _re2


def _char_width(data: bytes, at: int) -> int:
    """The length of the UTF-8 sequence starting at ``data[at]`` (1 for a stray byte)."""
    lead = data[at]
    if lead < 0xC0:
        return 1
    if lead < 0xE0:
        return 2
    return 3 if lead < 0xF0 else 4
