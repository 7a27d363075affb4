-- Check, in one atomic step, that a job is in exactly the place its status names, and
-- optionally repair what is safe to repair: drop entries of a job whose hash is gone, drop a
-- job's entries outside its place and duplicates in the queue, and put a job that is in no
-- place back where its status says (a started job without its lease entry is queued again).
-- A key that is not a hash and a hash without a known status are reported, never touched.
--
-- KEYS[1]  job hash
-- KEYS[2]  run history list of the job
-- KEYS[3]  queue list
-- KEYS[4..8] scheduled, started, finished, failed and canceled registries
-- ARGV[1]  job id
-- ARGV[2]  now (epoch seconds)
-- ARGV[3]  "inspect" or "repair"
-- ARGV[4]  grace in seconds: an ended-registry entry of a gone job whose score (its expiry)
--          is at most now + grace is an expired entry awaiting its prune, not a problem
-- Returns: a flat list problem1, action1, problem2, action2, ... where a problem is
-- "dangling_entry:<place>", "expired_entry:<place>", "orphan_history", "not_a_hash",
-- "bad_status", "in_no_place", "in_wrong_place:<place>", "in_extra_place:<place>" or
-- "duplicate_entry", and an action says what the repair did ("" when nothing was done).

local id, now = ARGV[1], tonumber(ARGV[2])
local is_repair = ARGV[3] == 'repair'
local registries = {'scheduled', 'started', 'finished', 'failed', 'canceled'}
local is_ended = {finished = true, failed = true, canceled = true}
local out = {}

local function note(problem, action)
  out[#out + 1] = problem
  out[#out + 1] = is_repair and action or ''
end

local function remove_from(place)
  if place == 'queued' then
    redis.call('LREM', KEYS[3], 0, id)
  else
    for i, name in ipairs(registries) do
      if name == place then
        redis.call('ZREM', KEYS[3 + i], id)
      end
    end
  end
end

-- Where the id is now: 'queued' (with its count in the queue) and each registry.
local places, scores = {}, {}
local in_queue = #redis.call('LPOS', KEYS[3], id, 'COUNT', 0)
if in_queue > 0 then
  places[#places + 1] = 'queued'
end
for i, name in ipairs(registries) do
  local score = redis.call('ZSCORE', KEYS[3 + i], id)
  if score then
    places[#places + 1] = name
    scores[name] = tonumber(score)
  end
end

local kind = redis.call('TYPE', KEYS[1])['ok']
if kind == 'none' then
  for _, place in ipairs(places) do
    local label = 'dangling_entry:'
    if is_ended[place] and scores[place] <= now + tonumber(ARGV[4]) then
      label = 'expired_entry:'
    end
    note(label .. place, 'removed')
    if is_repair then
      remove_from(place)
    end
  end
  if redis.call('EXISTS', KEYS[2]) == 1 then
    note('orphan_history', 'deleted')
    if is_repair then
      redis.call('DEL', KEYS[2])
    end
  end
  return out
end
if kind ~= 'hash' then
  note('not_a_hash', '')
  return out
end

local status = redis.call('HGET', KEYS[1], 'status')
local is_known = status == 'queued'
for _, name in ipairs(registries) do
  is_known = is_known or status == name
end
if not is_known then
  note('bad_status', '')
  return out
end

local has_own = false
for _, place in ipairs(places) do
  if place == status then
    has_own = true
  end
end
for _, place in ipairs(places) do
  if place ~= status then
    if has_own then
      note('in_extra_place:' .. place, 'removed from ' .. place)
    else
      note('in_wrong_place:' .. place, 'removed from ' .. place)
    end
    if is_repair then
      remove_from(place)
    end
  end
end
if status == 'queued' and in_queue > 1 then
  note('duplicate_entry', 'kept one queue entry')
  if is_repair then
    redis.call('LREM', KEYS[3], in_queue - 1, id)
  end
end
if has_own then
  return out
end

if #places == 0 then
  note('in_no_place', '')
end
if not is_repair then
  return out
end

-- Put the job back where its status says.
local action
if status == 'queued' or status == 'started' then
  redis.call('HSET', KEYS[1], 'status', 'queued', 'enqueued_at', ARGV[2])
  redis.call('LPUSH', KEYS[3], id)
  action = 'queued'
elseif status == 'scheduled' then
  local due = tonumber(redis.call('HGET', KEYS[1], 'due')) or now
  redis.call('ZADD', KEYS[4], due, id)
  action = 'put in scheduled'
else
  local ttl = redis.call('TTL', KEYS[1])
  local score = '+inf'
  if ttl >= 0 then
    score = now + ttl
  end
  for i, name in ipairs(registries) do
    if name == status then
      redis.call('ZADD', KEYS[3 + i], score, id)
    end
  end
  action = 'put in ' .. status
end
if out[#out] == '' then
  out[#out] = action
else
  out[#out] = out[#out] .. '; ' .. action
end
return out
