-- Record the end of one run of a job and decide what comes next, in one step: the next
-- repetition or retry (queued now or scheduled), or a final state with its TTL. Only the
-- worker holding the job's lease may finish it; anyone else gets "stale" and nothing moves.
--
-- KEYS[1]  job hash
-- KEYS[2]  started registry
-- KEYS[3]  queue list
-- KEYS[4]  scheduled registry
-- KEYS[5]  finished registry
-- KEYS[6]  failed registry
-- KEYS[7]  canceled registry
-- KEYS[8]  run history list of the job
-- ARGV[1]  job id
-- ARGV[2]  worker name (lease holder)
-- ARGV[3]  claim number (lease holder)
-- ARGV[4]  now (epoch seconds)
-- ARGV[5]  outcome: "ok" or "fail"
-- ARGV[6]  result payload ("ok") or formatted traceback ("fail")
-- ARGV[7]  next run: "" for none, else its due time (epoch seconds; <= now queues at once)
-- ARGV[8]  TTL in seconds of the ended job (-1: keep forever, 0: delete at once)
-- ARGV[9]  wake channel of the queue
-- ARGV[10] done channel of the job
-- ARGV[11] run record to keep in the history ("" for none)
-- ARGV[12] how many run records to keep
-- Returns: "stale", "queued", "scheduled", "finished", "failed" or "canceled".

local job, id, now = KEYS[1], ARGV[1], ARGV[4]
local holder = redis.call('HMGET', job, 'worker', 'claims', 'cancel_requested')
if holder[1] ~= ARGV[2] or holder[2] ~= ARGV[3] or not redis.call('ZSCORE', KEYS[2], id) then
  return 'stale'
end
redis.call('ZREM', KEYS[2], id)

local ok = ARGV[5] == 'ok'
if ok then
  redis.call('HSET', job, 'result', ARGV[6], 'ended_at', now)
  redis.call('HDEL', job, 'error')
  redis.call('HINCRBY', job, 'runs', 1)
else
  redis.call('HSET', job, 'error', ARGV[6], 'ended_at', now)
end
-- A history list this job has not written yet belongs to an ended job that had the same id.
if ARGV[11] ~= '' then
  if redis.call('HSETNX', job, 'history', '1') == 1 then
    redis.call('DEL', KEYS[8])
  end
  redis.call('LPUSH', KEYS[8], ARGV[11])
  redis.call('LTRIM', KEYS[8], 0, tonumber(ARGV[12]) - 1)
else
  redis.call('DEL', KEYS[8])
end

if ARGV[7] ~= '' and not holder[3] then
  if ok then
    redis.call('HINCRBY', job, 'repeats_left', -1)
    redis.call('HDEL', job, 'recoveries')
    local retries = redis.call('HGET', job, 'retries')
    if retries then
      redis.call('HSET', job, 'retries_left', retries)
    end
  else
    redis.call('HINCRBY', job, 'retries_left', -1)
  end
  if tonumber(ARGV[7]) <= tonumber(now) then
    redis.call('HSET', job, 'status', 'queued', 'enqueued_at', now)
    if redis.call('LPUSH', KEYS[3], id) == 1 then
      redis.call('PUBLISH', ARGV[9], 'wake')
    end
    return 'queued'
  end
  redis.call('HSET', job, 'status', 'scheduled', 'due', ARGV[7])
  redis.call('ZADD', KEYS[4], ARGV[7], id)
  if redis.call('ZRANGE', KEYS[4], 0, 0)[1] == id then
    redis.call('PUBLISH', ARGV[9], 'wake')
  end
  return 'scheduled'
end

local status = 'failed'
local registry = KEYS[6]
if holder[3] then
  status, registry = 'canceled', KEYS[7]
elseif ok then
  status, registry = 'finished', KEYS[5]
end
local ttl = tonumber(ARGV[8])
redis.call('HSET', job, 'status', status)
if ttl == 0 then
  redis.call('DEL', job, KEYS[8])
elseif ttl > 0 then
  redis.call('ZADD', registry, tonumber(now) + ttl, id)
  redis.call('EXPIRE', job, ttl)
  redis.call('EXPIRE', KEYS[8], ttl)
else
  redis.call('ZADD', registry, '+inf', id)
end
redis.call('PUBLISH', ARGV[10], status)
return status
