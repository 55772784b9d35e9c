-- Forget published outbox entries of one shard, atomically: the hash payloads and their
-- enqueue-time index together, so the sweeper never sees an id without its payload.
-- KEYS: outbox hash, outbox:at zset, outbox:claimed zset (one shard).  ARGV: entry ids.
redis.call('HDEL', KEYS[1], unpack(ARGV))
redis.call('ZREM', KEYS[2], unpack(ARGV))
redis.call('ZREM', KEYS[3], unpack(ARGV))
return #ARGV
