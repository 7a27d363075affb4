-- Recover started jobs whose lease expired (their worker died or stalled): put each back
-- at the front of its queue (it already waited its turn once), or fail it as abandoned once
-- it has been recovered too often. A job whose cancel arrived while it ran ends canceled. Garbage in a job's counters or TTL counts as absent, so
-- that bad data never stops the script halfway.
--
-- KEYS[1]  started registry (zset, score: lease deadline in epoch seconds)
-- KEYS[2]  queue list
-- KEYS[3]  failed registry
-- KEYS[4]  job hash key prefix of the queue (the job id is appended; same hash tag)
-- KEYS[5]  canceled registry
-- ARGV[1]  now (epoch seconds)
-- ARGV[2]  batch size
-- ARGV[3]  most recoveries of one run before it is failed as abandoned
-- ARGV[4]  default TTL in seconds of a failed job
-- ARGV[5]  wake channel of the queue
-- ARGV[6]  prefix of the jobs' done channels (the job id is appended)
-- ARGV[7]  TTL in seconds of a canceled job
-- Returns: {requeued ids, abandoned ids, canceled ids}.

local ids = redis.call('ZRANGE', KEYS[1], '-inf', ARGV[1], 'BYSCORE', 'LIMIT', 0, ARGV[2])
local requeued, abandoned, canceled = {}, {}, {}

local function cancel(key, id)
  local ttl = tonumber(ARGV[7])
  redis.call('HSET', key, 'status', 'canceled', 'ended_at', ARGV[1])
  redis.call('ZADD', KEYS[5], tonumber(ARGV[1]) + ttl, id)
  redis.call('EXPIRE', key, ttl)
  redis.call('PUBLISH', ARGV[6] .. id, 'canceled')
  canceled[#canceled + 1] = id
end

local function abandon(key, id, count)
  local ttl = tonumber(redis.call('HGET', key, 'failure_ttl')) or tonumber(ARGV[4])
  local reason = 'abandoned: the worker holding this job stopped renewing its lease '
    .. count .. ' times (killed, out of memory or stalled)'
  redis.call('HSET', key, 'status', 'failed', 'error', reason, 'ended_at', ARGV[1])
  if ttl > 0 then
    redis.call('ZADD', KEYS[3], tonumber(ARGV[1]) + ttl, id)
    redis.call('EXPIRE', key, math.ceil(ttl))
  else
    redis.call('ZADD', KEYS[3], '+inf', id)
  end
  redis.call('PUBLISH', ARGV[6] .. id, 'failed')
  abandoned[#abandoned + 1] = id
end

for _, id in ipairs(ids) do
  redis.call('ZREM', KEYS[1], id)
  local key = KEYS[4] .. id
  if redis.call('TYPE', key)['ok'] == 'hash' then
    local count = math.floor(tonumber(redis.call('HGET', key, 'recoveries')) or 0) + 1
    redis.call('HSET', key, 'recoveries', count)
    if redis.call('HEXISTS', key, 'cancel_requested') == 1 then
      cancel(key, id)
    elseif count > tonumber(ARGV[3]) then
      abandon(key, id, count)
    else
      redis.call('HSET', key, 'status', 'queued', 'enqueued_at', ARGV[1])
      redis.call('RPUSH', KEYS[2], id)
      requeued[#requeued + 1] = id
    end
  end
end
if #requeued > 0 then
  redis.call('PUBLISH', ARGV[5], 'wake')
end
return {requeued, abandoned, canceled}
