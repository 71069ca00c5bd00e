"""How each process type runs: one module per kind, importable without pydantic.

A process type has two halves. ``agglo_core/processes/<kind>.py`` says what its
config looks like and what is wrong with one: the pydantic model, checks, lint
rules, docs (its ``SPEC``), which loading, validating and explaining a config use.
``agglo_core/stages/<kind>.py`` says how it runs: its stage class,
``compile(ctx)`` building it from the IR (``ctx.step``, an ``agglo_core.ir.ProcessIR``),
and ``emit`` when it writes itself as generated code (pure kinds). A plan is built
from this half only, so a deployment that loads a compiled artefact never imports
pydantic.

A process type defined in one module of ``agglo_core/processes`` alone (its
``SPEC`` with ``compile`` and, optionally, ``emit``) runs too: it is found through
the specs, which import the config models.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agglo_core.codegen import Emit
    from agglo_core.ir import PipelineIR
    from agglo_core.pipeline import Stage, StageContext


@cache
def _module(kind: str) -> Any:
    """The kind's module here, or None when it has none."""
    try:
        return importlib.import_module(f"{__name__}.{kind}")
    except ModuleNotFoundError as e:
        if e.name != f"{__name__}.{kind}":
            raise
        return None


def _runs(kind: str) -> tuple[Callable[[StageContext], Stage], Emit | None]:
    """A kind's ``compile`` and ``emit``: from its module here, else from its spec."""
    module = _module(kind)
    if module is not None:
        return module.compile, getattr(module, "emit", None)
    from agglo_core.processes import specs

    spec = specs()[kind]
    if spec.compile is None:
        raise LookupError(f"process type '{kind}' says nothing of how it runs")
    return spec.compile, spec.emit


def compile_stage(ctx: StageContext) -> Stage:
    """The stage of ``ctx.step``, built from the IR."""
    return _runs(ctx.step.kind)[0](ctx)


def emitters(pipeline: PipelineIR) -> Mapping[str, Emit]:
    """The code emitters of the kinds in ``pipeline`` that write themselves as generated code."""
    out = {}
    for step in pipeline.processes:
        emit = _runs(step.kind)[1]
        if emit is not None:
            out[step.kind] = emit
    return out
