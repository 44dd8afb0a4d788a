-- Unique visitors (tally/storage/redis_visitors.py): take back a recorded visit whose
-- count did not happen, unless the entry was recorded again since.
--
-- KEYS[1]      the counter's seen-set (see seen.lua)
-- ARGV[1]      the visitor's hash under today's salt
-- ARGV[2]      the end of the window the visit stored (its score)
local until_ = redis.call('ZSCORE', KEYS[1], ARGV[1])
if until_ and tonumber(until_) == tonumber(ARGV[2]) then
    return redis.call('ZREM', KEYS[1], ARGV[1])
end
return 0
