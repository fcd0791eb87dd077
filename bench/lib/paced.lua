-- Paced load for bench/proxy_bench.sh: every connection waits PACE_MS milliseconds after each
-- response before it sends the next request, so each proxy is offered the same request rate
-- (about connections * 1000 / (PACE_MS + latency) req/s) and their CPU use can be compared.
-- wrk starts a request's latency clock after the delay, so p50/p99 stay the proxy's latency.
local pace_ms = tonumber(os.getenv("PACE_MS") or "")
if pace_ms == nil or pace_ms < 0 then
  error("paced.lua: set PACE_MS to the pause in milliseconds")
end

function delay()
  return pace_ms
end

-- The reporter lives beside this file.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "stats.lua")
