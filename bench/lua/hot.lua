-- One fixed path for every request: BENCH_PATH, e.g. /v2/default/hot/up (see common.lua).
local common = require("common")

common.run(function(thread_index)
  local request = common.template(os.getenv("BENCH_PATH"))
  return function()
    return request
  end
end)
