-- The soak's workload (tools/soak.py): for one of BENCH_COUNT counters at random, 80 %
-- `up` (BENCH_PATH, e.g. /v2/ws/c{}/up), 15 % reading it (SOAK_GET_PATH), 5 % its stats
-- (SOAK_STATS_PATH), "{}" in each becoming the counter's number (see common.lua).
--
-- Pacing: wrk has no fixed-rate mode, so with SOAK_RATE set (requests per second, all
-- threads together) each thread holds its share, SOAK_RATE / BENCH_THREADS, with the
-- delay() hook of pacer.lua: an even schedule of slots, slots up to SLACK late still
-- used, older ones dropped (no catch-up after a slow stretch).
--
-- The tallies `ups` and `reads` count the measured phase's requests of each kind as they
-- are built. wrk builds one request of its first thread to check the script before the
-- load and never sends it: that one is a read and is not tallied, so every tallied
-- request was written.
local common = require("common")
local pacer = require("pacer")

local random = math.random
local rate = tonumber(os.getenv("SOAK_RATE") or "")
-- seconds: longer than the answers' usual jitter (a p99 of 20 to 50 ms on the loaded
-- 2-core machine), so a late answer costs no request; at most 0.5 % of a 10 s window
-- made up after a stall
local SLACK = 0.05

if rate then
  delay = pacer.new(rate / tonumber(os.getenv("BENCH_THREADS")), common.now, SLACK)
end

common.run(function(thread_index)
  local count = tonumber(os.getenv("BENCH_COUNT"))
  local up_head, up_tail = common.template(os.getenv("BENCH_PATH"))
  local get_head, get_tail = common.template(os.getenv("SOAK_GET_PATH"))
  local stats_head, stats_tail = common.template(os.getenv("SOAK_STATS_PATH"))
  assert(up_tail and get_tail and stats_tail and count and count >= 1,
    "soak.lua needs BENCH_PATH, SOAK_GET_PATH and SOAK_STATS_PATH with {} and BENCH_COUNT")
  math.randomseed(os.time() * 1000 + thread_index)
  ups, reads = 0, 0
  local checking = thread_index == 1 -- the request wrk builds to check the script
  return function()
    local name = random(count) - 1
    if checking then
      checking = false
      return get_head .. name .. get_tail
    end
    local roll = random()
    if roll < 0.80 then
      ups = ups + 1
      return up_head .. name .. up_tail
    end
    reads = reads + 1
    if roll < 0.95 then
      return get_head .. name .. get_tail
    end
    return stats_head .. name .. stats_tail
  end
end, { "ups", "reads" })
