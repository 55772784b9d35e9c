-- Append one entry to a saga's audit trail if its tail is still the one the entry was hashed
-- on (compare-and-append): two operators acting at once never fork the chain; the loser
-- reads the new tail and hashes again. The action counter is bumped in the same write, so
-- the metric counts exactly the entries written.
-- KEYS: audit list, audit head (string "seq:hash"), operator action counts (hash, per shard).
-- ARGV: expected head ("" for an empty trail), entry JSON, new head, counter field.
-- Returns 1 appended, 0 the tail moved (try again), -1 the head is gone but entries remain.
local head = redis.call('GET', KEYS[2])
if not head then
  if redis.call('LLEN', KEYS[1]) > 0 then
    return -1
  end
  head = ''
end
if head ~= ARGV[1] then
  return 0
end
redis.call('RPUSH', KEYS[1], ARGV[2])
redis.call('SET', KEYS[2], ARGV[3])
redis.call('HINCRBY', KEYS[3], ARGV[4], 1)
return 1
