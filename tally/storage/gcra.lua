-- GCRA (generic cell rate algorithm) for a batch of keys, on the Redis server's clock, so
-- every node shares one limit and one clock. A node sends all the checks of one
-- event-loop tick as one call (a key may appear several times: each is one request).
--
-- KEYS[i]  a key's theoretical arrival time (TAT), integer microseconds; it expires
--          when the key is back to a full burst, so idle keys cost no memory
-- ARGV[1]  T, the emission interval in microseconds (period / limit)
-- ARGV[2]  N, the limit (also the largest burst)
--
-- Returns, flattened, for each key in order: allowed 0|1, remaining, reset_after_us,
-- retry_after_us. A rejected request changes nothing.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local tolerance = interval * (limit - 1)
local out = {}
for i, key in ipairs(KEYS) do
    local tat = tonumber(redis.call('GET', key)) or now
    if tat < now then
        tat = now
    end
    local backlog = tat - now
    if backlog > tolerance then
        out[#out + 1] = 0
        out[#out + 1] = 0
        out[#out + 1] = backlog
        out[#out + 1] = backlog - tolerance
    else
        backlog = backlog + interval
        redis.call('SET', key, now + backlog, 'PX', math.ceil(backlog / 1000) + 1)
        out[#out + 1] = 1
        out[#out + 1] = math.floor((interval * limit - backlog) / interval)
        out[#out + 1] = backlog
        out[#out + 1] = 0
    end
end
return out
