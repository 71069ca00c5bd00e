"""What a process type declares about itself, beside its code (Redpanda Connect's component specs).

Validation, lint, the JSON schema, the graph, ``run --explain`` and the README's
process reference read these specs; nothing else knows a process kind.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ExternalRef:
    """A field of a process that names an external system, and what the process needs of it."""

    field: str
    external_type: str | None
    """The ``externalType`` the system must have (None: any type that can take the effects)."""
    what: str
    """How a person calls such a system ("key-value store")."""
    capabilities: frozenset[str]
    """The effects (by class name in ``agglo_core.effects``) the system's connector must perform."""


@dataclass(frozen=True, slots=True)
class ExternalNeed:
    """One reference from a config to an external system, with the JSON path of the referring field."""

    path: str
    external: str
    external_type: str | None
    capabilities: frozenset[str]
