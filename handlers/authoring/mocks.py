"""Stand-ins for every external system and executable of a config, so its tests run without any cloud.

KV stores are in-memory stores preloaded with the test's contents; every other
output keeps what it is sent; HTTP systems answer with the test's mocked
responses (by default 200 and no body); executables are never run, their
results come from the test's mocks. Everything the runtime performs is
recorded, per target, in the order it happened.
"""

from __future__ import annotations

from typing import Any

from agglo_core import Plan
from agglo_core.effects import Effect, EffectFailed, Exec, Put
from handlers.authoring.testfile import Answer
from handlers.connectors import Connector
from handlers.connectors.memory import MemoryObjectStore, MemoryStore
from handlers.runtime.driver import Runtime

Performed = list[tuple[str, Effect]]
"""(target: an external system's name or an executable's path, effect), in order."""


class _Answering:
    """Answers effects from a list of mocked answers in turn; the last one repeats."""

    def __init__(self, answers: list[Answer]) -> None:
        self.answers, self.used = answers, 0

    def next(self) -> Any:
        if not self.answers:
            return None
        answer = self.answers[min(self.used, len(self.answers) - 1)]
        self.used += 1
        return answer.value if answer.failure is None else EffectFailed(answer.failure)


class MockHttp:
    def __init__(self, answers: list[Answer]) -> None:
        self._answers = _Answering(answers)

    def perform(self, effects: list[Any]) -> list[Any]:
        if not all(isinstance(e, Put) for e in effects):
            raise TypeError("an HTTP endpoint can only receive POSTs")
        return [self._answers.next() for _ in effects]


class MockExecs:
    """Takes the runtime's ``ExecRunner`` place: executables are looked up in the mocks, never run."""

    def __init__(self, mocks: dict[str, list[Answer]]) -> None:
        self._mocks = {path: _Answering(answers) for path, answers in mocks.items()}

    def perform(self, effects: list[Exec]) -> list[Any]:
        results: list[Any] = []
        for e in effects:
            mock = self._mocks.get(e.path)
            if mock is None:
                results.append(EffectFailed(f"executable '{e.path}' has no mock in this test (add it under exec:; "
                                            "tests never run real executables)"))
            else:
                result = mock.next()
                results.append(result if e.wait else None)
        return results


class _Recording:
    def __init__(self, target: str, inner: Any, performed: Performed) -> None:
        self.target, self.inner, self.performed = target, inner, performed

    def perform(self, effects: list[Any]) -> list[Any]:
        self.performed.extend((e.path if isinstance(e, Exec) else self.target, e) for e in effects)
        return self.inner.perform(effects)


def mock_runtime(plan: Plan, kv: dict[str, dict[str, Any]], http: dict[str, list[Answer]],
                 execs: dict[str, list[Answer]], now_ms: int) -> tuple[Runtime, Performed]:
    """A runtime on stand-ins for ``plan``'s externals, and the list it records what it performs in."""
    performed: Performed = []
    connectors: dict[str, Connector] = {}
    for ext in plan.ir.externals:
        kind = ext.external_type
        inner: Any
        if kind == "ExternalKVStore":
            inner = MemoryStore(ext.name)
            inner.data.update(kv.get(ext.name, {}))
        elif kind == "ExternalHttp":
            inner = MockHttp(http.get(ext.name, []))
        else:
            inner = MemoryObjectStore(ext.name)
        connectors[ext.name] = _Recording(ext.name, inner, performed)
    runtime = Runtime(plan, connectors, _Recording("", MockExecs(execs), performed),  # type: ignore[arg-type]
                      clock=lambda: now_ms / 1000, sleep=lambda _s: None)
    return runtime, performed

