-- A new name for every request: "{}" in BENCH_PATH (e.g. /v2/default/n{}/up) becomes
-- "<run>-<i>", where <run> is this load's own mark (the clock at its start, in hex) and
-- i counts 0, 1, 2, ... with the threads interleaved (thread t of n takes t-1, t-1+n,
-- ...). So no name repeats within a load, nor between the warm-up and the measured run
-- of a scenario: every up creates its counter (see common.lua).
local common = require("common")

common.run(function(thread_index)
  local head, tail = common.template(os.getenv("BENCH_PATH"))
  local threads = tonumber(os.getenv("BENCH_THREADS") or "1")
  assert(tail, "fresh.lua needs BENCH_PATH with {}")
  -- the same for every thread of this wrk (they start within microseconds of each other:
  -- rounded to 10 ms), different for the next load of the scenario
  local run = string.format("%x", math.floor(common.now() * 100))
  local i = thread_index - 1
  return function()
    local request = head .. run .. "-" .. i .. tail
    i = i + threads
    return request
  end
end)
