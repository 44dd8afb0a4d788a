-- Unique visitors (tally/storage/redis_visitors.py): take back a recorded visit whose
-- count did not happen, unless the entry was recorded again since.
--
-- KEYS[1]      the visitor's entry under today's salt
-- ARGV[1]      the value the visit stored (when its window ends)
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
