"""Cold start: for the local adapters, read a config file, compile it, build connectors once; for the
serverless ones, build their app in the init phase (``build_at_init``)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

from agglo_core import ConfigError, Plan
from handlers.connectors import UnknownConnector, default_registry
from handlers.runtime import plan_cache
from handlers.runtime.artefact import (
    Artefact,
    StaleArtefact,
    artefact_data,
    artefact_dir,
    beside,
    read_artefact,
)
from handlers.runtime.config_source import MAX_CONFIG_BYTES, ConfigSourceError, ConfigTooLarge, bounded_config
from handlers.runtime.driver import Runtime
from handlers.runtime.entwine_keys import compile_with_keys, read_key_files
from handlers.runtime.execs import ExecRunner, allow_list_from

App = TypeVar("App")
log = logging.getLogger("agglo.boot")


class UsageError(Exception):
    """Bad config or bad usage: exit status 2."""


class InitError(RuntimeError):
    """The function cannot start: its config (``AGGLO_CONFIG``) could not be read, compiled or connected.

    Raised while the entry point's module is imported, so the platform reports it as the init error,
    with this message, before any event is taken."""


def build_at_init(build: Callable[[], App], environ: Mapping[str, str] = os.environ) -> App | None:
    """``build()`` now, in the init phase, when ``AGGLO_CONFIG`` is set; ``None`` (build on first use) otherwise.

    Lambda's init phase is what SnapStart snapshots and provisioned concurrency runs ahead of traffic, so
    the plan and connectors are built there. Without ``AGGLO_CONFIG`` (a test importing the module, a tool
    reading its names) nothing is built and the first invocation builds or says what is missing.
    """
    source = environ.get("AGGLO_CONFIG")
    if not source:
        return None
    try:
        return build()
    except Exception as e:
        # agglo's own refusals (ValueError: the config's; ConfigSourceError: its source's) say what is wrong;
        # anything else (an AWS error reading s3://…) also needs its kind.
        problem = str(e) if isinstance(e, ValueError | ConfigSourceError) else f"{type(e).__name__}: {e}"
        if not problem.startswith("AGGLO_CONFIG"):
            problem = f"AGGLO_CONFIG={source}: {problem}"
        raise InitError(f"agglo cannot start: {problem}") from e


def serverless_plan(raw: bytes, environ: Mapping[str, str] = os.environ) -> Plan:
    """The function's plan for the config ``raw``: from its compiled artefact (no pydantic, no validation)
    when there is one for exactly these bytes; else, after one warning saying why, the config validated in
    full. The private keys its processes name are read either way; one that cannot be read stops the start."""
    try:
        artefact = read_artefact(raw, artefact_dir(environ))
    except StaleArtefact as e:
        log.warning("agglo: %s; validating the config in full instead (a slower start)", e)
        return compile_with_keys(raw)
    return _artefact_plan(artefact)


def _artefact_plan(artefact: Artefact) -> Plan:
    """The plan of a validated config's artefact, with the private keys it names read from disk."""
    from handlers.connectors.catalog import redact

    keys, unreadable = read_key_files(artefact.key_files)
    if unreadable:
        raise ConfigError(unreadable)
    return Plan.from_ir(artefact.ir, keys, redact=redact)


def local_plan(config_path: str, raw: bytes, cached: bool, cache_directory: str | None) -> Plan:
    """The plan of the local config ``raw`` (read from ``config_path``), the same whichever way it is made.

    ``cached``: without validating, and without pydantic, when a validated plan for exactly these bytes is
    at hand: the compiled artefact beside the config (as the functions find theirs), else the cache of plans
    in ``cache_directory`` (``plan_cache``; None: no cache). Otherwise the config is validated in full and,
    when it validates, its plan cached. A plan at hand that cannot be built (a private key it names is gone
    or damaged) is not reported from there: the full validation reports it, as it would without the plan.
    """
    if cached:
        try:
            artefact: Artefact | None = read_artefact(raw, beside(config_path))
        except StaleArtefact:
            artefact = plan_cache.load(raw, cache_directory)
        if artefact is not None:
            try:
                return _artefact_plan(artefact)
            except Exception as e:  # noqa: BLE001 - whatever it is, validating says it best
                log.debug("agglo: the validated plan at hand cannot be built (%s); validating the config", e)
    plan = compile_with_keys(raw)
    if cached and cache_directory is not None and plan.config is not None:
        from handlers.runtime.entwine_keys import key_files

        plan_cache.store(raw, artefact_data(raw, plan.ir, tuple(key_files(plan.config))), cache_directory)
    return plan


def read_config_file(path: str) -> bytes:
    """The bytes of the config at ``path``; a config larger than ``MAX_CONFIG_BYTES`` is refused unread."""
    try:
        with open(path, "rb") as f:
            return bounded_config(f.read(MAX_CONFIG_BYTES + 1), path)
    except OSError as e:
        raise UsageError(f"cannot read config {path}: {e.strerror}") from None
    except ConfigTooLarge as e:
        raise UsageError(str(e)) from None


def build_runtime(config_path: str, allow_exec: Sequence[str] | None, exec_timeout: float,
                  dedupe: bool = True, cached: bool = False) -> Runtime:
    """The runtime of the local config at ``config_path``. ``cached``: its plan may come from its artefact or
    the cache of plans (``local_plan``; ``AGGLO_CACHE_DIR`` set to nothing: not from the cache)."""
    try:
        plan = local_plan(config_path, read_config_file(config_path), cached, plan_cache.cache_dir())
    except ConfigError as e:
        raise UsageError(f"{config_path}: {e}") from None
    try:
        return Runtime.build(plan, default_registry(), ExecRunner(allow_list_from(allow_exec), exec_timeout),
                             dedupe=dedupe)
    except UnknownConnector as e:
        raise UsageError(f"{config_path}: {e}") from None
