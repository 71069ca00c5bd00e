"""Redis as the key-value store: ``redis://[user:password@]host:port/db`` (``rediss://`` for TLS).

Works wherever there is a Redis: Memorystore, ElastiCache, a laptop. Every
state change is one Lua script, so it is atomic; all the effects of a batch go
in one pipelined round trip. State items are hashes (field -> number);
``HINCRBYFLOAT`` adds, max and min compare inside the script, and the script
answers with the item as it was. A record's dedupe mark is a key beside its item
(``<item>|mark|<mark>``, ``SET NX EX``), set in the same script as the change. A join is a hash with its ``deadline`` and
one ``m:<member>`` field per member. Tee bodies and entwine's chain entries are JSON strings; a
``CompareAndPut`` (entwine's head check) is one script.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson

from agglo_core.config import External
from agglo_core.connstr import redact
from agglo_core.effects import (
    ApplyDeltas,
    CompareAndPut,
    DeltasApplied,
    GetItems,
    JoinAdd,
    JoinDelete,
    JoinState,
    Put,
)
from handlers.connectors.kv import mark_ttl_s

# KEYS[1] = item; ARGV = mark TTL, then per part: mark ('' = none), n, n x (op, field, amount).
# A part whose mark is already set is skipped. Returns {the old item as a flat list, the skipped marks}.
_APPLY = """
local old = redis.call('HGETALL', KEYS[1])
local current = {}
for i = 1, #old, 2 do current[old[i]] = old[i + 1] end
local ttl = ARGV[1]
local skipped = {}
local i = 2
while i <= #ARGV do
  local mark, n = ARGV[i], tonumber(ARGV[i + 1])
  i = i + 2
  local apply = true
  if mark ~= '' then
    apply = redis.call('SET', KEYS[1] .. '|mark|' .. mark, '1', 'NX', 'EX', ttl)
    if not apply then table.insert(skipped, mark) end
  end
  for j = 1, n do
    local op, field, amount = ARGV[i], ARGV[i + 1], ARGV[i + 2]
    i = i + 3
    if apply then
      local have = current[field]
      if op == 'add' then
        current[field] = redis.call('HINCRBYFLOAT', KEYS[1], field, amount)
      elseif have == nil or (op == 'max' and tonumber(amount) > tonumber(have))
          or (op == 'min' and tonumber(amount) < tonumber(have)) then
        redis.call('HSET', KEYS[1], field, amount)
        current[field] = amount
      end
    end
  end
end
return {old, skipped}
"""

# KEYS[1] = join; ARGV = member, deadline.  Returns the join after adding the member.
_JOIN_ADD = """
redis.call('HSETNX', KEYS[1], 'deadline', ARGV[2])
redis.call('HSET', KEYS[1], 'm:' .. ARGV[1], '1')
return redis.call('HGETALL', KEYS[1])
"""

# KEYS[1] = join; ARGV = deadline.  Deletes only the join with that deadline.
_JOIN_DELETE = """
if redis.call('HGET', KEYS[1], 'deadline') == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
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


def _number(text: bytes | str) -> int | float:
    s = text.decode() if isinstance(text, bytes) else text
    try:
        return int(s)
    except ValueError:
        return float(s)


def _pairs(flat: list) -> dict[str, bytes]:
    return {flat[i].decode(): flat[i + 1] for i in range(0, len(flat), 2)}


class RedisKV:
    def __init__(self, url: str, prefix: str = "") -> None:
        self.url = url
        self.prefix = prefix
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
                             (("apply", _APPLY), ("join_add", _JOIN_ADD), ("join_delete", _JOIN_DELETE),
                                                  ("compare_and_put", _COMPARE_AND_PUT))}
        return self._client

    def perform(self, effects: list[Any]) -> list[Any]:
        pipe = self.client.pipeline(transaction=False)
        for e in effects:
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
                self._scripts["join_add"](keys=[key], args=[e.member, str(e.deadline_ms)], client=pipe)
            elif isinstance(e, JoinDelete):
                self._scripts["join_delete"](keys=[key], args=[str(e.deadline_ms)], client=pipe)
            elif isinstance(e, Put):
                pipe.set(key, orjson.dumps(e.body))
            elif isinstance(e, CompareAndPut):
                keys = [key, *(self.prefix + k for k in e.absent), *(self.prefix + k for k, _ in e.writes)]
                args = [e.expected or "", str(len(e.absent)), *(orjson.dumps(v) for _, v in e.writes)]
                self._scripts["compare_and_put"](keys=keys, args=args, client=pipe)
            else:
                raise TypeError(f"Redis cannot perform {type(e).__name__}")
        answers = pipe.execute(raise_on_error=True)
        return [self._result(e, a) for e, a in zip(effects, answers, strict=True)]

    @staticmethod
    def _result(e: Any, answer: Any) -> Any:
        if isinstance(e, ApplyDeltas):
            old, skipped = answer
            return DeltasApplied({k: _number(v) for k, v in _pairs(old).items()},
                                 frozenset(m.decode() for m in skipped))
        if isinstance(e, JoinAdd):
            fields = _pairs(answer)
            return JoinState(frozenset(k[2:] for k in fields if k.startswith("m:")), int(fields["deadline"]))
        if isinstance(e, JoinDelete | CompareAndPut):
            return answer == 1
        if isinstance(e, GetItems):
            return tuple(None if v is None else orjson.loads(v) for v in answer)
        return None

    def get(self, key: str) -> Any:
        key = self.prefix + key
        kind = self.client.type(key)
        if kind == b"hash":
            return {k: _number(v) for k, v in _pairs(
                [x for kv in self.client.hgetall(key).items() for x in kv]).items()}
        if kind == b"string":
            return orjson.loads(self.client.get(key))
        return None

    def __repr__(self) -> str:
        return f"RedisKV({redact(self.url)})"


def register(registry: Any) -> None:
    def build(ext: External) -> RedisKV:
        parts = urlsplit(ext.connectionString)
        prefix = parse_qs(parts.query).get("prefix", [""])[0]
        url = parts._replace(query="").geturl()
        return RedisKV(url, prefix)

    registry.register("ExternalKVStore", "redis", build)
    registry.register("ExternalKVStore", "rediss", build)
