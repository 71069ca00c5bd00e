"""Records and effects are value classes: hashed and compared by their fields, and frozen to type checkers.

At run time they are slotted dataclasses without the frozen check (which tripled what one costs to make);
what keeps them immutable is the type checker, so this holds it to refusing an assignment.
"""

from __future__ import annotations

import pathlib
import subprocess
import sys

from hypothesis import given
from hypothesis import strategies as st

from agglo_core.effects import ApplyDeltas, Put, RetryPolicy
from agglo_core.records import PARSED_JSON, Record

texts = st.text(max_size=8)


@given(rid=texts, payload=st.integers() | texts, source=texts, other=texts)
def test_records_are_equal_and_hash_alike_by_their_fields(rid: str, payload: object, source: str, other: str) -> None:
    a, b = Record(rid, payload, source), Record(rid, payload, source, PARSED_JSON)
    assert a == b and hash(a) == hash(b)  # the proof is not part of what a record is
    assert (a == Record(other, payload, source)) == (rid == other)
    assert len({a, b, Record(rid, payload, source)}) == 1


@given(key=texts, n=st.integers(0, 5))
def test_effects_are_equal_by_their_fields(key: str, n: int) -> None:
    assert ApplyDeltas("s", key, {"v": ("add", n)}, RetryPolicy(n)) == ApplyDeltas("s", key, {"v": ("add", n)},
                                                                                   RetryPolicy(n))
    assert hash(RetryPolicy(n, 1)) == hash(RetryPolicy(n, 1))
    assert Put("t", key, {}) != Put("t", key + "x", {})


def test_the_type_checker_refuses_assigning_a_field(tmp_path: pathlib.Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text("from agglo_core.effects import Put\nfrom agglo_core.records import Record\n"
                     "p = Put('t', 'k', {})\np.key = 'x'\nr = Record('a', 1)\nr.payload = 2\n")
    root = pathlib.Path(__file__).parents[2]
    done = subprocess.run([sys.executable, "-m", "mypy", "--follow-imports=silent", "--cache-dir",
                           str(tmp_path / "cache"), str(probe)], capture_output=True, text=True, cwd=root)
    assert done.returncode == 1, done.stdout
    assert 'probe.py:4: error: Property "key" defined in "Put" is read-only' in done.stdout, done.stdout
    assert 'probe.py:6: error: Property "payload" defined in "Record" is read-only' in done.stdout, done.stdout
