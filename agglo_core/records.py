"""Records in, outcomes out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agglo_core.errors import RecordError


@dataclass(frozen=True, slots=True)
class Record:
    """One event with an id that is stable across redelivery (see DESIGN: Records and identity)."""

    id: str
    payload: Any
    source: str = ""


@dataclass(slots=True)
class Outcome:
    """What became of one record: an output per pipeline that ran to the end, an error per failed one."""

    record: Record
    outputs: list[tuple[str, dict]] = field(default_factory=list)
    errors: list[RecordError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors
