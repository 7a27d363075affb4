-- Delete a job wherever it is: its hash, its run history and every registry entry.
--
-- KEYS[1]  job hash
-- KEYS[2]  run history list of the job
-- KEYS[3]  queue list
-- KEYS[4..8] scheduled, started, finished, failed and canceled registries
-- ARGV[1]  job id
-- Returns: 1 if the job existed, else 0.

local existed = redis.call('DEL', KEYS[1], KEYS[2]) > 0
redis.call('LREM', KEYS[3], 0, ARGV[1])
for i = 4, 8 do
  redis.call('ZREM', KEYS[i], ARGV[1])
end
return existed and 1 or 0
