"""Platform payloads -> platform-neutral ``Record``s with stable ids."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Unreadable:
    """A payload that could not be turned into an event (not JSON, not an object…).

    It stands in a ``Record`` in place of the event; the runtime fails that record
    with ``message`` without running it, and the rest of the batch still runs.
    """

    message: str
