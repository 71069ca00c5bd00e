"""Tools for pipeline authors: config unit tests, event generation, pictures, per-event explanations.

Imported only by the commands that need them, so ``agglo run`` and the
serverless handlers never load them.
"""
