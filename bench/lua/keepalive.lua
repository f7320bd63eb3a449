-- wrk script for bench/run.sh: keep-alive GETs (wrk's default) and one
-- machine-readable result line at the end, so run.sh does not parse wrk's text.
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT rps=%.1f p99_us=%d p50_us=%d requests=%d errors=%d status=%d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(99), latency:percentile(50),
    summary.requests, e.connect + e.read + e.write + e.timeout, e.status))
end
