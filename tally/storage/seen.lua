-- Unique visitors (tally/storage/redis_visitors.py): has this visitor been counted on
-- this counter within the window? If not, record it, atomically, so of two nodes racing
-- with the same visitor exactly one counts.
--
-- KEYS[1]      the visitor's entry under today's salt
-- KEYS[2..n]   its entries under the salts of the earlier days the window reaches
-- ARGV[1]      now (unix seconds, the node's clock)
-- ARGV[2]      when the new entry stops deduplicating (now + window)
-- ARGV[3]      the entry's Redis expiry in whole seconds (memory only: the value decides)
--
-- An entry's value is the time its window ends; one that has ended no longer counts as
-- seen, whatever its Redis expiry. Returns 1 if the visit counts (and was recorded), 0
-- if it does not.
local now = tonumber(ARGV[1])
for i = 1, #KEYS do
    local until_ = redis.call('GET', KEYS[i])
    if until_ and tonumber(until_) > now then
        return 0
    end
end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
return 1
