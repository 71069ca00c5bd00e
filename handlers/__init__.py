"""Adapters: everything that does I/O around the pure core (platform entry points, connectors, runtime)."""
