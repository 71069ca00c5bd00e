"""entwine: parsed and validated with the config; running it is not implemented yet."""

from __future__ import annotations

from agglo_core.config import Entwine
from agglo_core.errors import ConfigError
from agglo_core.pipeline import StageContext


def compile(d: Entwine, ctx: StageContext) -> None:
    raise ConfigError([f"entwine process '{d.name}' (pipeline '{ctx.pipeline}'): entwine is validated "
                       "but cannot run in this version of agglo"])
