-- Take, refresh or release the scheduler lock of a queue, never touching a lock that
-- another owner holds.
--
-- KEYS[1]  scheduler lock of the queue (string holding the owner's token)
-- ARGV[1]  action: "acquire", "refresh" or "release"
-- ARGV[2]  the caller's token
-- ARGV[3]  TTL in milliseconds (acquire, refresh)
-- Returns: 1 if the caller holds the lock after the call (acquire, refresh) or released it
-- (release), else 0.

local action, token = ARGV[1], ARGV[2]
local holder = redis.call('GET', KEYS[1])
if action == 'acquire' then
  if holder and holder ~= token then
    return 0
  end
  redis.call('SET', KEYS[1], token, 'PX', ARGV[3])
  return 1
end
if holder ~= token then
  return 0
end
if action == 'refresh' then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
else
  redis.call('DEL', KEYS[1])
end
return 1
