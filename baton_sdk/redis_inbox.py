"""The inbox on Redis: one Lua script per claim and one per record, so each step is atomic.

Scripts never build key names: every key arrives in KEYS (all under the participant's hash
tag, see ``keys``), so they stay valid on Redis Cluster.
"""

from __future__ import annotations

import json
from dataclasses import replace

from redis.asyncio import Redis

from baton_sdk.inbox import CANCELLED, Claim, ClaimStatus, subject_of
from baton_sdk.keys import InboxKeys
from contracts.base import Reply
from contracts.registry import ContractLookup
from messaging.text import as_text

# KEYS: outcome of the effect id, lease of the subject, tombstone of the effect id, fence
# ARGV: lease ms, forward flag ("1" or ""), the cancelled outcome, outcome ttl seconds
CLAIM = """
local stored = redis.call('GET', KEYS[1])
if stored then return {'outcome', stored} end
if ARGV[2] == '1' and redis.call('EXISTS', KEYS[3]) == 1 then
  redis.call('SET', KEYS[1], ARGV[3], 'EX', ARGV[4])
  return {'cancelled', ARGV[3]}
end
local left = redis.call('PTTL', KEYS[2])
if left ~= -2 then return {'busy', tostring(left)} end
local token = tostring(redis.call('INCR', KEYS[4]))
redis.call('SET', KEYS[2], token, 'PX', ARGV[1])
return {'granted', token}
"""

# KEYS: outcome of the effect id, lease of the subject, tombstone of ``compensates``
# ARGV: outcome, ttl seconds, fencing token, bury flag ("1" or "")
RECORD = """
local stored = redis.call('GET', KEYS[1])
if not stored then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
  stored = ARGV[1]
end
if ARGV[4] == '1' then redis.call('SET', KEYS[3], '1', 'EX', ARGV[2]) end
if redis.call('GET', KEYS[2]) == ARGV[3] then redis.call('DEL', KEYS[2]) end
return stored
"""

# KEYS: lease.  ARGV: fencing token, lease ms ("" to release)
FENCED = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '' then redis.call('DEL', KEYS[1]) else redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1
"""


def dumps(reply: Reply) -> str:
    """A stored outcome: the reply's kind and body."""
    return json.dumps({"kind": reply.KIND, "body": reply.model_dump(mode="json")})


def loads(raw: bytes | str, contracts: ContractLookup) -> Reply:
    """A stored outcome read back with the participant's model of its kind."""
    data = json.loads(raw)
    model = contracts.get(data["kind"])
    if model is None or not issubclass(model, Reply):
        raise ValueError(f"inbox holds an unknown reply kind {data['kind']!r}")
    return model.model_validate(data["body"])


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


class RedisInbox:
    """The ``Inbox`` port on Redis; outcomes and tombstones live ``ttl_s`` seconds.

    ``contracts`` reads stored outcomes back: the participant's ``Handlers`` (which know the
    replies their handlers declare) or a ``ContractRegistry``.
    """

    def __init__(
        self, redis: Redis, namespace: str, participant: str, *, ttl_s: int,
        contracts: ContractLookup,
    ) -> None:  # fmt: skip
        self._redis = redis
        self._contracts = contracts
        self.keys = InboxKeys(namespace, participant)
        self._ttl_s = ttl_s
        self._claim = redis.register_script(CLAIM)
        self._record = redis.register_script(RECORD)
        self._fenced = redis.register_script(FENCED)
        self._cancelled = dumps(CANCELLED)

    async def claim(self, effect_id: str, *, compensates: str = "", lease_s: float) -> Claim:
        k, subject = self.keys, subject_of(effect_id, compensates)
        keys = [k.outcome(effect_id), k.lease(subject), k.tombstone(effect_id), k.fence]
        forward = "" if compensates else "1"
        args: list[str | int] = [_ms(lease_s), forward, self._cancelled, self._ttl_s]
        status, value = (as_text(v) for v in await self._claim(keys=keys, args=args))
        found = Claim(ClaimStatus(status), effect_id, subject, compensates)
        match found.status:
            case ClaimStatus.OUTCOME | ClaimStatus.CANCELLED:
                return replace(found, outcome=loads(value, self._contracts))
            case ClaimStatus.BUSY:  # -1: a lease without expiry, never written by us
                return replace(found, retry_after_s=max(int(value), 0) / 1000)
            case _:
                return replace(found, token=value)

    async def renew(self, claim: Claim, *, lease_s: float) -> bool:
        keys = [self.keys.lease(claim.subject)]
        return bool(await self._fenced(keys=keys, args=[claim.token, _ms(lease_s)]))

    async def record(self, claim: Claim, outcome: Reply, *, bury: bool = False) -> Reply:
        k, bury = self.keys, bury and bool(claim.compensates)
        outcome_key = k.outcome(claim.effect_id)
        tomb = k.tombstone(claim.compensates) if bury else outcome_key  # declared, unused
        keys = [outcome_key, k.lease(claim.subject), tomb]
        args: list[str | int] = [dumps(outcome), self._ttl_s, claim.token, "1" if bury else ""]
        stored = as_text(await self._record(keys=keys, args=args))
        return outcome if stored == args[0] else loads(stored, self._contracts)

    async def release(self, claim: Claim) -> None:
        await self._fenced(keys=[self.keys.lease(claim.subject)], args=[claim.token, ""])

    async def stored(self, effect_id: str) -> Reply | None:
        raw = await self._redis.get(self.keys.outcome(effect_id))
        return None if raw is None else loads(raw, self._contracts)
