"""Long-running local daemons: ``agglo serve`` and its durable queue."""
