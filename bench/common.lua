-- What the wrk scripts of bench/ share. A script loads it with
--   package.path = (debug.getinfo(1, "S").source:match("^@(.*/)") or "./")
--      .. "?.lua;" .. package.path
--   local common = require("common")
-- so that it is found beside the script whatever the working directory.

local common = {}

local b64chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

-- Standard base64 of a string (etcd's JSON gateway takes keys and values so).
function common.base64(s)
   return ((s:gsub(".", function(x)
      local r, b = "", x:byte()
      for i = 8, 1, -1 do r = r .. (b % 2 ^ i - b % 2 ^ (i - 1) > 0 and "1" or "0") end
      return r
   end) .. "0000"):gsub("%d%d%d?%d?%d?%d?", function(x)
      if #x < 6 then return "" end
      local c = 0
      for i = 1, 6 do c = c + (x:sub(i, i) == "1" and 2 ^ (6 - i) or 0) end
      return b64chars:sub(c + 1, c + 1)
   end) .. ({ "", "==", "=" })[#s % 3 + 1])
end

-- A done() that prints one line "BENCH_RESULT {json}" with the request
-- count, duration, errors and latency percentiles (microseconds).
function common.report(summary, latency, requests)
   local e = summary.errors
   local ps = {}
   for _, p in ipairs({50, 90, 99, 99.9}) do
      table.insert(ps, string.format('"%s":%d', tostring(p), latency:percentile(p)))
   end
   io.write(string.format(
      'BENCH_RESULT {"requests":%d,"duration_us":%d,"bytes":%d,' ..
      '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
      '"latency_us":{%s,"max":%d,"mean":%.1f}}\n',
      summary.requests, summary.duration, summary.bytes,
      e.connect, e.read, e.write, e.status, e.timeout,
      table.concat(ps, ","), latency.max, latency.mean))
end

return common
