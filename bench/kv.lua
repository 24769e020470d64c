-- wrk script for causalkv and the HTTP ceiling (bench/run.py writes the
-- settings into the environment; see there).
--
--   BENCH_OP      get | put | mix (90% GET, 10% PUT)
--   BENCH_KEYS    number of keys: requests pick key:%012d uniformly in [0, N)
--   BENCH_KEYFILE optional, a file of key numbers, one a line: requests pick
--                 key:%012d uniformly among them instead (e.g. the keys of
--                 one shard)
--   BENCH_VALUE   the value PUTs store (a JSON string's contents)
--   BENCH_CTX     the causal context (JSON) obtained from a real PUT: sent
--                 in the X-Causal-Metadata header of GETs and in the body of
--                 PUTs, the way a client passes it back
--   BENCH_HOSTS   optional, "ip:port,ip:port,...": thread i sends all its
--                 requests to host i mod n (load spread over replicas)
--   BENCH_DELAY_MS optional: each connection waits this long before each
--                 request (throttled load)
--   BENCH_IF_MATCH optional: PUTs carry "If-Match: <this>" (e.g. * : write
--                 only if the key exists; a 412 answer counts as an error)
--   BENCH_PREFIX  optional, a path before /key-value-store/ (e.g.
--                 /tables/bench: the keys of the table "bench")
--
-- done() prints one line "BENCH_RESULT {json}" with the request count,
-- duration, errors and latency percentiles (microseconds).

package.path = (debug.getinfo(1, "S").source:match("^@(.*/)") or "./")
   .. "?.lua;" .. package.path
local common = require("common")

local op = os.getenv("BENCH_OP") or "get"
local nkeys = tonumber(os.getenv("BENCH_KEYS") or "10000")
local value = os.getenv("BENCH_VALUE") or "v"
local ctx = os.getenv("BENCH_CTX") or '""'
local hosts = os.getenv("BENCH_HOSTS") or ""
local delay_ms = tonumber(os.getenv("BENCH_DELAY_MS") or "0")
local keyfile = os.getenv("BENCH_KEYFILE") or ""
local if_match = os.getenv("BENCH_IF_MATCH") or ""
local prefix = os.getenv("BENCH_PREFIX") or ""

local counter = 0
local threads = {}

function setup(thread)
   counter = counter + 1
   thread:set("id", counter)
   table.insert(threads, thread)
   if hosts ~= "" then
      local list = {}
      for h in string.gmatch(hosts, "[^,]+") do table.insert(list, h) end
      local h = list[((counter - 1) % #list) + 1]
      local host, port = string.match(h, "^(.*):(%d+)$")
      thread.addr = wrk.lookup(host, port)[1]
   end
end

local get_headers
local put_headers
local put_prefix
local put_suffix
local keys -- the key numbers of BENCH_KEYFILE, or nil: [0, BENCH_KEYS)

function init(args)
   math.randomseed(os.time() * 1000 + (id or 0) * 7919)
   get_headers = { ["X-Causal-Metadata"] = ctx }
   put_headers = { ["Content-Type"] = "application/json" }
   if if_match ~= "" then put_headers["If-Match"] = if_match end
   put_prefix = '{"value":"' .. value .. '","causal-metadata":'
   put_suffix = '}'
   if keyfile ~= "" then
      keys = {}
      for line in io.lines(keyfile) do
         local n = tonumber(line)
         if n then table.insert(keys, n) end
      end
      if #keys == 0 then error("BENCH_KEYFILE " .. keyfile .. " names no key") end
   end
end

local function path()
   local n
   if keys then n = keys[math.random(1, #keys)] else n = math.random(0, nkeys - 1) end
   return string.format("%s/key-value-store/key:%012d", prefix, n)
end

local function get()
   return wrk.format("GET", path(), get_headers)
end

local function put()
   return wrk.format("PUT", path(), put_headers, put_prefix .. ctx .. put_suffix)
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

if delay_ms > 0 then
   delay = function() return delay_ms end
end

done = common.report
