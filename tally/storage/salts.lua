-- Unique visitors (tally/storage/redis_visitors.py): the daily salts every node shares.
--
-- KEYS[1]      today's salt
-- KEYS[2..n]   the salts of earlier days a window may still reach
-- ARGV[1]      a fresh random salt, stored as today's unless another node stored one
-- ARGV[2]      the salt's Redis expiry in seconds (its day plus the longest window)
--
-- Returns the salts of KEYS in order (nil for a day that has none).
redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2])
return redis.call('MGET', unpack(KEYS))
