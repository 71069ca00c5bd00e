"""Redis as the key-value store: ``redis://[user:password@]host:port/db`` (``rediss://`` for TLS).

Works wherever there is a Redis: Memorystore, ElastiCache, a laptop. Every
state change is one Lua script, so it is atomic; all the effects of a batch go
in one pipelined round trip. State items are hashes (field -> number as text);
the script adds in doubles exactly as Python does (so outputs match the other
stores), max and min compare inside it, and it answers with the item as it was. A record's dedupe mark is a key beside its item
(``<item>|mark|<mark>``, with an expiry), set in the same script as the change and
holding the fields the change wrote (JSON), so a redelivery is answered as the
first delivery was. A join is a hash with its ``deadline`` ("" for none) and one
``m:<member>`` field per member; adding a member, closing the join and remembering
the answer under the record's mark is one script. A join without a deadline expires
(``PEXPIRE``) ``joinTtl`` after its last add: Redis itself forgets it. Tee bodies and entwine's chain entries are JSON
strings; a ``CompareAndPut`` (entwine's head check) is one script.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import orjson

from agglo_core.effects import (
    ApplyDeltas,
    CompareAndPut,
    DeltasApplied,
    GetItems,
    JoinAdd,
    Put,
)
from agglo_core.ir import ExternalIR
from agglo_core.state import BOUNDS, REFUSED, STATE_INT_MAX, STATE_LIMIT, StateOverflow, join_from_memo
from handlers.connectors.base import BaseConnector, Work
from handlers.connectors.kv import DEFAULT_JOIN_TTL_S, JOIN_TTL, mark_ttl_s
from handlers.connectors.spec import ClientLibrary, ConnectorSpec, Option

# KEYS[1] = item; ARGV = mark TTL, then per part: mark ('' = none), n, n x (op, field, amount).
# A part whose mark is already set is skipped; an applied part's mark remembers the fields it wrote
# as they were right after it (JSON). Returns {the old item as a flat list, the skipped marks, their memos}.
_APPLY = """
-- Sums in doubles, as Python adds them, written so that Python reads back the very same number:
-- an integer stays an integer text, a float keeps a decimal point (17 digits round-trip a double).
-- A sum past the bounds every store keeps (agglo_core.state) refuses the whole change before anything is written.
local function isfloat(text) return string.find(text, '[%.eEnN]') ~= nil end
local function add(field, have, amount)
  local sum = tonumber(have) + tonumber(amount)
  local text = string.format('%.17g', sum)
  local float = isfloat(have) or isfloat(amount)
  if float and not (math.abs(sum) <= STATE_LIMIT) or not float and (sum < -INT_LIMIT or sum >= INT_LIMIT) then
    error("state field '" .. field .. "' would become " .. text .. ", " .. BOUNDS, 0)
  end
  if float and not isfloat(text) then text = text .. '.0' end
  return text
end
local old = redis.call('HGETALL', KEYS[1])
local current = {}
for i = 1, #old, 2 do current[old[i]] = old[i + 1] end
local ttl = ARGV[1]
local skipped, memos, fields, markwrites = {}, {}, {}, {}
local i = 2
while i <= #ARGV do
  local mark, n = ARGV[i], tonumber(ARGV[i + 1])
  i = i + 2
  local apply, markkey = true, nil
  if mark ~= '' then
    markkey = KEYS[1] .. '|mark|' .. mark
    local known = redis.call('GET', markkey)
    if known then
      apply = false
      table.insert(skipped, mark)
      table.insert(memos, known)
    end
  end
  local wrote = {}
  for j = 1, n do
    local op, field, amount = ARGV[i], ARGV[i + 1], ARGV[i + 2]
    i = i + 3
    if apply then
      local have = current[field]
      if op == 'add' then
        if have == nil then
          current[field] = amount
        else
          current[field] = add(field, have, amount)
        end
        fields[field] = true
      elseif have == nil or (op == 'max' and tonumber(amount) > tonumber(have))
          or (op == 'min' and tonumber(amount) < tonumber(have)) then
        current[field] = amount
        fields[field] = true
      end
      wrote[field] = current[field]
    end
  end
  if apply and markkey then
    table.insert(markwrites, {markkey, cjson.encode(wrote)})
  end
end
for field in pairs(fields) do redis.call('HSET', KEYS[1], field, current[field]) end
for _, m in ipairs(markwrites) do redis.call('SET', m[1], m[2], 'EX', ttl) end
return {old, skipped, memos}
"""
_BOUNDS = f"local STATE_LIMIT, INT_LIMIT, BOUNDS = {STATE_LIMIT!r}, {STATE_INT_MAX + 1}, {json.dumps(BOUNDS, ensure_ascii=False)}\n"

# KEYS[1] = join; ARGV = member, deadline ('' = none), now, mark TTL, mark ('' = none), join TTL in ms,
# n, n x required member.
# Adds the member; closes (deletes) the join when now is past its deadline or every required member
# is in. A join left open without a deadline expires join TTL after this add. With a mark, remembers the
# answer and answers a redelivery with it, changing nothing.
# Returns the answer as JSON: {members, deadline (null: none), closed}.
_JOIN_ADD = """
local markkey = nil
if ARGV[5] ~= '' then
  markkey = KEYS[1] .. '|mark|' .. ARGV[5]
  local known = redis.call('GET', markkey)
  if known then return known end
end
local deadline = redis.call('HGET', KEYS[1], 'deadline') or ARGV[2]
redis.call('HSET', KEYS[1], 'deadline', deadline, 'm:' .. ARGV[1], '1')
local fields = redis.call('HGETALL', KEYS[1])
local members, have = {}, {}
for i = 1, #fields, 2 do
  if string.sub(fields[i], 1, 2) == 'm:' then
    local m = string.sub(fields[i], 3)
    table.insert(members, m)
    have[m] = true
  end
end
local closed = ''
if deadline ~= '' and tonumber(ARGV[3]) > tonumber(deadline) then
  closed = 'timedout'
elseif tonumber(ARGV[7]) > 0 then
  closed = 'complete'
  for i = 1, tonumber(ARGV[7]) do
    if not have[ARGV[7 + i]] then closed = '' end
  end
end
if closed ~= '' then
  redis.call('DEL', KEYS[1])
elseif deadline == '' then
  redis.call('PEXPIRE', KEYS[1], ARGV[6])
end
local shown = cjson.null
if deadline ~= '' then shown = deadline end
local answer = cjson.encode({members = members, deadline = shown, closed = closed})
if markkey then redis.call('SET', markkey, answer, 'EX', ARGV[4]) end
return answer
"""


# KEYS = head, the keys that must be absent, the keys to write; ARGV = expected head uuid ('' = no head),
# how many keys must be absent, then the values (JSON) of the keys to write.  Returns 1 if it wrote.
_COMPARE_AND_PUT = """
local cur = redis.call('GET', KEYS[1])
if ARGV[1] == '' then
  if cur then return 0 end
else
  if not cur then return 0 end
  local ok, doc = pcall(cjson.decode, cur)
  if not ok or type(doc) ~= 'table' or doc['uuid'] ~= ARGV[1] then return 0 end
end
local n = tonumber(ARGV[2])
for i = 2, 1 + n do
  if redis.call('EXISTS', KEYS[i]) == 1 then return 0 end
end
for i = 2 + n, #KEYS do
  redis.call('SET', KEYS[i], ARGV[i - n + 1])
end
return 1
"""


def number_from_redis(text: bytes | str) -> int | float:
    """A state field as Redis keeps it (a decimal text) back as the number it was."""
    s = text.decode() if isinstance(text, bytes) else text
    try:
        return int(s)
    except ValueError:
        return float(s)


def _hash_field(text: bytes) -> int | float | None:
    """A hash field as a number: a state field, a join's member flag or deadline ("" for none: None)."""
    return None if text == b"" else number_from_redis(text)


def _memo(stored: bytes) -> dict:
    """The fields a part wrote, as its mark remembers them (older marks remember nothing)."""
    try:
        fields = orjson.loads(stored)
    except orjson.JSONDecodeError:
        return {}
    return {k: number_from_redis(v) for k, v in fields.items()} if isinstance(fields, dict) else {}


def _pairs(flat: list) -> dict[str, bytes]:
    return {flat[i].decode(): flat[i + 1] for i in range(0, len(flat), 2)}


class RedisKV(BaseConnector):
    """Every batch is one pipelined round trip; each effect in it is one atomic command or script."""

    capabilities = frozenset({"Put", "ApplyDeltas", "JoinAdd", "GetItems", "CompareAndPut"})

    def __init__(self, url: str, prefix: str = "", join_ttl_s: float = DEFAULT_JOIN_TTL_S) -> None:
        from handlers.connectors.catalog import redact  # late: the catalog imports this module

        self.url = url
        self.prefix = prefix
        self._join_ttl_ms = str(max(1, round(join_ttl_s * 1000)))
        self._shown = redact(url)
        self._client: Any = None
        self._scripts: dict[str, Any] = {}

    @property
    def client(self) -> Any:
        if self._client is None:
            try:
                import redis
            except ImportError:
                raise RuntimeError("the redis:// connector needs the redis package: pip install 'agglo[redis]'") \
                    from None
            self._client = redis.Redis.from_url(self.url, socket_timeout=30, socket_connect_timeout=5,
                                                health_check_interval=30)
            self._scripts = {name: self._client.register_script(src) for name, src in
                             (("apply", _BOUNDS + _APPLY), ("join_add", _JOIN_ADD),
                                                ("compare_and_put", _COMPARE_AND_PUT))}
        return self._client

    def perform_batch(self, works: list[Work]) -> list[Any]:
        pipe = self.client.pipeline(transaction=False)
        for w in works:
            e = w.effect
            if isinstance(e, GetItems):
                pipe.mget([self.prefix + k for k in e.keys])
                continue
            key = self.prefix + e.key
            if isinstance(e, ApplyDeltas):
                args: list[Any] = [str(mark_ttl_s())]
                for mark, deltas in e.marks or (("", e.deltas),):
                    args += [mark, str(len(deltas))]
                    for field, (op, amount) in deltas.items():
                        args += [op, field, repr(amount) if isinstance(amount, float) else str(amount)]
                self._scripts["apply"](keys=[key], args=args, client=pipe)
            elif isinstance(e, JoinAdd):
                self._scripts["join_add"](keys=[key], args=[
                    e.member, "" if e.deadline_ms is None else str(e.deadline_ms), str(e.now_ms), str(mark_ttl_s()),
                    e.mark, self._join_ttl_ms, str(len(e.required)), *e.required], client=pipe)
            elif isinstance(e, Put):
                pipe.set(key, w.data)
            elif isinstance(e, CompareAndPut):
                keys = [key, *(self.prefix + k for k in e.absent), *(self.prefix + k for k, _ in e.writes)]
                self._scripts["compare_and_put"](keys=keys, args=[e.expected or "", str(len(e.absent)), *w.data],
                                                 client=pipe)
        answers = pipe.execute(raise_on_error=False)
        return [self._result(w.effect, a) for w, a in zip(works, answers, strict=True)]

    def _result(self, e: Any, answer: Any) -> Any:
        if isinstance(answer, Exception):  # this command failed; the others of the round trip stand
            if isinstance(e, ApplyDeltas) and BOUNDS in str(answer):
                return self.failure(StateOverflow(f"{answer}: {REFUSED}"))
            return self.failure(answer)
        if isinstance(e, ApplyDeltas):
            old, skipped, memos = answer
            remembered = {m.decode(): _memo(memo) for m, memo in zip(skipped, memos, strict=True)}
            return DeltasApplied({k: number_from_redis(v) for k, v in _pairs(old).items()}, frozenset(remembered),
                                 remembered)
        if isinstance(e, JoinAdd):
            join = orjson.loads(answer)
            return join_from_memo({**join, "members": join["members"] or ()})
        if isinstance(e, CompareAndPut):
            return answer == 1
        if isinstance(e, GetItems):
            return tuple(None if v is None else orjson.loads(v) for v in answer)
        return None

    def get(self, key: str) -> Any:
        return self._value(self.prefix + key)

    def _value(self, full_key: str) -> Any:
        kind = self.client.type(full_key)
        if kind == b"hash":
            return {k: _hash_field(v) for k, v in _pairs(
                [x for kv in self.client.hgetall(full_key).items() for x in kv]).items()}
        if kind == b"string":
            return orjson.loads(self.client.get(full_key))
        return None

    def scan(self, prefix: str = "") -> Iterator[tuple[str, Any]]:
        pattern = _glob_escape(self.prefix + prefix) + "*"
        for full_key in sorted(self.client.scan_iter(match=pattern, count=500)):
            value = self._value(full_key.decode())
            if value is not None:
                yield full_key.decode()[len(self.prefix):], value

    def describe(self) -> str:
        return self._shown

    def __repr__(self) -> str:
        return f"RedisKV({self._shown})"


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def _build(ext: ExternalIR, opts: dict[str, str]) -> RedisKV:
    parts = urlsplit(ext.connection_string)
    return RedisKV(parts._replace(query="").geturl(), opts.get("prefix", ""), float(opts["joinTtl"]))


REDIS_CLIENT = ClientLibrary("redis", "redis", "redis>=5.0")

SPECS = (ConnectorSpec(
    "Redis", ("redis", "rediss"), ("ExternalKVStore",), RedisKV.capabilities, REDIS_CLIENT,
    "Redis anywhere (a laptop, Memorystore, ElastiCache; `pip install 'agglo[redis]'`): every state change is "
    "one Lua script (atomic), a batch's effects one pipelined round trip",
    _build, form="url", url_shape="[user:password@]host:port/db",
    options=(Option("prefix", metavar="P", doc="prepended to every key, so several configs can share one db"),
             JOIN_TTL)),)
