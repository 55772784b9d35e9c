-- Claim outbox entries of one shard for one sweeper, so several replicas sweeping at once
-- publish each entry once, not once per replica. A claim lapses at its time: an entry whose
-- sweeper died is swept again. The enqueue-time index is left alone (the lag it measures
-- stays true while the broker is away).
-- KEYS: outbox:claimed zset (one shard).  ARGV: now, claim until, entry ids.
local now = tonumber(ARGV[1])
local claimed = {}
for i = 3, #ARGV do
  local until_ = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if not until_ or tonumber(until_) <= now then
    redis.call('ZADD', KEYS[1], ARGV[2], ARGV[i])
    claimed[#claimed + 1] = ARGV[i]
  end
end
return claimed
