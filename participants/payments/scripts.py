"""The Lua scripts behind every state change of the payment services: each change is atomic.

Scripts never build key names: every key they touch arrives in KEYS, so they stay valid on
Redis Cluster. Where a key is only known after reading (the account behind a hold), the
caller reads first and the script re-checks, answering ``retry`` if the read went stale.
"""

from __future__ import annotations

# KEYS: hold, void marker, account, holds index
# ARGV: hold_id, effect_id, saga_id, account_id, amount, currency
AUTHORIZE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return {'ok', 'exists'} end
if redis.call('EXISTS', KEYS[2]) == 1 then return {'err', 'cancelled'} end
local acct = redis.call('HMGET', KEYS[3], 'balance', 'currency')
if not acct[1] then return {'err', 'unknown_account'} end
if acct[2] ~= ARGV[6] then return {'err', 'currency_mismatch'} end
local amount = tonumber(ARGV[5])
if tonumber(acct[1]) < amount then return {'err', 'insufficient_funds'} end
redis.call('HINCRBY', KEYS[3], 'balance', -amount)
redis.call('HSET', KEYS[1], 'hold_id', ARGV[1], 'effect_id', ARGV[2], 'saga_id', ARGV[3],
  'account', ARGV[4], 'amount', ARGV[5], 'currency', ARGV[6], 'status', 'held')
redis.call('SADD', KEYS[4], ARGV[1])
return {'ok', 'held'}
"""

# KEYS: hold, void marker, account (as read before; "" account id when there was no hold)
# ARGV: account_id, marker ttl seconds
VOID = """
local hold = redis.call('HMGET', KEYS[1], 'status', 'account', 'amount')
if not hold[1] then
  redis.call('SET', KEYS[2], '1', 'EX', ARGV[2])
  return 'absent'
end
if hold[1] ~= 'held' then return 'already_' .. hold[1] end
if hold[2] ~= ARGV[1] then return 'retry' end
redis.call('HINCRBY', KEYS[3], 'balance', tonumber(hold[3]))
redis.call('HSET', KEYS[1], 'status', 'voided')
return 'released'
"""

# KEYS: capture, hold, merchant, captures index, captures-per-saga hash
# ARGV: capture_id, saga_id, hold_id, merchant_id, amount, currency
CAPTURE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return {'ok', 'exists'} end
local hold = redis.call('HMGET', KEYS[2], 'status', 'amount', 'currency', 'saga_id')
if hold[1] ~= 'held' or hold[2] ~= ARGV[5] or hold[3] ~= ARGV[6] or hold[4] ~= ARGV[2] then
  return {'err', 'hold_not_capturable'}
end
local merchant = redis.call('HMGET', KEYS[3], 'open', 'currency')
if merchant[1] ~= '1' then return {'err', 'merchant_closed'} end
if merchant[2] ~= ARGV[6] then return {'err', 'currency_mismatch'} end
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
local state = redis.call('HMGET', KEYS[1], 'status', 'score')
if state[1] == 'assessed' then return {'ok', state[2]} end
if state[1] then return {'err', 'cancelled'} end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[4])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])
redis.call('HSET', KEYS[1], 'status', 'assessed', 'score', ARGV[1], 'exposure', KEYS[2],
  'member', ARGV[2])
return {'ok', ARGV[1]}
"""

# KEYS: assessment hash, exposure sorted set (as read before; the hash itself when none)
RELEASE_RISK = """
local state = redis.call('HMGET', KEYS[1], 'status', 'exposure', 'member')
if not state[1] then
  redis.call('HSET', KEYS[1], 'status', 'released')
  return 'absent'
end
if state[1] ~= 'assessed' then return 'already_released' end
if state[2] ~= KEYS[2] then return 'retry' end
redis.call('ZREM', KEYS[2], state[3])
redis.call('HSET', KEYS[1], 'status', 'released')
return 'released'
"""

# KEYS: attestation hash.  ARGV: attestation_id, saga_id, merchant_id
ISSUE_ATTESTATION = """
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'issued' then return {'ok', redis.call('HGET', KEYS[1], 'attestation_id')} end
if status then return {'err', 'cancelled'} end
redis.call('HSET', KEYS[1], 'status', 'issued', 'attestation_id', ARGV[1], 'saga_id', ARGV[2],
  'merchant', ARGV[3])
return {'ok', ARGV[1]}
"""

# KEYS: attestation hash
REVOKE_ATTESTATION = """
local status = redis.call('HGET', KEYS[1], 'status')
redis.call('HSET', KEYS[1], 'status', 'revoked')
if status == 'issued' then return 1 end
return 0
"""
