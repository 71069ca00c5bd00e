"""Canonical encoding, digests and signatures.

The canonical encoding of a message is the JSON object of its signed fields
(a fixed list), keys sorted, no whitespace, UTF-8 (orjson with ``OPT_SORT_KEYS``).
Digests are SHA-256. Signatures: Ed25519, or RSA PKCS#1 v1.5 over SHA-256 —
both deterministic, so signing the same fields twice gives the same bytes.
``cryptography`` is imported on first use (``pip install 'agglo[entwine]'``).
"""

from __future__ import annotations

import base64
import functools
import hashlib
from collections.abc import Sequence
from typing import Any

import orjson


class BadKey(ValueError):
    """A key that cannot be loaded or used."""


def canonical(message: dict, fields: Sequence[str]) -> bytes:
    """The bytes a signature covers: ``fields`` of ``message`` as sorted, compact JSON."""
    try:
        return orjson.dumps({f: message[f] for f in fields}, option=orjson.OPT_SORT_KEYS)
    except KeyError as e:
        raise ValueError(f"message lacks the field {e.args[0]!r}") from None


def object_digest(obj: Any) -> str:
    """SHA-256 (hex) of an object's canonical JSON: what a message's ``objectDigest`` commits to."""
    return hashlib.sha256(orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)).hexdigest()


def chain_digest(prev_digest: str, signature: str) -> str:
    """``H(prev digest ‖ signature)`` over the raw bytes (hex in, hex out; the genesis has prev "")."""
    return hashlib.sha256(bytes.fromhex(prev_digest) + base64.b64decode(signature)).hexdigest()


def _serialization() -> Any:
    try:
        from cryptography.hazmat.primitives import serialization
    except ImportError:
        raise BadKey("entwine needs the cryptography package: pip install 'agglo[entwine]'") from None
    return serialization


class Signer:
    """A private key (RSA or Ed25519) loaded from PEM (PKCS#1 or PKCS#8)."""

    def __init__(self, pem: bytes) -> None:
        serialization = _serialization()
        from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

        try:
            key = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError) as e:
            raise BadKey(f"not an unencrypted PEM private key: {e}") from None
        if not isinstance(key, rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey):
            raise BadKey(f"unsupported key type {type(key).__name__}; use RSA or Ed25519")
        self._key = key
        self.public_pem = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()

    def sign(self, data: bytes) -> str:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding, rsa

        if isinstance(self._key, rsa.RSAPrivateKey):
            sig = self._key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        else:
            sig = self._key.sign(data)
        return base64.b64encode(sig).decode()


@functools.lru_cache(maxsize=64)
def _public_key(public_pem: str) -> Any:
    return _serialization().load_pem_public_key(public_pem.encode())


def is_public_key(public_pem: str) -> bool:
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

    try:
        key = _public_key(public_pem)
    except (ValueError, TypeError):
        return False
    return isinstance(key, rsa.RSAPublicKey | ed25519.Ed25519PublicKey)


def verify_signature(public_pem: str, signature: str, data: bytes) -> bool:
    """Whether ``signature`` (base64) over ``data`` was made by the key of ``public_pem``."""
    _serialization()
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

    try:
        key = _public_key(public_pem)
        sig = base64.b64decode(signature, validate=True)
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(sig, data, padding.PKCS1v15(), hashes.SHA256())
        elif isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(sig, data)
        else:
            return False
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True
