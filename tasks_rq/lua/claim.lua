-- Claim up to N queued jobs for a worker: each moves from the queue to the started
-- registry with a lease deadline, in one step. Ids whose job hash is gone (deleted while
-- queued) are dropped; so are ids whose key holds something other than a hash, which are
-- returned with an empty field list so that the worker can say so. A garbage claim counter
-- counts as 0, so that bad data never stops the script halfway (its writes would stay).
--
-- KEYS[1]  queue list
-- KEYS[2]  started registry (zset, score: lease deadline in epoch seconds)
-- KEYS[3]  job hash key prefix of the queue (the job id is appended; same hash tag)
-- ARGV[1]  now (epoch seconds)
-- ARGV[2]  lease deadline (epoch seconds)
-- ARGV[3]  most jobs to claim
-- ARGV[4]  worker name
-- Returns: a flat list id1, fields1, id2, fields2, ... where fields is the job's HGETALL
-- (empty for an id whose key is not a hash).

local ids = redis.call('RPOP', KEYS[1], ARGV[3])
if not ids then
  return {}
end

local out = {}
for _, id in ipairs(ids) do
  local key = KEYS[3] .. id
  local kind = redis.call('TYPE', key)['ok']
  if kind == 'hash' then
    local claims = tonumber(redis.call('HGET', key, 'claims')) or 0
    redis.call('HSET', key, 'claims', math.floor(claims) + 1, 'status', 'started',
      'started_at', ARGV[1], 'worker', ARGV[4])
    redis.call('ZADD', KEYS[2], ARGV[2], id)
    out[#out + 1] = id
    out[#out + 1] = redis.call('HGETALL', key)
  elseif kind ~= 'none' then
    out[#out + 1] = id
    out[#out + 1] = {}
  end
end
return out
