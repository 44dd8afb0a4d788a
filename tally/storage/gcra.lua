-- GCRA (generic cell rate algorithm) for a batch of keys, on the Redis server's clock, so
-- every node shares one limit and one clock. A node sends all the checks of one
-- event-loop tick as one call, each distinct key once with how many requests it has.
--
-- KEYS[i]    a key's theoretical arrival time (TAT), integer microseconds; it expires
--            when the key is back to a full burst, so idle keys cost no memory
-- ARGV[1]    T, the emission interval in microseconds (period / limit)
-- ARGV[2]    N, the limit (also the largest burst)
-- ARGV[2+i]  how many requests KEYS[i] has in this call, in arrival order
--
-- Returns, flattened, for each key: how many of its requests were admitted (the first
-- ones; rejected requests change nothing) and its backlog (TAT - now, microseconds)
-- before them. The caller derives each request's remaining / reset / retry from these.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local tolerance = interval * (limit - 1)
local out = {}
for i, key in ipairs(KEYS) do
    local wanted = tonumber(ARGV[2 + i])
    local tat = tonumber(redis.call('GET', key)) or now
    if tat < now then
        tat = now
    end
    local backlog = tat - now
    -- a request is admitted while the backlog before it is within the tolerance
    local room = math.floor((tolerance - backlog) / interval) + 1
    if room < 0 then
        room = 0
    end
    local admitted = math.min(wanted, room)
    if admitted > 0 then
        local after = backlog + admitted * interval
        redis.call('SET', key, now + after, 'PX', math.ceil(after / 1000) + 1)
    end
    out[#out + 1] = admitted
    out[#out + 1] = backlog
end
return out
