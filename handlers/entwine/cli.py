"""``agglo entwine happened-before`` and ``agglo entwine verify``; ``agglo ticker serve`` is in ticker.py."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from agglo_core import ConfigError, load_config
from agglo_core.effects import GetItems
from agglo_core.entwine.chain import SIGNED_FIELDS, Head, verify_chain
from agglo_core.entwine.crypto import BadKey, Signer, canonical, chain_digest, object_digest, verify_signature
from agglo_core.errors import StageError
from agglo_core.processes.entwine import Entwine, stream_keys
from handlers.runtime.boot import UsageError, read_config_file
from handlers.runtime.entwine_keys import read_pem_keys

READ_CHUNK = 500


def _message_ref(text: str) -> tuple[str, str, int]:
    sub_stream, sep, rest = text.partition(":")
    uuid, sep2, idx = rest.rpartition(":")
    if not (sep and sep2 and sub_stream and uuid and idx.isdigit()):
        raise UsageError(f"{text!r}: expected SUBSTREAM:UUID:INDEX")
    return sub_stream, uuid, int(idx)


def happened_before(args: argparse.Namespace) -> int:
    """Prints the ticker's answer; exit 0 if lhs happened before rhs, 1 if not (or unordered)."""
    from handlers.connectors.ticker import call

    lhs, rhs = _message_ref(args.lhs), _message_ref(args.rhs)
    path = "/api/v1/happenedBefore/" + "/".join(str(x) for x in (*lhs, *rhs))
    try:
        status, answer = call(args.ticker, "GET", path)
    except OSError as e:
        raise UsageError(f"ticker {args.ticker} unreachable: {e}") from None
    if status != 200:
        print(f"agglo: ticker answered {status}: {(answer or {}).get('error', answer)}", file=sys.stderr)
        return 2
    print(f"{answer['order']}: {args.lhs} {_VERBS[answer['order']]} {args.rhs}")
    return 0 if answer["happenedBefore"] else 1


_VERBS = {"before": "happened before", "after": "happened after",
          "unordered": "is unordered with (same anchor window)"}


def _read(connector: Any, keys: list[str]) -> list[Any]:
    out: list[Any] = []
    for i in range(0, len(keys), READ_CHUNK):
        [values] = connector.perform([GetItems("", tuple(keys[i:i + READ_CHUNK]))])
        out.extend(values)
    return out


def _read_object(connector: Any, key: str) -> Any:
    try:
        return connector.get(key)
    except (OSError, ValueError):
        return None


def _genesis_problem(genesis: dict, sub_stream: str, ticker_pem: str | None) -> str | None:
    if genesis["idx"] != 0 or genesis["subStreamID"] != sub_stream or genesis["prevUuid"] != "":
        return "message 0 is not this substream's genesis"
    try:
        if genesis["digest"] != chain_digest("", genesis["signature"]):
            return "message 0 (genesis): digest is not H(signature)"
    except ValueError:
        return "message 0 (genesis): signature is not well formed"
    if ticker_pem is not None and not verify_signature(ticker_pem, genesis["signature"],
                                                       canonical(genesis, SIGNED_FIELDS)):
        return "message 0 (genesis): signature does not verify with the ticker's key"
    return None


def verify_substream(state: Any, objects: Any, sub_stream: str, public_pem: str,
                     ticker_pem: str | None = None) -> tuple[int, str | None]:
    """(messages checked, the first broken link or None) for one substream and its stored objects.

    The genesis is signed by the ticker: its signature is checked when ``ticker_pem`` is given.
    """
    head_key, idx_prefix, uuid_prefix = stream_keys(sub_stream)
    [raw_head] = _read(state, [head_key])
    if raw_head is None:
        return 0, None
    try:
        head = Head.from_dict(raw_head)
    except StageError as e:
        return 0, str(e)
    messages = _read(state, [idx_prefix + str(i) for i in range(head.idx + 1)])
    for i, msg in enumerate(messages):
        if msg is None:
            return i, f"message {i}: missing"
    broken = verify_chain(messages, public_pem)
    if broken is not None:
        return broken.position, str(broken)
    if (problem := _genesis_problem(messages[0], sub_stream, ticker_pem)) is not None:
        return 0, problem
    last = messages[-1]
    if (last["uuid"], last["digest"]) != (head.uuid, head.digest):
        return len(messages), "the head does not point at the last message"
    index = _read(state, [uuid_prefix + m["uuid"] for m in messages])
    for msg in messages[1:]:
        entry = index[msg["idx"]]
        if entry != {"idx": msg["idx"]}:
            return msg["idx"], f"message {msg['idx']} ({msg['uuid']}): its uuid index entry is {entry}"
        obj = _read_object(objects, msg["objectStoreKey"])
        if obj is None:
            return msg["idx"], f"message {msg['idx']} ({msg['uuid']}): object {msg['objectStoreKey']} is missing " \
                               "or unreadable"
        if object_digest(obj) != msg["objectDigest"]:
            return msg["idx"], f"message {msg['idx']} ({msg['uuid']}): object {msg['objectStoreKey']} does not " \
                               "match its digest"
    return len(messages), None


def verify(args: argparse.Namespace) -> int:
    """Re-verify every entwine substream of a config; exit 1 at the first broken link."""
    from handlers.connectors import UnknownConnector, default_registry

    try:
        config = load_config(read_config_file(args.config))
        keys, unreadable = read_pem_keys(config)
        if unreadable:
            raise ConfigError(unreadable)
    except ConfigError as e:
        raise UsageError(f"{args.config}: {e}") from None
    bodies = [d.body for d in config.processDefinitions if isinstance(d.body, Entwine)]
    if not bodies:
        raise UsageError(f"{args.config}: no entwine process")
    ticker_pem = None
    if args.ticker:
        from handlers.connectors.ticker import call

        try:
            status, answer = call(args.ticker, "GET", "/api/v1/publicKey")
        except OSError as e:
            raise UsageError(f"ticker {args.ticker} unreachable: {e}") from None
        if status != 200:
            raise UsageError(f"ticker {args.ticker} answered {status} for its public key")
        ticker_pem = answer["publicKey"]
    registry = default_registry()
    failed = 0
    for body in bodies:
        try:
            connectors = registry.build_all(config, {body.streamStateStore, body.objectStore})
            public_pem = Signer(keys[body.pemPath]).public_pem
        except (UnknownConnector, BadKey) as e:
            raise UsageError(f"{args.config}: {e}") from None
        checked, problem = verify_substream(connectors[body.streamStateStore], connectors[body.objectStore],
                                            body.subStreamID, public_pem, ticker_pem)
        if problem is None:
            genesis = "genesis signature checked" if ticker_pem else "genesis signature not checked: no --ticker"
            print(f"{body.name}: substream {body.subStreamID}: ok ({checked} messages, {genesis})")
        else:
            failed += 1
            print(f"{body.name}: substream {body.subStreamID}: BROKEN at {problem}")
    return 1 if failed else 0
