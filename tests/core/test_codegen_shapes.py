"""The shapes generated code recognises in a config stand for exactly what the general code does."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from agglo_core import regex
from agglo_core.stages.filter import exact_key

# The characters a key can hold that a pattern treats specially, beside plain ones and newlines (RE2's ``$``
# is the end of the text, not the end of a line).
KEY_ALPHABET = st.sampled_from(["a", "b", ":", " ", "\n", "é", "𝄞", ".", "$", "^", "*", "(", ")", "|", "\\"])
PATTERNS = st.builds(lambda head, body, tail: head + body + tail, st.sampled_from(["^", "", "(?i)^"]),
                     st.text(KEY_ALPHABET, min_size=1, max_size=4), st.sampled_from(["$", "", "$x", "\n$"]))


@settings(max_examples=500, deadline=None)
@given(PATTERNS, st.text(KEY_ALPHABET, max_size=5))
def test_a_patterns_exact_key_is_the_only_key_it_matches(pattern: str, key: str) -> None:
    try:
        compiled = regex.compile(pattern)
    except regex.RegexError:
        return
    exact = exact_key(pattern)
    if exact is not None:
        assert (compiled.search(key) is not None) == (key == exact)
        assert compiled.search(exact) is not None


def test_exact_keys_are_recognised() -> None:
    assert exact_key("^someString$") == "someString"
    assert exact_key("^internal:name$") == "internal:name"
    assert exact_key("^some.*$") is None and exact_key("^(a|b)$") is None and exact_key("someString") is None
