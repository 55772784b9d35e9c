"""The Lua scripts behind every state change of the payment services: each change is atomic.

Scripts never build key names: every key they touch arrives in KEYS, so they stay valid on
Redis Cluster. Where a key is only known after reading (the account behind a hold), the
caller reads first and the script re-checks, answering ``retry`` if the read went stale.

Each effect id has one outcome, whatever the SDK does: a business refusal is recorded under
the key a success would use, so a repeat (even one racing the first) gets the same answer.
"""

from __future__ import annotations

# KEYS: hold, void marker, account, holds index
# ARGV: hold_id, effect_id, saga_id, account_id, amount, currency, refusal ttl seconds
# A refusal is kept under the hold key (status 'refused', never indexed as a hold), so the
# effect id keeps that one outcome: a later authorize of it is refused alike, never held.
AUTHORIZE = """
local state = redis.call('HMGET', KEYS[1], 'status', 'reason')
if state[1] == 'refused' then return {'err', state[2]} end
if state[1] then return {'ok', 'exists'} end
if redis.call('EXISTS', KEYS[2]) == 1 then return {'err', 'cancelled'} end
local function refuse(reason)
  redis.call('HSET', KEYS[1], 'hold_id', ARGV[1], 'effect_id', ARGV[2], 'saga_id', ARGV[3],
    'account', ARGV[4], 'amount', ARGV[5], 'currency', ARGV[6], 'status', 'refused',
    'reason', reason)
  redis.call('EXPIRE', KEYS[1], ARGV[7])
  return {'err', reason}
end
local acct = redis.call('HMGET', KEYS[3], 'balance', 'currency')
if not acct[1] then return refuse('unknown_account') end
if acct[2] ~= ARGV[6] then return refuse('currency_mismatch') end
local amount = tonumber(ARGV[5])
if tonumber(acct[1]) < amount then return refuse('insufficient_funds') end
redis.call('HINCRBY', KEYS[3], 'balance', -amount)
redis.call('HSET', KEYS[1], 'hold_id', ARGV[1], 'effect_id', ARGV[2], 'saga_id', ARGV[3],
  'account', ARGV[4], 'amount', ARGV[5], 'currency', ARGV[6], 'status', 'held')
redis.call('SADD', KEYS[4], ARGV[1])
return {'ok', 'held'}
"""

# KEYS: hold, void marker, account (as read before; "" account id when there was no hold)
# ARGV: account_id, marker ttl seconds
# A refused authorization held nothing: nothing to undo, but the marker is still left.
VOID = """
local hold = redis.call('HMGET', KEYS[1], 'status', 'account', 'amount')
if not hold[1] or hold[1] == 'refused' then
  redis.call('SET', KEYS[2], '1', 'EX', ARGV[2])
  return hold[1] and 'refused' or 'absent'
end
if hold[1] ~= 'held' then return 'already_' .. hold[1] end
if hold[2] ~= ARGV[1] then return 'retry' end
redis.call('HINCRBY', KEYS[3], 'balance', tonumber(hold[3]))
redis.call('HSET', KEYS[1], 'status', 'voided')
return 'released'
"""

# KEYS: capture, hold, merchant, captures index, captures-per-saga hash, PCI attestation
# ARGV: capture_id, saga_id, hold_id, merchant_id, amount, currency, refusal ttl seconds
# A refusal is kept under the capture key (status 'refused', never indexed as a capture):
# a repeated capture of the effect id gets the same refusal and never captures. What the
# command says is checked against the records: the hold is this saga's, held, of this amount
# and currency; the attestation was issued (and not revoked) for this saga and this merchant.
CAPTURE = """
local state = redis.call('HMGET', KEYS[1], 'status', 'reason')
if state[1] == 'refused' then return {'err', state[2]} end
if redis.call('EXISTS', KEYS[1]) == 1 then return {'ok', 'exists'} end
local function refuse(reason)
  redis.call('HSET', KEYS[1], 'capture_id', ARGV[1], 'saga_id', ARGV[2], 'hold_id', ARGV[3],
    'merchant', ARGV[4], 'amount', ARGV[5], 'currency', ARGV[6], 'status', 'refused',
    'reason', reason)
  redis.call('EXPIRE', KEYS[1], ARGV[7])
  return {'err', reason}
end
local hold = redis.call('HMGET', KEYS[2], 'status', 'amount', 'currency', 'saga_id')
if hold[1] ~= 'held' or hold[2] ~= ARGV[5] or hold[3] ~= ARGV[6] or hold[4] ~= ARGV[2] then
  return refuse('hold_not_capturable')
end
local att = redis.call('HMGET', KEYS[6], 'status', 'saga_id', 'merchant')
if att[1] ~= 'issued' or att[2] ~= ARGV[2] or att[3] ~= ARGV[4] then
  return refuse('attestation_mismatch')
end
local merchant = redis.call('HMGET', KEYS[3], 'open', 'currency')
if merchant[1] ~= '1' then return refuse('merchant_closed') end
if merchant[2] ~= ARGV[6] then return refuse('currency_mismatch') end
redis.call('HSET', KEYS[2], 'status', 'captured')
redis.call('HINCRBY', KEYS[3], 'balance', tonumber(ARGV[5]))
redis.call('HSET', KEYS[1], 'capture_id', ARGV[1], 'saga_id', ARGV[2], 'hold_id', ARGV[3],
  'merchant', ARGV[4], 'amount', ARGV[5], 'currency', ARGV[6])
redis.call('SADD', KEYS[4], ARGV[1])
redis.call('HINCRBY', KEYS[5], ARGV[2], 1)
return {'ok', 'captured'}
"""

# KEYS: account or merchant hash, its index set, totals hash
# ARGV: id, balance, currency, open flag ("" for accounts)
SEED = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'balance', ARGV[2], 'currency', ARGV[3])
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'open', ARGV[4]) end
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('HINCRBY', KEYS[3], ARGV[3], tonumber(ARGV[2]))
return 1
"""

# KEYS: assessment hash, exposure sorted set
# ARGV: score, member, now, window start
COMMIT_RISK = """
local state = redis.call('HMGET', KEYS[1], 'status', 'score', 'reason', 'detail')
if state[1] == 'assessed' then return {'ok', state[2]} end
if state[1] == 'refused' then return {'err', state[3], state[4]} end
if state[1] then return {'err', 'cancelled', ''} end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[4])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])
redis.call('HSET', KEYS[1], 'status', 'assessed', 'score', ARGV[1], 'exposure', KEYS[2],
  'member', ARGV[2])
return {'ok', ARGV[1]}
"""

# KEYS: assessment hash.  ARGV: reason, detail
# Records a refusal unless the effect id already has an outcome, which then stands.
REFUSE_RISK = """
local state = redis.call('HMGET', KEYS[1], 'status', 'score', 'reason', 'detail')
if state[1] == 'assessed' then return {'ok', state[2]} end
if state[1] == 'refused' then return {'err', state[3], state[4]} end
if state[1] then return {'err', 'cancelled', ''} end
redis.call('HSET', KEYS[1], 'status', 'refused', 'reason', ARGV[1], 'detail', ARGV[2])
return {'err', ARGV[1], ARGV[2]}
"""

# KEYS: assessment hash, exposure sorted set (as read before; the hash itself when none)
# A refused assessment added no exposure: nothing to undo, and it stays refused.
RELEASE_RISK = """
local state = redis.call('HMGET', KEYS[1], 'status', 'exposure', 'member')
if not state[1] then
  redis.call('HSET', KEYS[1], 'status', 'released')
  return 'absent'
end
if state[1] ~= 'assessed' then return 'already_' .. state[1] end
if state[2] ~= KEYS[2] then return 'retry' end
redis.call('ZREM', KEYS[2], state[3])
redis.call('HSET', KEYS[1], 'status', 'released')
return 'released'
"""

# KEYS: attestation hash.  ARGV: attestation_id, saga_id, merchant_id
ISSUE_ATTESTATION = """
local state = redis.call('HMGET', KEYS[1], 'status', 'attestation_id', 'reason')
if state[1] == 'issued' then return {'ok', state[2]} end
if state[1] == 'refused' then return {'err', state[3]} end
if state[1] then return {'err', 'cancelled'} end
redis.call('HSET', KEYS[1], 'status', 'issued', 'attestation_id', ARGV[1], 'saga_id', ARGV[2],
  'merchant', ARGV[3])
return {'ok', ARGV[1]}
"""

# KEYS: attestation hash.  ARGV: reason
# Records a refusal unless the effect id already has an outcome, which then stands.
REFUSE_ATTESTATION = """
local state = redis.call('HMGET', KEYS[1], 'status', 'attestation_id', 'reason')
if state[1] == 'issued' then return {'ok', state[2]} end
if state[1] == 'refused' then return {'err', state[3]} end
if state[1] then return {'err', 'cancelled'} end
redis.call('HSET', KEYS[1], 'status', 'refused', 'reason', ARGV[1])
return {'err', ARGV[1]}
"""

# KEYS: attestation hash
# A refused check issued nothing: nothing to revoke, and it stays refused.
REVOKE_ATTESTATION = """
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'refused' then return 0 end
redis.call('HSET', KEYS[1], 'status', 'revoked')
if status == 'issued' then return 1 end
return 0
"""
