-- Store a subscription and index it, atomically.
-- KEYS: data hash, global index, the login's index, the topic's index,
--       tracked topics (all sorted sets of score 0, ordered by member bytes)
-- ARGV: member (the subscription's sortable key), JSON record, topic
-- Returns 1 when the subscription is new, 0 when it replaced one.
local created = redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], 0, ARGV[1])
redis.call('ZADD', KEYS[3], 0, ARGV[1])
redis.call('ZADD', KEYS[4], 0, ARGV[1])
redis.call('ZADD', KEYS[5], 0, ARGV[3])
return created
