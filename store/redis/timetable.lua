-- The leased-job timetable (store.Timetable), as Lua functions that the
-- timetable's own scripts and the webhook delivery scripts start with. One
-- bucket of a timetable is four keys with the same hash tag, passed first:
--
-- KEYS[1]  due    sorted set: job -> due time (Unix ms); while leased, the
--                 lease's end
-- KEYS[2]  lease  hash: job -> "token|until"
-- KEYS[3]  again  hash: job -> earliest time asked for while leased
-- KEYS[4]  hold   hash: job -> end of a back-off (see Release)
--
-- Schedule modes: 0 earlier, 1 if absent, 2 if present, 3 override (as
-- store.ScheduleMode).

local tt_due, tt_lease, tt_again, tt_hold = KEYS[1], KEYS[2], KEYS[3], KEYS[4]

-- tt_schedule adds or moves a job; 1 when it existed.
local function tt_schedule(job, at, mode)
  local cur = redis.call('ZSCORE', tt_due, job)
  if not cur then
    if mode ~= 2 then redis.call('ZADD', tt_due, at, job) end
    return 0
  end
  if mode == 1 then return 1 end
  if mode ~= 3 then
    local h = redis.call('HGET', tt_hold, job)
    if h and tonumber(h) > at then at = tonumber(h) end
  end
  if redis.call('HEXISTS', tt_lease, job) == 1 then
    local a = redis.call('HGET', tt_again, job)
    if not a or at < tonumber(a) then redis.call('HSET', tt_again, job, at) end
  elseif at < tonumber(cur) then
    redis.call('ZADD', tt_due, at, job)
  end
  return 1
end

-- tt_remove forgets a job and its claim.
local function tt_remove(job)
  redis.call('ZREM', tt_due, job)
  redis.call('HDEL', tt_lease, job)
  redis.call('HDEL', tt_again, job)
  redis.call('HDEL', tt_hold, job)
end

-- tt_claim leases up to max jobs due at now, earliest first, looking at no
-- more than max+scan due entries (those still leased are skipped). accept,
-- when given, is asked about each job before it is claimed; a job it
-- refuses is removed. Returns a flat list of (job, retaken, due).
local function tt_claim(now, max, untilMs, token, scan, accept)
  local due = redis.call('ZRANGE', tt_due, '-inf', now, 'BYSCORE', 'LIMIT', 0, max + scan, 'WITHSCORES')
  local out = {}
  local n = 0
  for i = 1, #due, 2 do
    if n >= max then break end
    local job = due[i]
    local free, retaken = true, 0
    local l = redis.call('HGET', tt_lease, job)
    if l then
      local u = tonumber(string.match(l, '|(%d+)$'))
      if u and u > now then free = false else retaken = 1 end
    end
    if free then
      if accept and not accept(job) then
        tt_remove(job)
      else
        redis.call('HSET', tt_lease, job, token .. '|' .. untilMs)
        redis.call('HDEL', tt_again, job)
        redis.call('HDEL', tt_hold, job)
        redis.call('ZADD', tt_due, untilMs, job)
        n = n + 1
        out[#out + 1] = job
        out[#out + 1] = retaken
        out[#out + 1] = due[i + 1]
      end
    end
  end
  return out
end

-- tt_held reports whether the job's lease is held with token.
local function tt_held(job, token)
  local l = redis.call('HGET', tt_lease, job)
  return l ~= false and string.match(l, '^([^|]*)|') == token
end

-- tt_release ends a held claim (check tt_held first) and schedules the job
-- at nxt (nil: remove it), or earlier when asked for while claimed unless
-- backing off.
local function tt_release(job, nxt, backoff)
  redis.call('HDEL', tt_lease, job)
  local a = redis.call('HGET', tt_again, job)
  redis.call('HDEL', tt_again, job)
  if nxt and backoff then
    redis.call('HSET', tt_hold, job, nxt)
  elseif a then
    a = tonumber(a)
    if not nxt or a < nxt then nxt = a end
  end
  if nxt then
    redis.call('ZADD', tt_due, nxt, job)
  else
    tt_remove(job)
  end
end

-- tt_stats counts jobs, jobs due at now and leases running at now.
local function tt_stats(now)
  local held = 0
  for _, l in ipairs(redis.call('HVALS', tt_lease)) do
    local u = tonumber(string.match(l, '|(%d+)$'))
    if u and u > now then held = held + 1 end
  end
  return {redis.call('ZCARD', tt_due), redis.call('ZCOUNT', tt_due, '-inf', now), held}
end
