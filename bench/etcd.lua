-- wrk script for etcd's JSON gateway (bench/run.py sets the environment).
--
--   BENCH_OP     put (POST /v3/kv/put) | get (POST /v3/kv/range) | mix (90/10)
--   BENCH_KEYS   number of keys: key:%012d uniformly in [0, N), base64 encoded
--   BENCH_VALUE  the value, base64 encoded
--
-- done() prints "BENCH_RESULT {json}" like kv.lua.

local op = os.getenv("BENCH_OP") or "get"
local nkeys = tonumber(os.getenv("BENCH_KEYS") or "10000")
local value = os.getenv("BENCH_VALUE") or ""

local counter = 0
function setup(thread)
   counter = counter + 1
   thread:set("id", counter)
end

local b64chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local function base64(s)
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

local keys = {}
local headers = { ["Content-Type"] = "application/json" }

function init(args)
   math.randomseed(os.time() * 1000 + (id or 0) * 7919)
   for i = 0, nkeys - 1 do
      keys[i] = base64(string.format("key:%012d", i))
   end
end

local function put()
   local k = keys[math.random(0, nkeys - 1)]
   return wrk.format("POST", "/v3/kv/put", headers,
      '{"key":"' .. k .. '","value":"' .. value .. '"}')
end

local function get()
   local k = keys[math.random(0, nkeys - 1)]
   return wrk.format("POST", "/v3/kv/range", headers, '{"key":"' .. k .. '"}')
end

if op == "put" then
   request = put
elseif op == "mix" then
   request = function()
      if math.random() < 0.9 then return get() else return put() end
   end
else
   request = get
end

function done(summary, latency, requests)
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
