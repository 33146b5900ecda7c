-- Store a subscription and index it in its topic's bucket, atomically.
-- KEYS: data hash, the bucket's index, the topic's index, the bucket's
--       tracked topics (sorted sets of score 0, ordered by member bytes)
-- ARGV: member (the subscription's sortable key), JSON record, topic
-- Returns 1 when the subscription is new, 0 when it replaced one.
local created = redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], 0, ARGV[1])
redis.call('ZADD', KEYS[3], 0, ARGV[1])
redis.call('ZADD', KEYS[4], 0, ARGV[3])
return created
