"""Platform payloads -> platform-neutral ``Record``s with stable ids."""
