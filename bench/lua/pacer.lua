-- A steady pace for wrk's delay() hook (soak.lua): at most `rate` requests per second
-- from one wrk thread, however many connections it has, and no catch-up burst.
--
-- wrk calls delay() once before each request of a connection (after the answer to its
-- last one). Each call takes the next free slot of an even schedule, 1 / rate seconds
-- after the slot handed out before it, and returns the wait until that slot. So the
-- thread sends one request per slot, whatever the latency or the client's own time:
-- when latency grows the connections simply wait less.
--
-- When every connection is waiting for an answer, slots go by unused. Those at most
-- `slack` seconds old are still handed out (without a wait), so the ordinary jitter of
-- the answers costs no requests; older ones are dropped: after a slow stretch (a slow
-- server, a busy machine) at most `slack` seconds of requests are made up, never the
-- whole stretch's. Over any time T the thread sends at most rate * (T + slack) requests,
-- plus its connections' first ones, which wrk sends without asking delay().
--
-- The wait is in whole milliseconds (what wrk takes), rounded to the nearest: a request
-- goes at most half a millisecond before or after its slot, while the slots themselves,
-- and so the rate, follow the exact clock.
local M = {}

-- `rate`: requests per second (> 0); `now`: a clock in seconds; `slack`: how late a
-- slot may still be used, in seconds (>= 0). Returns the function for delay(): the
-- milliseconds to wait before the next request.
function M.new(rate, now, slack)
  assert(rate > 0 and slack >= 0, "pacer.new needs a rate above 0 and a slack of 0 or more")
  local interval = 1 / rate
  local free -- the next slot not yet handed out; the schedule starts at the first call
  return function()
    local t = now()
    local slot = math.max(t - slack, free or t)
    free = slot + interval
    return math.max(0, math.floor((slot - t) * 1000 + 0.5))
  end
end

return M
