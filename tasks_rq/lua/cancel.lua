-- Cancel a job: take it out of the queue or the scheduled registry and mark it canceled.
-- A started job keeps running; it is flagged so that no repetition or retry follows it.
--
-- KEYS[1]  job hash
-- KEYS[2]  queue list
-- KEYS[3]  scheduled registry
-- KEYS[4]  canceled registry
-- KEYS[5]  run history list of the job (expires with it)
-- ARGV[1]  job id
-- ARGV[2]  now (epoch seconds)
-- ARGV[3]  TTL in seconds of the canceled job (-1: keep forever)
-- ARGV[4]  done channel of the job
-- Returns: "canceled", "cancel_requested" (running), "missing", or "ended" (the job had
-- already finished, failed or been canceled: nothing changes).

local job, id = KEYS[1], ARGV[1]
local status = redis.call('HGET', job, 'status')
if not status then
  return 'missing'
end
if status == 'started' then
  redis.call('HSET', job, 'cancel_requested', '1')
  return 'cancel_requested'
end
if status == 'scheduled' then
  redis.call('ZREM', KEYS[3], id)
elseif status == 'queued' then
  redis.call('LREM', KEYS[2], 0, id)
else
  return 'ended'
end

redis.call('HSET', job, 'status', 'canceled', 'ended_at', ARGV[2])
local ttl = tonumber(ARGV[3])
if ttl > 0 then
  redis.call('ZADD', KEYS[4], tonumber(ARGV[2]) + ttl, id)
  redis.call('EXPIRE', job, ttl)
  redis.call('EXPIRE', KEYS[5], ttl)
else
  redis.call('ZADD', KEYS[4], '+inf', id)
end
redis.call('PUBLISH', ARGV[4], 'canceled')
return 'canceled'
