-- Give claimed jobs back to their queue untouched (worker shutting down): each goes to the
-- front of the queue, so it runs next, and no retry or recovery is counted. Only jobs whose
-- lease the caller holds move.
--
-- KEYS[1]  started registry
-- KEYS[2]  queue list
-- KEYS[3]  job hash key prefix of the queue (the job id is appended; same hash tag)
-- ARGV[1]  worker name (lease holder)
-- ARGV[2]  now (epoch seconds)
-- ARGV[3]  wake channel of the queue
-- ARGV[4..] pairs of job id and claim number
-- Returns: how many jobs went back.

local released = 0
for i = 4, #ARGV, 2 do
  local id = ARGV[i]
  local key = KEYS[3] .. id
  local holder = redis.call('HMGET', key, 'worker', 'claims')
  if holder[1] == ARGV[1] and holder[2] == ARGV[i + 1]
      and redis.call('ZREM', KEYS[1], id) == 1 then
    redis.call('HSET', key, 'status', 'queued', 'enqueued_at', ARGV[2])
    redis.call('RPUSH', KEYS[2], id)
    released = released + 1
  end
end
if released > 0 then
  redis.call('PUBLISH', ARGV[3], 'wake')
end
return released
