-- Put failed jobs back on their queue, as if newly queued: status "queued", retries and
-- lease recoveries counted afresh, the failure's TTL lifted. A job that is not failed is
-- left exactly as it is.
--
-- KEYS[1]  failed registry
-- KEYS[2]  queue list
-- KEYS[3]  job hash key prefix of the queue (the job id is appended; same hash tag)
-- KEYS[4]  run history key prefix of the queue (the job id is appended; same hash tag)
-- ARGV[1]  now (epoch seconds)
-- ARGV[2]  wake channel of the queue
-- ARGV[3..] job ids
-- Returns: one entry per id: "requeued", "missing" (no job hash; any stale
-- failed-registry entry is dropped), or the job's status when it is not failed.

local outcomes = {}
local was_empty = redis.call('LLEN', KEYS[2]) == 0
local pushed = false
for i = 3, #ARGV do
  local id = ARGV[i]
  local key = KEYS[3] .. id
  local status = redis.call('HGET', key, 'status')
  if not status then
    redis.call('ZREM', KEYS[1], id)
    outcomes[#outcomes + 1] = 'missing'
  elseif status ~= 'failed' then
    outcomes[#outcomes + 1] = status
  else
    redis.call('ZREM', KEYS[1], id)
    redis.call('PERSIST', key)
    redis.call('PERSIST', KEYS[4] .. id)
    redis.call('HDEL', key, 'recoveries', 'cancel_requested', 'ended_at')
    local retries = redis.call('HGET', key, 'retries')
    if retries then
      redis.call('HSET', key, 'retries_left', retries)
    end
    redis.call('HSET', key, 'status', 'queued', 'enqueued_at', ARGV[1])
    redis.call('HINCRBY', key, 'requeues', 1)
    redis.call('LPUSH', KEYS[2], id)
    pushed = true
    outcomes[#outcomes + 1] = 'requeued'
  end
end
if pushed and was_empty then
  redis.call('PUBLISH', ARGV[2], 'wake')
end
return outcomes
