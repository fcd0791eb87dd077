-- Smooth paced load for bench/ratelimit_accuracy.sh: like paced.lua, every connection pauses
-- after each response, but for a random whole number of milliseconds, uniform in
-- [0, 2 * PACE_MS] (mean PACE_MS), also before its first request. With a fixed pause the
-- connections stay in step and the load arrives in clumps every PACE_MS, and a token bucket
-- with a small burst loses the tokens of the gaps between clumps; random pauses spread the
-- requests evenly (nearly Poisson arrivals at connections * 1000 / (PACE_MS + latency) req/s).
local pace_ms = tonumber(os.getenv("PACE_MS") or "")
if pace_ms == nil or pace_ms < 0 then
  error("jittered.lua: set PACE_MS to the mean pause in milliseconds")
end

local seeded = false

function delay()
  if not seeded then
    -- One Lua state per wrk thread: seed each from its own address and the clock.
    math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)") or "0", 16) % 100000)
    seeded = true
  end
  return math.random(0, 2 * pace_ms)
end

-- The reporter lives beside this file.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "stats.lua")
