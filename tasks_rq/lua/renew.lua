-- Move the lease deadline of a worker's running jobs, only for leases the worker holds.
--
-- KEYS[1]  started registry (zset, score: lease deadline in epoch seconds)
-- KEYS[2]  job hash key prefix of the queue (the job id is appended; same hash tag)
-- ARGV[1]  new lease deadline (epoch seconds)
-- ARGV[2]  worker name
-- ARGV[3..] pairs of job id and claim number
-- Returns: the ids whose lease the worker no longer holds.

local lost = {}
for i = 3, #ARGV, 2 do
  local id = ARGV[i]
  local key = KEYS[2] .. id
  local holder = redis.call('HMGET', key, 'worker', 'claims')
  if holder[1] == ARGV[2] and holder[2] == ARGV[i + 1]
      and redis.call('ZSCORE', KEYS[1], id) then
    redis.call('ZADD', KEYS[1], 'XX', ARGV[1], id)
  else
    lost[#lost + 1] = id
  end
end
return lost
