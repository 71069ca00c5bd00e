"""Google's Pub/Sub emulator and functions-framework's real server, started by the tests."""

from __future__ import annotations

import os
import socket
import subprocess

import pytest
from servers import free_port, wait_until

PUBSUB_EMULATOR = "/usr/lib/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator"


@pytest.fixture(scope="session")
def pubsub_emulator():
    """``host:port`` of a running Pub/Sub emulator (from the machine image)."""
    if not os.access(PUBSUB_EMULATOR, os.X_OK):
        pytest.skip(f"Google's Pub/Sub emulator is not on this machine ({PUBSUB_EMULATOR})")
    port = free_port()
    proc = subprocess.Popen([PUBSUB_EMULATOR, "--host=127.0.0.1", f"--port={port}"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)

    def listening() -> bool:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True

    wait_until(listening, 60, "the Pub/Sub emulator", proc)
    yield f"127.0.0.1:{port}"
    os.killpg(proc.pid, 9)
    proc.wait(10)


@pytest.fixture(scope="session")
def gcs_emulator():
    """``http://host:port`` of gcp-storage-emulator (PyPI), in memory."""
    import sys

    port = free_port()
    binary = os.path.join(os.path.dirname(sys.executable), "gcp-storage-emulator")
    proc = subprocess.Popen([binary, "start", "--host", "127.0.0.1", "--port", str(port), "--in-memory", "-q"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    def listening() -> bool:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True

    wait_until(listening, 30, "gcp-storage-emulator", proc)
    yield f"http://127.0.0.1:{port}"
    os.killpg(proc.pid, 9)
    proc.wait(10)
