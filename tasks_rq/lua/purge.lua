-- Delete one batch of the jobs of a queue in one state: their ids leave the queue list or
-- the state's registry, and their hashes and run histories are deleted, in one step.
--
-- KEYS[1]  where the jobs are: the queue list, or the registry (zset) of the state
-- KEYS[2]  job hash key prefix of the queue (the job id is appended; same hash tag)
-- KEYS[3]  run history key prefix of the queue (the job id is appended; same hash tag)
-- ARGV[1]  "list" (KEYS[1] is the queue list) or "zset" (KEYS[1] is a registry)
-- ARGV[2]  most jobs to delete in this batch
-- Returns: how many ids left KEYS[1] (0 when it is empty).

local count = tonumber(ARGV[2])
local ids
if ARGV[1] == 'list' then
  ids = redis.call('RPOP', KEYS[1], count)
  if not ids then
    return 0
  end
else
  ids = redis.call('ZRANGE', KEYS[1], 0, count - 1)
  if #ids == 0 then
    return 0
  end
  redis.call('ZREM', KEYS[1], unpack(ids))
end
for _, id in ipairs(ids) do
  redis.call('DEL', KEYS[2] .. id, KEYS[3] .. id)
end
return #ids
