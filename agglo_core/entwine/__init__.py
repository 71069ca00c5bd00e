"""Entwine, pure: signed hash chains of substream messages, the ticker's chain, proofs, happened-before.

Nothing here reads keys from disk, talks to a ticker or keeps state: keys come
in as PEM bytes, time as milliseconds, and the ticker's storage as an object
with ``get``/``put`` handed in by its adapter.
"""
