-- GCRA (generic cell rate algorithm) for one key, on the Redis server's clock, so every
-- node shares one limit and one clock.
--
-- KEYS[1]  the key's theoretical arrival time (TAT), integer microseconds; it expires
--          when the key is back to a full burst, so idle keys cost no memory
-- ARGV[1]  T, the emission interval in microseconds (period / limit)
-- ARGV[2]  N, the limit (also the largest burst)
--
-- Returns {allowed 0|1, remaining, reset_after_us, retry_after_us}. A rejected request
-- changes nothing.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local tolerance = interval * (limit - 1)
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then
    tat = now
end
local backlog = tat - now
if backlog > tolerance then
    return {0, 0, backlog, backlog - tolerance}
end
backlog = backlog + interval
redis.call('SET', KEYS[1], now + backlog, 'PX', math.ceil(backlog / 1000) + 1)
return {1, math.floor((interval * limit - backlog) / interval), backlog, 0}
