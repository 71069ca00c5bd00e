"""The core's errors. Errors are values a user can act on: they say where and what."""

from __future__ import annotations

from dataclasses import dataclass


class ConfigError(ValueError):
    """Every problem found in a config, each prefixed with its JSON path."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__(f"{len(self.problems)} problem(s) in the config:\n  " + "\n  ".join(self.problems))


class StageError(Exception):
    """Raised inside a process for one record; the pipeline turns it into a ``RecordError``."""

    def __init__(self, message: str, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


# What a process may raise for one record's data: numbers too large for floats,
# nesting deeper than Python's stack. Each fails only that record.
RECORD_FAULTS = (StageError, ArithmeticError, RecursionError)


def describe(fault: BaseException) -> str:
    if isinstance(fault, StageError):
        return str(fault)
    if isinstance(fault, RecursionError):
        return "the event is nested too deeply"
    return f"arithmetic failed: {fault}"


@dataclass(frozen=True, slots=True)
class RecordError:
    """One record failed in one pipeline (or before any pipeline, when ``pipeline`` is None)."""

    record_id: str
    pipeline: str | None
    process: str | None
    message: str
    transient: bool = False
    """An outside system failed (after the runtime's retries): redelivery may succeed. Otherwise the
    record's own data is at fault and redelivering it gives the same error."""

    def __str__(self) -> str:
        where = " / ".join(p for p in (self.pipeline, self.process) if p)
        return f"record {self.record_id}: {where + ': ' if where else ''}{self.message}"

    def to_dict(self) -> dict:
        return {"record": self.record_id, "pipeline": self.pipeline, "process": self.process,
                "error": self.message, "transient": self.transient}
