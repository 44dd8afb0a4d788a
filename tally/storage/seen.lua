-- Unique visitors (tally/storage/redis_visitors.py): has this visitor been counted on
-- this counter within the window? If not, record it, atomically, so of two nodes racing
-- with the same visitor exactly one counts.
--
-- KEYS[1]      the counter's seen-set: a sorted set, member = a visitor's 8-byte hash,
--              score = the time (unix seconds) its window ends
-- ARGV[1]      now (unix seconds, the node's clock)
-- ARGV[2]      when the new entry stops deduplicating (now + window)
-- ARGV[3]      the set's bound: the entries one counter may hold (TALLY_UNIQUE_PER_COUNTER)
-- ARGV[4]      the set's Redis expiry in whole seconds, at least (memory only)
-- ARGV[5]      the visitor's hash under today's salt (recorded if the visit counts)
-- ARGV[6..n]   its hashes under the salts of the earlier days the window reaches
--
-- An entry whose window ended no longer counts as seen. Before recording, the ended
-- entries are dropped, and at the bound the entries whose windows end soonest (the
-- oldest, for one window): those visitors count again, never too few. Returns 0 if the
-- visit does not count; 1 if it counts (and was recorded); 2 if it counts and entries
-- were forgotten to make room.
local now = tonumber(ARGV[1])
for i = 5, #ARGV do
    local until_ = redis.call('ZSCORE', KEYS[1], ARGV[i])
    if until_ and tonumber(until_) > now then
        return 0
    end
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local counted = 1
local over = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[3]) + 1
if over > 0 then
    redis.call('ZPOPMIN', KEYS[1], over)
    counted = 2
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[5])
if redis.call('TTL', KEYS[1]) < tonumber(ARGV[4]) then
    redis.call('EXPIRE', KEYS[1], ARGV[4])
end
return counted
