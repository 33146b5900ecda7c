-- Read a page of an index with the records it points to, consistently.
-- KEYS: the index (sorted set), the data hash
-- ARGV: first and last rank (ZRANGE semantics)
-- Returns {total, record, record, ...}.
local total = redis.call('ZCARD', KEYS[1])
local out = {total}
local members = redis.call('ZRANGE', KEYS[1], ARGV[1], ARGV[2])
-- HMGET in slices: unpack is bounded by Lua's stack.
for from = 1, #members, 1000 do
  local to = math.min(from + 999, #members)
  local records = redis.call('HMGET', KEYS[2], unpack(members, from, to))
  for i = 1, #records do
    if records[i] then
      out[#out + 1] = records[i]
    end
  end
end
return out
