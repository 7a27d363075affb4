-- Move due jobs from the scheduled registry onto the queue, in due order, if and only if
-- the caller still holds the queue's scheduler lock. One call moves one batch, as one
-- atomic step: a job is either still scheduled or already queued, never neither nor both.
-- An id whose job hash is gone (deleted by hand) is dropped rather than queued.
--
-- KEYS[1]  scheduled registry (zset, score: due time in epoch seconds)
-- KEYS[2]  queue list
-- KEYS[3]  scheduler lock of the queue (string holding the owner's token)
-- KEYS[4]  job hash key prefix of the queue (the job id is appended; same hash tag)
-- ARGV[1]  now (epoch seconds); only jobs due at or before it move
-- ARGV[2]  batch size
-- ARGV[3]  the caller's lock token
-- ARGV[4]  wake channel of the queue
-- Returns: {moved, next_due} where moved is -1 if the lock is not the caller's (nothing
-- moved), else how many ids left the registry; next_due is the earliest due time left
-- ("" if the registry is empty).

if redis.call('GET', KEYS[3]) ~= ARGV[3] then
  return {-1, ''}
end

local ids = redis.call('ZRANGE', KEYS[1], '-inf', ARGV[1], 'BYSCORE', 'LIMIT', 0, ARGV[2])
local taken = #ids
if taken > 0 then
  redis.call('ZREM', KEYS[1], unpack(ids))
  local queued = {}
  for _, id in ipairs(ids) do
    local key = KEYS[4] .. id
    if redis.call('EXISTS', key) == 1 then
      redis.call('HSET', key, 'status', 'queued', 'enqueued_at', ARGV[1])
      queued[#queued + 1] = id
    end
  end
  if #queued > 0 and redis.call('LPUSH', KEYS[2], unpack(queued)) == #queued then
    redis.call('PUBLISH', ARGV[4], 'wake')
  end
end

local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {taken, first[2] or ''}
