"""Plain in-memory answers to the core's effects: no I/O, no mocks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agglo_core.effects import (
    ApplyDeltas,
    DeltasApplied,
    Effect,
    EffectFailed,
    Exec,
    JoinAdd,
    JoinDelete,
    JoinState,
    Put,
)
from agglo_core.state import apply_deltas, combine_deltas


@dataclass
class MemoryWorld:
    """KV stores, outputs and executables in dicts. ``fail`` decides which effects fail."""

    kv: dict[tuple[str, str], Any] = field(default_factory=dict)
    puts: list[Put] = field(default_factory=list)
    execs: list[Exec] = field(default_factory=list)
    programs: dict[str, Callable[[Any, tuple[str, ...]], Any]] = field(default_factory=dict)
    responses: dict[str, Any] = field(default_factory=dict)
    fail: Callable[[Effect], str | None] = lambda effect: None
    crossings: int = 0
    performed: list[Effect] = field(default_factory=list)

    def perform(self, effects: list[Effect]) -> list[Any]:
        self.crossings += 1
        self.performed.extend(effects)
        return [self.one(e) for e in effects]

    def one(self, e: Effect) -> Any:
        why = self.fail(e)
        if why:
            return EffectFailed(why)
        if isinstance(e, ApplyDeltas):
            before = self.kv.get((e.store, e.key), {})
            duplicates = frozenset(m for m, _ in e.marks if (e.store, "mark/" + m) in self.kv)
            deltas: dict = {} if duplicates else e.deltas
            for mark, part in e.marks:
                if mark not in duplicates:
                    self.kv[(e.store, "mark/" + mark)] = True
                    if duplicates:
                        combine_deltas(deltas, part)
            self.kv[(e.store, e.key)] = apply_deltas(before, deltas)
            return DeltasApplied(before, duplicates)
        if isinstance(e, JoinAdd):
            members, deadline = self.kv.get((e.store, e.key), (frozenset(), e.deadline_ms))
            members = members | {e.member}
            self.kv[(e.store, e.key)] = (members, deadline)
            return JoinState(members, deadline)
        if isinstance(e, JoinDelete):
            current = self.kv.get((e.store, e.key))
            if current is not None and current[1] == e.deadline_ms:
                del self.kv[(e.store, e.key)]
                return True
            return False
        if isinstance(e, Put):
            self.puts.append(e)
            return self.responses.get(e.target)
        if isinstance(e, Exec):
            self.execs.append(e)
            program = self.programs.get(e.path)
            if program is None:
                return EffectFailed(f"no program {e.path}")
            return program(e.input, e.args)
        raise AssertionError(f"unknown effect {e!r}")

    def state(self, store: str, key: str) -> Any:
        return self.kv.get((store, key))

    def states(self) -> dict:
        """State items only (no dedupe marks)."""
        return {k: v for k, v in self.kv.items() if not k[1].startswith("mark/")}
