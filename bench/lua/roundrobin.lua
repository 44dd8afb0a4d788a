-- Every counter in turn: "{}" in BENCH_PATH (e.g. /v2/default/c{}/up) becomes 0, 1, ...
-- BENCH_COUNT-1, then 0 again, the threads interleaved (thread t of n takes t-1, t-1+n,
-- ...), so each batch of the server spreads over as many counters as it has requests
-- (see common.lua).
local common = require("common")

common.run(function(thread_index)
  local head, tail = common.template(os.getenv("BENCH_PATH"))
  local count = tonumber(os.getenv("BENCH_COUNT"))
  local threads = tonumber(os.getenv("BENCH_THREADS") or "1")
  assert(tail and count and count >= 1, "roundrobin.lua needs BENCH_PATH with {} and BENCH_COUNT")
  local i = thread_index - 1
  return function()
    local request = head .. i .. tail
    i = (i + threads) % count
    return request
  end
end)
