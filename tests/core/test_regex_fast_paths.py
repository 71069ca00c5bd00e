"""Patterns run on Python's ``re`` give exactly what RE2 gives, and hostile ones never reach ``re``."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from agglo_core import regex, transforms
from agglo_core.codegen import compile_predicate
from agglo_core.conditions import compile_node
from agglo_core.transforms import go_replacement

# Characters that make text and patterns interesting for these shapes: the literal's own letters, newlines,
# carriage returns, non-ASCII (two-, three- and four-byte UTF-8) and the characters ``re`` templates treat
# specially.
ALPHABET = st.sampled_from(["a", "b", "/", "z", "\n", "\r", "é", "€", "𝄞", " ", "\\", "$", "-"])
LITERAL = st.text(st.sampled_from(["a", "b", "/", "z", "é", "€", "𝄞", " ", "-", ",", "#"]), min_size=1, max_size=4)
TAIL = st.sampled_from(["", ".*", ".+", "(.*)", "(.+)", "(?:.*)", "(?:.+)"])
TEMPLATES = st.sampled_from(["", "x", "$1", "<$1>", "$$", "\\1", "\\", "${1}z", "\\g<0>"])


@st.composite
def linear_patterns(draw: st.DrawFn) -> str:
    return ("^" if draw(st.booleans()) else "") + draw(LITERAL) + draw(TAIL)


@settings(max_examples=400, deadline=None)
@given(linear_patterns(), st.text(ALPHABET, max_size=30), TEMPLATES)
def test_re_and_re2_agree_on_linear_patterns(pattern, text, template):
    fast, reference = regex.Regex(pattern), regex.Regex(pattern, use_re=False)
    assert fast._linear is not None  # noqa: SLF001 - the shape is what this test is about
    assert (fast.search(text) is None) == (reference.search(text) is None)
    assert fast.matches(text) == reference.matches(text)
    if fast.search(text) is not None:
        assert fast.search(text).group(0) == reference.search(text).group(0)
    if fast.groups == 0 and ("$1" in template or "${1}" in template):
        return  # a config with such a template is refused before it runs
    replacement = go_replacement(template)
    assert fast.sub(replacement, text) == reference.sub(replacement, text)


@settings(max_examples=200, deadline=None)
@given(st.text(st.sampled_from(["a", "(", ")", "+", "*", "?", "|", ".", "$", "^", "[", "]", "\\", "{", "}", "1"]),
               min_size=1, max_size=8))
def test_only_the_linear_shape_runs_on_re(pattern):
    """Any pattern with a quantifier on anything but a final ``.``, a class, an alternation or an escape stays on
    RE2: the shape is a whitelist, not a list of what backtracks."""
    try:
        compiled = regex.Regex(pattern)
    except regex.RegexError:
        return
    body = pattern.removeprefix("^")
    for tail in (".*", ".+", "(.*)", "(.+)", "(?:.*)", "(?:.+)"):
        if body.endswith(tail):
            body = body[:-len(tail)]
            break
    plain = bool(body) and not any(c in body for c in "\\.[]{}()*+?|^$")
    assert (compiled._linear is not None) == plain  # noqa: SLF001


def test_hostile_patterns_stay_on_re2():
    """The classic catastrophic patterns (on ``re`` these would not finish on this text) run on RE2."""
    text = "a" * 30_000 + "!"
    for pattern in ("(a+)+$", "(a|aa)+$", "(a*)*b", "^(a+)+$", "a.*a.*a.*b", "a.*b", "ab.*.*"):
        compiled = regex.Regex(pattern)
        assert compiled._linear is None  # noqa: SLF001
        assert compiled.sub("x", text) == text


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(["buzz/(.*)", "(a+)+$", "^b", "[ab]+", "a|é"]), TEMPLATES.filter(lambda t: "1" not in t),
       st.lists(st.text(ALPHABET, max_size=12), min_size=1, max_size=40),
       st.integers(min_value=1, max_value=5))
def test_a_map_regex_remembers_nothing_but_answers(pattern, template, texts, capacity):
    """Remembered replacements (a few at a time, texts repeated and too long to keep) are what RE2 makes."""
    fn = transforms.MapRegex(pattern, template, remember=capacity, remember_chars=6)
    reference = regex.Regex(pattern, use_re=False)
    replacement = go_replacement(template)
    for text in texts + texts[::-1]:
        assert fn(text) == reference.sub(replacement, text)
    assert fn(texts) == [reference.sub(replacement, t) for t in texts]


@settings(max_examples=300, deadline=None)
@given(linear_patterns().filter(lambda p: not p.endswith(("+", "+)"))), st.text(ALPHABET, max_size=30))
def test_a_literal_search_is_a_text_search(pattern, text):
    """What generated conditions test instead of the regex finds exactly what RE2 finds."""
    plain = regex.as_text_search(pattern)
    assert plain is not None
    literal, at_start = plain
    found = text.startswith(literal) if at_start else literal in text
    assert found == regex.Regex(pattern, use_re=False).matches(text)
    assert regex.as_text_search(pattern + "x+") is None


@settings(max_examples=200, deadline=None)
@given(linear_patterns(), st.booleans(), st.one_of(st.text(ALPHABET, max_size=20), st.integers(), st.none()))
def test_generated_and_interpreted_regex_conditions_agree(pattern, want, value):
    """``=~`` and ``!~`` on a field, generated (a text search where the pattern is plain) and interpreted (RE2)."""
    node = ("match", want, ("var", ("f",)), ("const", pattern))
    generated, interpreted = compile_predicate(node), compile_node(node)
    for event in ({"f": value}, {}):
        assert generated(event) is interpreted(event)
