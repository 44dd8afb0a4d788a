-- Take one event in several sliding windows at once, or none: the sign-in throttle and the
-- mail limits (tally/storage/redis_windows.py). Either every key has room and the event
-- is recorded under each, or nothing is recorded and the answer says how long to wait.
--
-- KEYS[i]      a window's sorted set of event times (members unique per event)
-- ARGV[1]      now, wall-clock seconds
-- ARGV[2]      the event's member (unique: node id and sequence)
-- ARGV[2i+1]   KEYS[i]'s limit (events per window)
-- ARGV[2i+2]   KEYS[i]'s window, seconds
--
-- Returns {wait, i}: {'0', 0} when taken; else the seconds (as a string: Lua numbers
-- become integers) until the first refusing key, KEYS[i], has room again.
local now, member = tonumber(ARGV[1]), ARGV[2]
for i, key in ipairs(KEYS) do
  local limit, window = tonumber(ARGV[2 * i + 1]), tonumber(ARGV[2 * i + 2])
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  if redis.call('ZCARD', key) >= limit then
    local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    return {tostring(tonumber(oldest[2]) + window - now), i}
  end
end
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, now, member)
  redis.call('PEXPIRE', key, math.ceil(tonumber(ARGV[2 * i + 2]) * 1000))
end
return {'0', 0}
