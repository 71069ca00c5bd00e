"""Shared test set-up. This directory is on sys.path, so tests import ``fakes`` and ``builders``."""

from __future__ import annotations

import pathlib

import pytest

FIXTURES = pathlib.Path(__file__).parent / "fixtures"
BINGE_CONFIGS = FIXTURES / "binge" / "configs"


@pytest.fixture(autouse=True)
def _fresh_memory_stores():
    """``mem:`` stores live per process; start every test without them."""
    from handlers.connectors import memory

    memory.reset()
    yield
    memory.reset()
