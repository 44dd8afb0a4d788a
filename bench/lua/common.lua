-- Shared by the load scripts (hot.lua, random.lua): the request template, the
-- Authorization header, the drain phase, counting responses and one JSON summary line.
--
-- Settings are environment variables, set by bench/wrk.py:
--   BENCH_PATH        the path of every request; random.lua replaces "{}" in it
--   BENCH_TOKEN       if set, every request carries "Authorization: Bearer <token>"
--   BENCH_MEASURE     seconds of the measured phase; after it, requests go to
--                     BENCH_DRAIN_PATH (the drain phase)
--   BENCH_DRAIN_PATH  the path of the drain phase; no drain phase without it
--   BENCH_DRAIN_MARK  a string found in the body of drain responses only
--
-- Why a drain phase: when wrk stops, every connection still has a request in flight.
-- The server may count it, but wrk never sees its answer. Sending the last half second
-- to a counter that is not checked means the cut-off requests never touch the counters
-- whose totals are compared with the number of 200s wrk saw.
--
-- done() prints "BENCH_RESULT " and one JSON object: statuses, socket errors, latency
-- percentiles (microseconds), `counted_200` / `drained_200`, the 200s of the measured
-- and of the drain phase, told apart by BENCH_DRAIN_MARK, and `tallies`: the sum over
-- the threads of each global a script names in M.run's `tallies` (e.g. soak.lua's
-- requests of each kind).

local ffi = require("ffi")

ffi.cdef([[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clock_id, bench_timespec *tp);
]])

local M = {}
local CLOCK_MONOTONIC = 1
local timespec = ffi.new("bench_timespec")

function M.now()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, timespec)
  return tonumber(timespec.tv_sec) + tonumber(timespec.tv_nsec) * 1e-9
end

local function getenv(name)
  local value = os.getenv(name)
  if value == "" then
    return nil
  end
  return value
end

-- The raw request for `path` (with the Authorization header if BENCH_TOKEN is set),
-- split around "{}" when the path has it: returns head, tail (tail is nil without "{}").
function M.template(path)
  local token = getenv("BENCH_TOKEN")
  if token then
    wrk.headers["Authorization"] = "Bearer " .. token
  end
  local raw = wrk.format("GET", path)
  local at = raw:find("{}", 1, true)
  if not at then
    return raw, nil
  end
  return raw:sub(1, at - 1), raw:sub(at + 2)
end

-- Install wrk's hooks. `make(thread_index)` runs in each thread's init and returns the
-- function producing the measured phase's requests. `tallies` (optional) names globals
-- of the thread (numbers that `make`'s function keeps) summed into the result.
function M.run(make, tallies)
  tallies = tallies or {}
  local threads = {}

  function setup(thread)
    table.insert(threads, thread)
    thread:set("thread_index", #threads)
  end

  function init(args)
    statuses, counted, drained, sent = {}, 0, 0, 0
    local measured = make(thread_index)
    local drain_path = getenv("BENCH_DRAIN_PATH")
    local mark = getenv("BENCH_DRAIN_MARK")
    local drain_request = drain_path and M.template(drain_path)
    local deadline = M.now() + tonumber(getenv("BENCH_MEASURE") or "1e12")
    local draining = false
    local now = M.now

    function request()
      sent = sent + 1
      if drain_request and (draining or now() >= deadline) then
        draining = true
        return drain_request
      end
      return measured()
    end

    function response(status, headers, body)
      statuses[status] = (statuses[status] or 0) + 1
      if status == 200 then
        if mark and body:find(mark, 1, true) then
          drained = drained + 1
        else
          counted = counted + 1
        end
      end
    end
  end

  function done(summary, latency, requests)
    local total = { statuses = {}, counted = 0, drained = 0, sent = 0 }
    for _, thread in ipairs(threads) do
      for status, n in pairs(thread:get("statuses")) do
        total.statuses[status] = (total.statuses[status] or 0) + n
      end
      total.counted = total.counted + thread:get("counted")
      total.drained = total.drained + thread:get("drained")
      total.sent = total.sent + thread:get("sent")
    end
    local parts = {}
    for status, n in pairs(total.statuses) do
      parts[#parts + 1] = string.format('"%d":%d', status, n)
    end
    local counts = {}
    for _, name in ipairs(tallies) do
      local sum = 0
      for _, thread in ipairs(threads) do
        sum = sum + (thread:get(name) or 0)
      end
      counts[#counts + 1] = string.format('"%s":%d', name, sum)
    end
    local e = summary.errors
    io.write(string.format(
      'BENCH_RESULT {"duration_us":%d,"requests":%d,"sent":%d,"counted_200":%d,'
        .. '"drained_200":%d,"statuses":{%s},"errors":{"connect":%d,"read":%d,'
        .. '"write":%d,"status":%d,"timeout":%d},"latency_us":{"min":%d,"mean":%.1f,'
        .. '"p50":%d,"p90":%d,"p99":%d,"max":%d},"tallies":{%s}}\n',
      summary.duration, summary.requests, total.sent, total.counted, total.drained,
      table.concat(parts, ","), e.connect, e.read, e.write, e.status, e.timeout,
      latency.min, latency.mean, latency:percentile(50), latency:percentile(90),
      latency:percentile(99), latency.max, table.concat(counts, ",")
    ))
  end
end

return M
