"""The runtime: drives the pure core, performs its effects, settles failures, boots a plan."""
