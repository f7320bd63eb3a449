-- wrk script for bench/run.sh: one request per connection ("Connection: close";
-- the server closes and wrk reconnects), so requests/s is connections/s. Latency
-- is from the request's first byte to the response's last, connect time excluded.
wrk.headers["Connection"] = "close"

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT rps=%.1f p99_us=%d p50_us=%d requests=%d errors=%d status=%d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(99), latency:percentile(50),
    summary.requests, e.connect + e.read + e.write + e.timeout, e.status))
end
