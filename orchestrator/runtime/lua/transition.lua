-- One saga transition, atomically: compare the version, write the state, move the status
-- index, set or clear the deadline, append history and outbox, start the retention clock.
-- Creation is the same write with expected version 0 ("must not exist yet").
-- Returns 1 when written, 0 when the stored version is not the expected one (nothing written).
--
-- KEYS: saga hash, history list, deadlines zset, outbox hash, outbox:at zset,
--       then one status zset per status (names in the same order in ARGV).
-- ARGV: expected version, new version, state JSON, saga id, new status, updated_at,
--       wake_at ('' clears it), retention seconds ('0': the status does not expire),
--       status-index trim cutoff, the status names,
--       history count, then one compact JSON array per entry,
--       outbox count, then per entry: id, payload.
local saga, history, deadlines, outbox, outbox_at = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]

if ARGV[1] == '0' then
  if redis.call('EXISTS', saga) == 1 then return 0 end
elseif redis.call('HGET', saga, 'version') ~= ARGV[1] then
  return 0  -- a missing saga reads as false, which never equals the expected version
end

local saga_id, status, updated_at, wake_at = ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local retention, cutoff = tonumber(ARGV[8]), ARGV[9]
local old = redis.call('HGET', saga, 'status')
local n_status = #KEYS - 5
local index
for i = 1, n_status do
  local name = ARGV[9 + i]
  if name == status then
    index = KEYS[5 + i]
  elseif name == old then
    redis.call('ZREM', KEYS[5 + i], saga_id)
  end
end
if not index then return redis.error_reply('unknown status ' .. status) end

-- HSET keeps an existing TTL, so a finished saga's retention clock is not reset
redis.call('HSET', saga, 'state', ARGV[3], 'version', ARGV[2], 'status', status)
redis.call('ZADD', index, updated_at, saga_id)
if wake_at == '' then
  redis.call('ZREM', deadlines, saga_id)
else
  redis.call('ZADD', deadlines, wake_at, saga_id)
end

local i = 10 + n_status
local n_history = tonumber(ARGV[i])
i = i + 1
for _ = 1, n_history do
  redis.call('RPUSH', history, ARGV[i])
  i = i + 1
end

local n_outbox = tonumber(ARGV[i])
i = i + 1
for _ = 1, n_outbox do
  redis.call('HSET', outbox, ARGV[i], ARGV[i + 1])
  redis.call('ZADD', outbox_at, updated_at, ARGV[i])
  i = i + 2
end

if retention > 0 then
  -- NX: the clock starts when the saga first finishes; later writes do not extend it
  redis.call('EXPIRE', saga, retention, 'NX')
  redis.call('EXPIRE', history, retention, 'NX')
  redis.call('ZREMRANGEBYSCORE', index, '-inf', '(' .. cutoff)
else
  -- a saga brought back from a finished status must not vanish mid-flight
  redis.call('PERSIST', saga)
  redis.call('PERSIST', history)
end
return 1
