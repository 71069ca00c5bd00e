"""agglo's pure pipeline core: binge configs compiled into plans that turn records into outcomes.

No I/O happens here. A plan yields effects (``agglo_core.effects``) and is sent
their results; whoever drives it decides how to perform them.
"""

from typing import TYPE_CHECKING, Any

from agglo_core.effects import (
    ApplyDeltas,
    DeltasApplied,
    Effect,
    EffectFailed,
    Exec,
    JoinAdd,
    JoinState,
    Put,
    RetryPolicy,
)
from agglo_core.errors import ConfigError, RecordError
from agglo_core.pipeline import Plan, compile_plan
from agglo_core.records import Outcome, Record

if TYPE_CHECKING:
    from agglo_core.config import PipelinesConfig, load_config


def __getattr__(name: str) -> Any:
    # The config models (pydantic) load only when asked for: a generated plan runs without them.
    if name in ("PipelinesConfig", "load_config"):
        from agglo_core import config

        return getattr(config, name)
    raise AttributeError(f"module 'agglo_core' has no attribute {name!r}")

__all__ = [
    "ApplyDeltas", "ConfigError", "DeltasApplied", "Effect", "EffectFailed", "Exec", "JoinAdd", "JoinState",
    "Outcome", "Plan", "PipelinesConfig", "Put", "Record", "RecordError", "RetryPolicy", "compile_plan",
    "load_config",
]
