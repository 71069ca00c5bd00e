"""Platform payloads -> platform-neutral ``Record``s with stable ids."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agglo_core import Record


@dataclass(frozen=True, slots=True)
class Unreadable:
    """A payload that could not be turned into an event (not JSON, not an object…).

    It stands in a ``Record`` in place of the event; the runtime fails that record
    with ``message`` without running it, and the rest of the batch still runs.
    """

    message: str


@dataclass(frozen=True, slots=True)
class TriggerRecord:
    """One record of a trigger's batch: what to run, how to name it when it fails, its FIFO group."""

    id: str
    payload: Any  # the event, or Unreadable
    report_as: str | None = None
    group: str | None = None
    proof: object = None
    """``agglo_core.records.parse_json``'s proof, where the payload is exactly what it parsed."""

    def record(self, source: str) -> Record:
        return Record(self.id, self.payload, source, self.proof)
