"""The GCS emulator (PyPI), started by the tests (the Pub/Sub and Firestore emulators: tests/conftest.py)."""

from __future__ import annotations

import logging
import os
import sys

import pytest
from servers import Server, free_port, port_open


@pytest.fixture(scope="session")
def gcs_emulator():
    """``http://host:port`` of gcp-storage-emulator (PyPI), in memory."""
    port = free_port()
    binary = os.path.join(os.path.dirname(sys.executable), "gcp-storage-emulator")
    server = Server([binary, "start", "--host", "127.0.0.1", "--port", str(port), "--in-memory", "-q"],
                    ready=lambda: port_open(port))
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture(autouse=True)
def _agglo_logging_restored():
    """A cold start in this process sets up Cloud Logging on the ``agglo`` logger; later tests get it back as it was.

    (Powertools' Lambda logger is also named ``agglo``: a Cloud Logging handler left on it doubles its lines.)
    """
    root = logging.getLogger("agglo")
    handlers, propagate, level = list(root.handlers), root.propagate, root.level
    yield
    root.handlers[:] = handlers
    root.propagate, root.level = propagate, level
