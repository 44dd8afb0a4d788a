-- GCRA (generic cell rate algorithm) for a batch of entries, on the Redis server's clock,
-- so every node shares one limit and one clock. A node sends everything of one
-- event-loop tick as one call: each key that has requests once, with how many cells it
-- asks for (its requests, then possibly a short reservation of cells for the node to
-- hand out itself), and reservations it gives back unused. A key may appear more than
-- once; entries are applied in order.
--
-- KEYS[i]      a key's theoretical arrival time (TAT), integer microseconds; it expires
--              when the key is back to a full burst, so idle keys cost no memory
-- ARGV[1]      T, the emission interval in microseconds (period / limit)
-- ARGV[2]      N, the limit (also the largest burst)
-- ARGV[4i-1]   how many requests KEYS[i] has (0 for a give-back only)
-- ARGV[4i]     how many cells to reserve beyond them, if the key has room to spare
-- ARGV[4i+1]   how many reserved cells KEYS[i] gives back (0 if none)
-- ARGV[4i+2]   the TAT this call returned when those cells were reserved
--
-- Cells are reserved only while a tenth of the limit would still be left after them,
-- so a key close to its limit is decided request by request, exactly.
--
-- A give-back returns only the part of the cells still in the future (before that TAT):
-- cells whose time has passed came back by themselves, and the key may even have
-- expired and started over since. So it undoes the reservation exactly, never more.
--
-- Returns, flattened, for each entry: how many cells were granted (requests first, then
-- reserved cells; refused cells change nothing), the backlog (TAT - now, microseconds)
-- before them, and the TAT after them. The caller derives each request's remaining,
-- reset and retry from these.
-- ARGV[4n+3]   (optional, n = #KEYS) the time to use instead of the server's clock,
--              integer microseconds: for tests that drive the clock (never in serving)
local now = tonumber(ARGV[4 * #KEYS + 3])
if not now then
    local t = redis.call('TIME')
    now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local interval = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local tolerance = interval * (limit - 1)
local spare_floor = math.floor(limit / 10)
local out = {}
for i, key in ipairs(KEYS) do
    local requests = tonumber(ARGV[4 * i - 1])
    local reserve = tonumber(ARGV[4 * i])
    local back = tonumber(ARGV[4 * i + 1])
    local reserved_until = tonumber(ARGV[4 * i + 2])
    local stored = tonumber(redis.call('GET', key))
    local tat = stored or now
    if back > 0 and reserved_until > now then
        tat = tat - math.min(back * interval, reserved_until - now)
    end
    if tat < now then
        tat = now
    end
    local backlog = tat - now
    -- a cell is granted while the backlog before it is within the tolerance
    local room = math.floor((tolerance - backlog) / interval) + 1
    if room < 0 then
        room = 0
    end
    local granted = math.min(requests, room)
    local spare = room - granted - spare_floor
    if reserve > 0 and spare > 0 then
        granted = granted + math.min(reserve, spare)
    end
    local after = backlog + granted * interval
    if after > 0 then
        if granted > 0 or tat ~= stored then
            redis.call('SET', key, now + after, 'PX', math.ceil(after / 1000) + 1)
        end
    elseif stored then
        redis.call('DEL', key)
    end
    out[#out + 1] = granted
    out[#out + 1] = backlog
    out[#out + 1] = now + after
end
return out
