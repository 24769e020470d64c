-- wrk script that loads a range of keys exactly once each (bench/run.py
-- sets the environment and stops wrk once every thread has finished).
--
--   BENCH_MODE     causalkv (PUT /key-value-store/key) | etcd (POST /v3/kv/put)
--   BENCH_FIRST    first key number; keys are key:%012d
--   BENCH_COUNT    how many keys
--   BENCH_THREADS  wrk's thread count (-t), to split the range
--   BENCH_VALUE    the value (causalkv: JSON string contents; etcd: base64)
--   BENCH_CONNS    connections per thread (to finish the in-flight ones)
--   BENCH_DONE_DIR a directory where each thread drops a file when done
--   BENCH_PREFIX   causalkv, optional: a path before /key-value-store/ (e.g.
--                  /tables/bench: the keys of the table "bench")
--
-- Thread i writes keys first+i, first+i+T, ...; after its share it keeps
-- rewriting the same keys (harmless) until wrk is stopped.

package.path = (debug.getinfo(1, "S").source:match("^@(.*/)") or "./")
   .. "?.lua;" .. package.path
local common = require("common")

local mode = os.getenv("BENCH_MODE") or "causalkv"
local first = tonumber(os.getenv("BENCH_FIRST") or "0")
local count = tonumber(os.getenv("BENCH_COUNT") or "0")
local nthreads = tonumber(os.getenv("BENCH_THREADS") or "1")
local value = os.getenv("BENCH_VALUE") or "v"
local conns = tonumber(os.getenv("BENCH_CONNS") or "1")
local done_dir = os.getenv("BENCH_DONE_DIR") or "/tmp"
local prefix = os.getenv("BENCH_PREFIX") or ""

local counter = 0
function setup(thread)
   thread:set("tid", counter)
   counter = counter + 1
end

local base64 = common.base64

local share, sent, answered, finished = 0, 0, 0, false
local headers = { ["Content-Type"] = "application/json" }

function init(args)
   -- keys first + tid + k * nthreads for k in [0, share)
   share = math.floor((count - tid + nthreads - 1) / nthreads)
   if share < 0 then share = 0 end
   if share == 0 then
      finished = true
      local f = io.open(done_dir .. "/thread-" .. tid, "w")
      if f then f:close() end
   end
end

function request()
   local k = first + tid + (sent % math.max(share, 1)) * nthreads
   sent = sent + 1
   local key = string.format("key:%012d", k)
   if mode == "etcd" then
      return wrk.format("POST", "/v3/kv/put", headers,
         '{"key":"' .. base64(key) .. '","value":"' .. value .. '"}')
   end
   return wrk.format("PUT", prefix .. "/key-value-store/" .. key, headers,
      '{"value":"' .. value .. '","causal-metadata":""}')
end

function response(status, headers, body)
   answered = answered + 1
   if not finished and answered >= share + conns then
      finished = true
      local f = io.open(done_dir .. "/thread-" .. tid, "w")
      if f then f:close() end
      wrk.thread:stop()
   end
end

function done(summary, latency, requests)
   io.write(string.format('BENCH_RESULT {"requests":%d,"duration_us":%d,"status_errors":%d}\n',
      summary.requests, summary.duration, summary.errors.status))
end
