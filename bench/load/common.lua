-- Shared wrk logic of classify.lua and extract.lua (loaded with dofile from the script's folder).
-- The endpoint script defines ENDPOINT (path) and make_body(text) -> JSON string, then loads this.
-- wrk arguments after "--": TEXTS_FILE (one UTF-8 text per line) [TAG].
--   wrk -t2 -c64 -d30s -s bench/load/classify.lua http://127.0.0.1:PORT -- texts.txt
-- done() prints one line "LOADTEST_JSON {...}" with requests, QPS, latency percentiles (ms) and
-- errors (wrk's socket errors + non-2xx responses counted by response(), + 2xx bodies without
-- "results").

local threads = {}
local thread_count = 0

function setup(thread)
  thread:set("thread_index", thread_count)
  thread_count = thread_count + 1
  table.insert(threads, thread)
end

-- JSON string literal of a UTF-8 text.
function json_string(s)
  s = s:gsub('[%c"\\]', function(c)
    if c == '"' then return '\\"' end
    if c == '\\' then return '\\\\' end
    return string.format('\\u%04x', c:byte())
  end)
  return '"' .. s .. '"'
end

function init(args)
  local path = args[1]
  if path == nil then error("usage: wrk ... -s SCRIPT URL -- TEXTS_FILE") end
  tag = args[2] or ""
  requests_list = {}
  for line in io.lines(path) do
    if #line > 0 then
      table.insert(requests_list, wrk.format("POST", ENDPOINT, {["Content-Type"] = "application/json"}, make_body(line)))
    end
  end
  if #requests_list == 0 then error("no texts in " .. path) end
  -- Threads start at different points of the rotation.
  next_index = (thread_index * 7919) % #requests_list
  non2xx = 0
  bad_body = 0
  statuses = {}
end

function request()
  next_index = next_index % #requests_list + 1
  return requests_list[next_index]
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
    statuses[status] = (statuses[status] or 0) + 1
  elseif not body or not body:find('"results"', 1, true) then
    bad_body = bad_body + 1
  end
end

function done(summary, latency, requests)
  local non2xx_total, bad_total = 0, 0
  local status_counts = {}
  for _, t in ipairs(threads) do
    non2xx_total = non2xx_total + (t:get("non2xx") or 0)
    bad_total = bad_total + (t:get("bad_body") or 0)
    local st = t:get("statuses")
    if st then for code, n in pairs(st) do status_counts[code] = (status_counts[code] or 0) + n end end
  end
  local e = summary.errors
  local seconds = summary.duration / 1e6
  local parts = {}
  for code, n in pairs(status_counts) do table.insert(parts, string.format('"%d": %d', code, n)) end
  local socket_errors = e.connect + e.read + e.write + e.timeout
  local out = string.format(
    '{"endpoint": "%s", "requests": %d, "duration_s": %.3f, "qps": %.2f, "bytes": %d, ' ..
    '"latency_ms": {"mean": %.3f, "p50": %.3f, "p90": %.3f, "p99": %.3f, "max": %.3f}, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "timeout": %d, "non2xx": %d, "bad_body": %d, ' ..
    '"total": %d, "status": {%s}}}',
    ENDPOINT, summary.requests, seconds, summary.requests / seconds, summary.bytes,
    latency.mean / 1e3, latency:percentile(50) / 1e3, latency:percentile(90) / 1e3,
    latency:percentile(99) / 1e3, latency.max / 1e3,
    e.connect, e.read, e.write, e.timeout, non2xx_total, bad_total,
    socket_errors + non2xx_total + bad_total, table.concat(parts, ", "))
  io.write("LOADTEST_JSON " .. out .. "\n")
end
