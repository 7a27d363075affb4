-- Record the end of one run of each of a batch of jobs of one queue, and decide for each
-- what comes next, in one step: the next repetition or retry (queued now or scheduled), or
-- a final state with its TTL. Only the worker holding a job's lease may finish it; for
-- anyone else that job gets "stale" and nothing of it moves.
--
-- KEYS[1]  started registry
-- KEYS[2]  queue list
-- KEYS[3]  scheduled registry
-- KEYS[4]  finished registry
-- KEYS[5]  failed registry
-- KEYS[6]  canceled registry
-- KEYS[5+2i], KEYS[6+2i]  job hash and run history list of job i (i = 1..N)
-- ARGV[1]  worker name (lease holder)
-- ARGV[2]  wake channel of the queue
-- ARGV[3]  how many run records to keep
-- ARGV[4]  prefix of the jobs' done channels (the job id is appended)
-- ARGV[5]  number of jobs N
-- then per job, 8 values:
--   id; claim number (lease holder); now (epoch seconds); outcome "ok" or "fail";
--   result payload ("ok") or formatted traceback ("fail");
--   next run: "" for none, else its due time (epoch seconds; <= now queues at once);
--   TTL in seconds of the ended job (-1: keep forever, 0: delete at once);
--   run record to keep in the history ("" for none)
-- Returns: per job, "stale", "queued", "scheduled", "finished", "failed" or "canceled".

-- Counters are read with tonumber and written with HSET, never HINCRBY: a garbage or huge
-- value must not stop the script halfway through a batch (Redis keeps what a failed script
-- already wrote).
local started, queue, scheduled = KEYS[1], KEYS[2], KEYS[3]
local worker, wake, keep, done_prefix = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]

local function record_run(job, history, ok, payload, now, record)
  if ok then
    redis.call('HSET', job, 'result', payload, 'ended_at', now)
    redis.call('HDEL', job, 'error')
    redis.call('HSET', job, 'runs', (tonumber(redis.call('HGET', job, 'runs')) or 0) + 1)
  else
    redis.call('HSET', job, 'error', payload, 'ended_at', now)
  end
  -- A history list this job has not written yet belongs to an ended job with the same id.
  if record ~= '' then
    if redis.call('HSETNX', job, 'history', '1') == 1 then
      redis.call('DEL', history)
    end
    redis.call('LPUSH', history, record)
    redis.call('LTRIM', history, 0, keep - 1)
  else
    redis.call('DEL', history)
  end
end

local function run_again(job, id, ok, now, next_due)
  if ok then
    local left = tonumber(redis.call('HGET', job, 'repeats_left')) or 1
    redis.call('HSET', job, 'repeats_left', math.max(0, left - 1))
    redis.call('HDEL', job, 'recoveries')
    local retries = redis.call('HGET', job, 'retries')
    if retries then
      redis.call('HSET', job, 'retries_left', retries)
    end
  else
    local left = tonumber(redis.call('HGET', job, 'retries_left')) or 1
    redis.call('HSET', job, 'retries_left', math.max(0, left - 1))
  end
  if tonumber(next_due) <= tonumber(now) then
    redis.call('HSET', job, 'status', 'queued', 'enqueued_at', now)
    if redis.call('LPUSH', queue, id) == 1 then
      redis.call('PUBLISH', wake, 'wake')
    end
    return 'queued'
  end
  redis.call('HSET', job, 'status', 'scheduled', 'due', next_due)
  redis.call('ZADD', scheduled, next_due, id)
  if redis.call('ZRANGE', scheduled, 0, 0)[1] == id then
    redis.call('PUBLISH', wake, 'wake')
  end
  return 'scheduled'
end

local function end_job(job, history, id, ok, canceled, now, ttl)
  local status, registry = 'failed', KEYS[5]
  if canceled then
    status, registry = 'canceled', KEYS[6]
  elseif ok then
    status, registry = 'finished', KEYS[4]
  end
  redis.call('HSET', job, 'status', status)
  if ttl == 0 then
    redis.call('DEL', job, history)
  elseif ttl > 0 then
    redis.call('ZADD', registry, tonumber(now) + ttl, id)
    redis.call('EXPIRE', job, ttl)
    redis.call('EXPIRE', history, ttl)
  else
    redis.call('ZADD', registry, '+inf', id)
  end
  redis.call('PUBLISH', done_prefix .. id, status)
  return status
end

local results = {}
for i = 1, tonumber(ARGV[5]) do
  local a = 5 + (i - 1) * 8
  local id, claims, now, ok = ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4] == 'ok'
  local job, history = KEYS[5 + 2 * i], KEYS[6 + 2 * i]
  local holder = redis.call('HMGET', job, 'worker', 'claims', 'cancel_requested')
  if holder[1] ~= worker or holder[2] ~= claims or not redis.call('ZSCORE', started, id) then
    results[i] = 'stale'
  else
    redis.call('ZREM', started, id)
    record_run(job, history, ok, ARGV[a + 5], now, ARGV[a + 8])
    local next_due = ARGV[a + 6]
    if next_due ~= '' and not holder[3] then
      results[i] = run_again(job, id, ok, now, next_due)
    else
      results[i] = end_job(job, history, id, ok, holder[3], now, tonumber(ARGV[a + 7]))
    end
  end
end
return results
