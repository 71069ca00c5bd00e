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
    Put,
)
from agglo_core.state import add_to_join, apply_deltas, apply_parts


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
            if not e.marks:
                self.kv[(e.store, e.key)] = apply_deltas(before, e.deltas)
                return DeltasApplied(before)
            remembered = {m: self.kv[(e.store, "mark/" + m)] for m, _ in e.marks if (e.store, "mark/" + m) in self.kv}
            after, wrote = apply_parts(before, e.marks, remembered)
            for mark, fields in wrote.items():
                self.kv[(e.store, "mark/" + mark)] = fields
            self.kv[(e.store, e.key)] = after
            return DeltasApplied(before, frozenset(remembered), remembered)
        if isinstance(e, JoinAdd):
            if e.mark and (e.store, "mark/" + e.mark) in self.kv:
                return self.kv[(e.store, "mark/" + e.mark)]
            current = self.kv.get((e.store, e.key))
            join, state = add_to_join(None if current is None else {"members": current[0], "deadline": current[1]}, e)
            if join is None:
                self.kv.pop((e.store, e.key), None)
            else:
                self.kv[(e.store, e.key)] = (frozenset(join["members"]), join["deadline"])
            if e.mark:
                self.kv[(e.store, "mark/" + e.mark)] = state
            return state
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
