-- Remove a subscription and its entries in its topic's bucket, atomically;
-- the topic stops being tracked with its last subscription.
-- KEYS, ARGV: as sub_put.lua (without the record).
-- Returns -1 when there was no such subscription, else how many
-- subscriptions of the topic remain.
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then
  return -1
end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
local remaining = redis.call('ZCARD', KEYS[3])
if remaining == 0 then
  redis.call('ZREM', KEYS[4], ARGV[2])
end
return remaining
