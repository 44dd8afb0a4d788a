-- A random counter per request: "{}" in BENCH_PATH (e.g. /v2/default/c{}/up) becomes a
-- uniformly random integer in [0, BENCH_COUNT), so with counters c0 .. c<N-1> every
-- request names one of the N (see common.lua).
local common = require("common")

common.run(function(thread_index)
  local head, tail = common.template(os.getenv("BENCH_PATH"))
  local count = tonumber(os.getenv("BENCH_COUNT"))
  assert(tail and count and count >= 1, "random.lua needs BENCH_PATH with {} and BENCH_COUNT")
  -- a different stream per thread and per run
  math.randomseed(os.time() * 1000 + thread_index)
  local random = math.random
  return function()
    return head .. (random(count) - 1) .. tail
  end
end)
