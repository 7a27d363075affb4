-- Claim up to N queued jobs for a worker: each moves from the queue to the started
-- registry with a lease deadline, in one step. Ids whose job hash is gone (deleted while
-- queued) are dropped.
--
-- KEYS[1]  queue list
-- KEYS[2]  started registry (zset, score: lease deadline in epoch seconds)
-- KEYS[3]  job hash key prefix of the queue (the job id is appended; same hash tag)
-- ARGV[1]  now (epoch seconds)
-- ARGV[2]  lease deadline (epoch seconds)
-- ARGV[3]  most jobs to claim
-- ARGV[4]  worker name
-- Returns: a flat list id1, fields1, id2, fields2, ... where fields is the job's HGETALL.

local ids = redis.call('RPOP', KEYS[1], ARGV[3])
if not ids then
  return {}
end

local out = {}
for _, id in ipairs(ids) do
  local key = KEYS[3] .. id
  if redis.call('EXISTS', key) == 1 then
    redis.call('HINCRBY', key, 'claims', 1)
    redis.call('HSET', key, 'status', 'started', 'started_at', ARGV[1], 'worker', ARGV[4])
    redis.call('ZADD', KEYS[2], ARGV[2], id)
    out[#out + 1] = id
    out[#out + 1] = redis.call('HGETALL', key)
  end
end
return out
