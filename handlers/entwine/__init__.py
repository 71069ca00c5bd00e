"""entwine's services and tools: the ticker daemon, its state, and the substream commands."""
