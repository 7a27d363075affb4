-- Store new jobs and put each on its queue (now) or in the scheduled registry (later).
-- All jobs of one call belong to one queue. If any id is still pending and the mode is
-- "raise", nothing at all is written.
--
-- KEYS[1]  queue list
-- KEYS[2]  scheduled registry (zset, score: due time in epoch seconds)
-- KEYS[3]  finished registry   \
-- KEYS[4]  failed registry      > an ended job with a reused id is cleared from these
-- KEYS[5]  canceled registry   /
-- KEYS[5+i] job hash of job i
-- ARGV[1]  conflict mode: "new" (ids freshly generated: no check), "raise" or "keep"
-- ARGV[2]  wake channel of the queue
-- ARGV[3]  number of jobs N
-- then per job: id, due ("" = queue now), pair count F, then F field/value pairs
-- Returns: a list with one entry per job: "ok" (written) or the pending job's status
-- (not written). In "raise" mode, a list containing any non-"ok" entry means nothing was
-- written.

local mode = ARGV[1]
local count = tonumber(ARGV[3])
local pending = {queued = true, scheduled = true, started = true}

local jobs = {}
local pos = 4
for i = 1, count do
  local nvalues = 2 * tonumber(ARGV[pos + 2])
  jobs[i] = {id = ARGV[pos], due = ARGV[pos + 1], first = pos + 3, last = pos + 2 + nvalues}
  pos = pos + 3 + nvalues
end

local results = {}
local has_conflict = false
for i = 1, count do
  results[i] = 'ok'
  if mode ~= 'new' then
    local status = redis.call('HGET', KEYS[5 + i], 'status')
    if status and pending[status] then
      results[i] = status
      has_conflict = true
    end
  end
end
if has_conflict and mode == 'raise' then
  return results
end

local was_empty = false
local scheduled_first = false
for i = 1, count do
  if results[i] == 'ok' then
    local job = jobs[i]
    local key = KEYS[5 + i]
    if mode ~= 'new' and redis.call('EXISTS', key) == 1 then
      redis.call('DEL', key)
      redis.call('ZREM', KEYS[3], job.id)
      redis.call('ZREM', KEYS[4], job.id)
      redis.call('ZREM', KEYS[5], job.id)
    end
    redis.call('HSET', key, unpack(ARGV, job.first, job.last))
    if job.due == '' then
      if redis.call('LPUSH', KEYS[1], job.id) == 1 then
        was_empty = true
      end
    else
      redis.call('ZADD', KEYS[2], job.due, job.id)
      if redis.call('ZRANGE', KEYS[2], 0, 0)[1] == job.id then
        scheduled_first = true
      end
    end
  end
end

if was_empty or scheduled_first then
  redis.call('PUBLISH', ARGV[2], 'wake')
end
return results
