-- wrk script for etcd's JSON gateway (bench/run.py sets the environment).
--
--   BENCH_OP     put (POST /v3/kv/put) | get (POST /v3/kv/range) | mix (90/10)
--   BENCH_KEYS   number of keys: key:%012d uniformly in [0, N), base64 encoded
--   BENCH_VALUE  the value, base64 encoded
--
-- done() prints "BENCH_RESULT {json}" like kv.lua.

package.path = (debug.getinfo(1, "S").source:match("^@(.*/)") or "./")
   .. "?.lua;" .. package.path
local common = require("common")

local op = os.getenv("BENCH_OP") or "get"
local nkeys = tonumber(os.getenv("BENCH_KEYS") or "10000")
local value = os.getenv("BENCH_VALUE") or ""

local counter = 0
function setup(thread)
   counter = counter + 1
   thread:set("id", counter)
end

local base64 = common.base64

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

done = common.report
