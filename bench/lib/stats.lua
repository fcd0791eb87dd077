-- wrk reporter used by bench/proxy_bench.sh: prints one machine-readable line after wrk's own
-- summary, with exact microsecond percentiles and the error counters (wrk's text rounds them).
local function fmt(v)
  return string.format("%.3f", v)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'SLUICE_BENCH {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"p50_us":%s,"p90_us":%s,"p99_us":%s,"p999_us":%s,"mean_us":%s,"max_us":%s,' ..
    '"err_connect":%d,"err_read":%d,"err_write":%d,"err_status":%d,"err_timeout":%d}\n',
    summary.requests, summary.duration, summary.bytes,
    fmt(latency:percentile(50)), fmt(latency:percentile(90)), fmt(latency:percentile(99)),
    fmt(latency:percentile(99.9)), fmt(latency.mean), fmt(latency.max),
    e.connect, e.read, e.write, e.status, e.timeout))
end
