"""The Lua scripts behind every state change of the checkout participants: each is atomic.

Scripts never build key names: every key arrives in KEYS (all of one participant under its
hash tag, see ``examples.checkout.keys``). Where a key is only known after reading (the sku
behind a reservation, the customer behind a hold), the caller reads first and the script
re-checks, answering ``retry`` if the read went stale.

Each effect id has one outcome: a refusal is recorded under the key a success would use
(status ``refused``, kept ``ttl`` seconds, never indexed), so a repeat gets the same answer;
a compensation that finds nothing leaves status ``cancelled`` there, so a late forward
command is refused and never applies.
"""

from __future__ import annotations

# KEYS: reservation, stock of the sku, reservations index
# ARGV: reservation_id, effect_id, saga_id, order_id, sku, quantity, ttl seconds
RESERVE = """
local state = redis.call('HMGET', KEYS[1], 'status', 'reason')
if state[1] == 'refused' then return {'err', state[2]} end
if state[1] == 'cancelled' then return {'err', 'cancelled'} end
if state[1] then return {'ok', state[1]} end
local function record(status, reason)
  redis.call('HSET', KEYS[1], 'reservation_id', ARGV[1], 'effect_id', ARGV[2],
    'saga_id', ARGV[3], 'order_id', ARGV[4], 'sku', ARGV[5], 'quantity', ARGV[6],
    'status', status, 'reason', reason)
end
local available = redis.call('HGET', KEYS[2], 'available')
local reason = ''
if not available then reason = 'unknown_sku'
elseif tonumber(available) < tonumber(ARGV[6]) then reason = 'out_of_stock' end
if reason ~= '' then
  record('refused', reason)
  redis.call('EXPIRE', KEYS[1], ARGV[7])
  return {'err', reason}
end
redis.call('HINCRBY', KEYS[2], 'available', -tonumber(ARGV[6]))
record('reserved', '')
redis.call('SADD', KEYS[3], ARGV[2])
return {'ok', 'reserved'}
"""

# KEYS: reservation, stock of its sku (as read before; the reservation key when none)
# ARGV: sku as read ("" when none), forward effect_id, saga_id, ttl seconds, this release's
#       effect id (a re-run of the release that released answers "released" again)
RELEASE = """
local r = redis.call('HMGET', KEYS[1], 'status', 'sku', 'quantity', 'released_by')
if not r[1] then
  redis.call('HSET', KEYS[1], 'status', 'cancelled', 'effect_id', ARGV[2], 'saga_id', ARGV[3])
  redis.call('EXPIRE', KEYS[1], ARGV[4])
  return 'absent'
end
if r[1] == 'released' and r[4] == ARGV[5] then return 'released' end
if r[1] ~= 'reserved' then return 'already_' .. r[1] end
if r[2] ~= ARGV[1] then return 'retry' end
redis.call('HINCRBY', KEYS[2], 'available', tonumber(r[3]))
redis.call('HSET', KEYS[1], 'status', 'released', 'released_by', ARGV[5])
return 'released'
"""

# KEYS: stock of the sku, skus index.  ARGV: sku, quantity
# An existing sku is left alone: seeding twice never creates stock.
SEED_STOCK = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'available', ARGV[2], 'seeded', ARGV[2])
redis.call('SADD', KEYS[2], ARGV[1])
return 1
"""

# KEYS: hold, account, holds index
# ARGV: hold_id, effect_id, saga_id, customer_id, amount, currency, ttl seconds
AUTHORIZE = """
local state = redis.call('HMGET', KEYS[1], 'status', 'reason')
if state[1] == 'refused' then return {'err', state[2]} end
if state[1] == 'cancelled' then return {'err', 'cancelled'} end
if state[1] then return {'ok', state[1]} end
local function record(status, reason)
  redis.call('HSET', KEYS[1], 'hold_id', ARGV[1], 'effect_id', ARGV[2], 'saga_id', ARGV[3],
    'customer_id', ARGV[4], 'amount', ARGV[5], 'currency', ARGV[6], 'status', status,
    'reason', reason)
end
local acct = redis.call('HMGET', KEYS[2], 'balance', 'currency')
local amount = tonumber(ARGV[5])
local reason = ''
if not acct[1] then reason = 'unknown_account'
elseif acct[2] ~= ARGV[6] then reason = 'currency_mismatch'
elseif tonumber(acct[1]) < amount then reason = 'insufficient_funds' end
if reason ~= '' then
  record('refused', reason)
  redis.call('EXPIRE', KEYS[1], ARGV[7])
  return {'err', reason}
end
redis.call('HINCRBY', KEYS[2], 'balance', -amount)
redis.call('HINCRBY', KEYS[2], 'held', amount)
record('held', '')
redis.call('SADD', KEYS[3], ARGV[1])
return {'ok', 'held'}
"""

# KEYS: hold, account of its customer (as read before; the hold key when none)
# ARGV: customer_id as read ("" when none), hold_id, forward effect_id, saga_id, ttl seconds,
#       this void's effect id (a re-run of the void that released answers "released" again)
VOID = """
local h = redis.call('HMGET', KEYS[1], 'status', 'customer_id', 'amount', 'voided_by')
if not h[1] then
  redis.call('HSET', KEYS[1], 'status', 'cancelled', 'hold_id', ARGV[2], 'effect_id', ARGV[3],
    'saga_id', ARGV[4])
  redis.call('EXPIRE', KEYS[1], ARGV[5])
  return 'absent'
end
if h[1] == 'voided' and h[4] == ARGV[6] then return 'released' end
if h[1] ~= 'held' then return 'already_' .. h[1] end
if h[2] ~= ARGV[1] then return 'retry' end
redis.call('HINCRBY', KEYS[2], 'balance', tonumber(h[3]))
redis.call('HINCRBY', KEYS[2], 'held', -tonumber(h[3]))
redis.call('HSET', KEYS[1], 'status', 'voided', 'voided_by', ARGV[6])
return 'released'
"""

# KEYS: capture, hold, account of the hold's customer (as read before; the hold key when
#       none), captures index, revenue, captures-per-saga
# ARGV: capture_id, effect_id, saga_id, hold_id, amount, currency, ttl seconds, customer as read
# Checked against the records, not the command: the hold must be this saga's, held, and of
# this amount and currency.
CAPTURE = """
local state = redis.call('HMGET', KEYS[1], 'status', 'reason')
if state[1] == 'refused' then return {'err', state[2]} end
if state[1] then return {'ok', state[1]} end
local h = redis.call('HMGET', KEYS[2], 'status', 'amount', 'currency', 'saga_id', 'customer_id')
if h[1] ~= 'held' or h[2] ~= ARGV[5] or h[3] ~= ARGV[6] or h[4] ~= ARGV[3] then
  redis.call('HSET', KEYS[1], 'capture_id', ARGV[1], 'effect_id', ARGV[2], 'saga_id', ARGV[3],
    'hold_id', ARGV[4], 'amount', ARGV[5], 'currency', ARGV[6], 'status', 'refused',
    'reason', 'hold_not_capturable')
  redis.call('EXPIRE', KEYS[1], ARGV[7])
  return {'err', 'hold_not_capturable'}
end
if h[5] ~= ARGV[8] then return {'retry', ''} end
local amount = tonumber(ARGV[5])
redis.call('HINCRBY', KEYS[3], 'held', -amount)
redis.call('HINCRBY', KEYS[3], 'captured', amount)
redis.call('HINCRBY', KEYS[5], ARGV[6], amount)
redis.call('HSET', KEYS[2], 'status', 'captured')
redis.call('HSET', KEYS[1], 'capture_id', ARGV[1], 'effect_id', ARGV[2], 'saga_id', ARGV[3],
  'hold_id', ARGV[4], 'amount', ARGV[5], 'currency', ARGV[6], 'status', 'captured',
  'reason', '')
redis.call('SADD', KEYS[4], ARGV[1])
redis.call('HINCRBY', KEYS[6], ARGV[3], 1)
return {'ok', 'captured'}
"""

# KEYS: account, accounts index, totals.  ARGV: customer_id, balance, currency
# An existing account is left alone: seeding twice never creates money.
SEED_ACCOUNT = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'balance', ARGV[2], 'held', 0, 'captured', 0, 'currency', ARGV[3])
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('HINCRBY', KEYS[3], ARGV[3], tonumber(ARGV[2]))
return 1
"""

# KEYS: confirmation of the order, confirmations index
# ARGV: message_id, order_id, saga_id, effect_id
# The first confirmation of an order is the only one: any later effect gets its message id.
CONFIRM = """
local sent = redis.call('HGET', KEYS[1], 'message_id')
if sent then return sent end
redis.call('HSET', KEYS[1], 'message_id', ARGV[1], 'order_id', ARGV[2], 'saga_id', ARGV[3],
  'effect_id', ARGV[4])
redis.call('SADD', KEYS[2], ARGV[2])
return ARGV[1]
"""
