-- Append items to one topic, atomically: dedup, assign cursors, store, trim,
-- announce. Redis runs a script without interleaving other commands, and the
-- PUBLISH reaches subscribers only after the script has finished, so a
-- notification never precedes the data it announces.
--
-- KEYS[1]  fg:{t}:items  stream; entry id "<cursor>-0", field "d" = item
-- KEYS[2]  fg:{t}:ids    hash:  "p"..<id+hash digest> -> cursor (dedup)
--                               "i"..<entry id>       -> newest cursor
--                               "#scan"                -> pruning position
-- KEYS[3]  fg:{t}:seq    the topic's newest cursor
-- KEYS[4]  fg:{t}:meta   the topic's state (JSON), sent with the announcement
-- KEYS[5]  fg:{t}:ann    (DEFER) the newest cursor announced
-- ARGV[1]  retention (items kept), ARGV[2] dedup memory (in stored items),
-- ARGV[3]  live channel,
-- ARGV[4]  PUBLISH, SPUBLISH (Redis Cluster), or DEFER: the caller
--          announces once WAIT confirms the append on the replicas (an
--          append that is never confirmed is never announced, so no stream
--          sees an item a failover may take back, whose cursor a later item
--          would then reuse),
-- ARGV[5]  live payload header (topic),
-- ARGV[6..] per item: dedup field, id field, encoded item.
--
-- Returns {} when nothing was stored, else {first cursor, i1, i2, ...}: the
-- 1-based positions of the stored items among those given, which got the
-- cursors first, first+1, ... With DEFER it returns {newest cursor, payload,
-- first cursor, i1, ...}: the payload announces every item after the newest
-- announced one ("" when there is none), newly stored or left unannounced
-- by an earlier append whose confirmation failed; the caller publishes it
-- and records the newest cursor as announced. A DEFER append that stores
-- nothing still writes (the counter, unchanged), so that WAIT covers the
-- earlier append that stored these items.
--
-- Everything that can fail is checked before the first write: Redis does
-- not roll a script back, so a failure after a write would leave half an
-- append behind.

local retention = tonumber(ARGV[1])
local keep = tonumber(ARGV[2])
local nargs = #ARGV
local publish = ARGV[4]
local defer = publish == 'DEFER'
if not retention or retention < 1 or not keep or keep < 1 or (nargs - 5) % 3 ~= 0 or
   (publish ~= 'PUBLISH' and publish ~= 'SPUBLISH' and not defer) then
  return redis.error_reply('ERR feedgate append: bad arguments')
end
local kind = redis.call('TYPE', KEYS[1]).ok
if kind ~= 'none' and kind ~= 'stream' then
  return redis.error_reply('ERR feedgate append: ' .. KEYS[1] .. ' is not a stream')
end

local seq = redis.call('GET', KEYS[3])
if seq then
  seq = tonumber(seq)
else
  -- A missing counter with an existing stream means the counter was lost
  -- (deleted or evicted): continue after the stream's last id so cursors
  -- never repeat.
  seq = 0
  if redis.call('EXISTS', KEYS[1]) == 1 then
    local info = redis.call('XINFO', 'STREAM', KEYS[1])
    for j = 1, #info, 2 do
      if info[j] == 'last-generated-id' then
        seq = tonumber(string.match(info[j + 1], '^(%d+)')) or 0
      end
    end
  end
end
if not seq then
  return redis.error_reply('ERR feedgate append: ' .. KEYS[3] .. ' is not a number')
end

local first = seq + 1
local stored = {first}
-- The topic's state as it is now, so that the announcement carries the
-- state of this very append: a consumer reads nothing else.
local meta = redis.call('GET', KEYS[4]) or ''
local frames = {}
for i = 6, nargs, 3 do
  if redis.call('HEXISTS', KEYS[2], ARGV[i]) == 0 then
    seq = seq + 1
    local cursor = string.format('%d', seq)
    redis.call('XADD', KEYS[1], cursor .. '-0', 'd', ARGV[i + 2])
    redis.call('HSET', KEYS[2], ARGV[i], cursor, ARGV[i + 1], cursor)
    stored[#stored + 1] = (i - 3) / 3
    frames[#frames + 1] = cursor .. ':' .. string.len(ARGV[i + 2]) .. ':' .. ARGV[i + 2]
  end
end
local announce = ARGV[5] .. string.len(meta) .. ':' .. meta
if #stored == 1 then
  if not defer then
    return {}
  end
  if redis.call('EXISTS', KEYS[3]) == 1 then
    redis.call('SET', KEYS[3], string.format('%d', seq))
  end
else
  redis.call('SET', KEYS[3], string.format('%d', seq))
  redis.call('XTRIM', KEYS[1], 'MAXLEN', retention)
  if not defer then
    redis.call(publish, ARGV[3], announce .. table.concat(frames))
  end
end

local out = stored
if defer then
  -- Announce everything after the newest announced cursor: what this
  -- append stored, and what earlier appends stored but could not announce
  -- (their confirmation failed), which is still in the stream.
  local ann = tonumber(redis.call('GET', KEYS[5]) or '')
  if not ann then
    ann = first - 1
  end
  local older = {}
  if ann < first - 1 then
    local from, to = string.format('%d', ann + 1), string.format('%d', first - 1)
    for _, e in ipairs(redis.call('XRANGE', KEYS[1], from, to, 'COUNT', retention)) do
      local cursor = string.match(e[1], '^(%d+)')
      local data = e[2][2]
      older[#older + 1] = cursor .. ':' .. string.len(data) .. ':' .. data
    end
  end
  local payload = ''
  if #older > 0 or #frames > 0 then
    payload = announce .. table.concat(older) .. table.concat(frames)
  end
  out = {seq, payload}
  for _, v in ipairs(stored) do
    out[#out + 1] = v
  end
end

-- Dedup memory is bounded: once the hash holds well over what the last
-- `keep` items need (two fields each), every append sweeps a slice of it
-- and forgets fields older than `keep` items.
if redis.call('HLEN', KEYS[2]) > 4 * keep + 1 then
  local pos = redis.call('HGET', KEYS[2], '#scan') or '0'
  local page = redis.call('HSCAN', KEYS[2], pos, 'COUNT', 256)
  local oldest = seq - keep
  local fields = page[2]
  for j = 1, #fields, 2 do
    local c = tonumber(fields[j + 1])
    if fields[j] ~= '#scan' and c and c <= oldest then
      redis.call('HDEL', KEYS[2], fields[j])
    end
  end
  redis.call('HSET', KEYS[2], '#scan', page[1])
end

return out
