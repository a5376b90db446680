-- wrk script for bench/ingest.py: posts pre-signed webhook deliveries.
--
-- Usage: wrk -t2 -c64 -d10s -s bench/post.lua http://127.0.0.1:PORT/webhooks -- PREFIX
--
-- bench/ingest.py writes one file per wrk thread, PREFIX.1 .. PREFIX.<threads>, each a
-- disjoint slice of the round's deliveries. A file is a sequence of records
-- "<byte length>\n<raw HTTP request>", every request already complete (headers, unique
-- webhook id, signature over its body). Each thread loads only its own file and sends
-- its requests in order, so no webhook id is sent twice. Should a thread run out, it
-- starts over and counts `wrapped`: those repeats come back as duplicates.
--
-- done() prints one line "BENCH key=value ..." that bench/ingest.py parses.

local threads = {}
local next_id = 1

function setup(thread)
   thread:set("tid", next_id)
   next_id = next_id + 1
   table.insert(threads, thread)
end

function init(args)
   local path = args[1] .. "." .. tid
   local file = assert(io.open(path, "rb"))
   local data = file:read("*a")
   file:close()
   reqs = {}
   local n, pos = 0, 1
   while true do
      local nl = string.find(data, "\n", pos, true)
      if not nl then break end
      local len = tonumber(string.sub(data, pos, nl - 1))
      n = n + 1
      reqs[n] = string.sub(data, nl + 1, nl + len)
      pos = nl + len + 1
   end
   count = n
   index = 0
   wrapped = 0
   non2xx = 0
   accepted = 0
   duplicate = 0
   statuses = {}
end

function request()
   index = index + 1
   if index > count then
      index = 1
      wrapped = wrapped + 1
   end
   return reqs[index]
end

function response(status, headers, body)
   if status < 200 or status > 299 then
      non2xx = non2xx + 1
      statuses[status] = (statuses[status] or 0) + 1
   elseif string.find(body, '"accepted"', 1, true) then
      accepted = accepted + 1
   elseif string.find(body, '"duplicate"', 1, true) then
      duplicate = duplicate + 1
   end
end

function done(summary, latency, requests)
   local non2xx_total, accepted_total, duplicate_total, wrapped_total, sent = 0, 0, 0, 0, 0
   local by_status = {}
   for _, thread in ipairs(threads) do
      non2xx_total = non2xx_total + thread:get("non2xx")
      accepted_total = accepted_total + thread:get("accepted")
      duplicate_total = duplicate_total + thread:get("duplicate")
      wrapped_total = wrapped_total + thread:get("wrapped")
      sent = sent + thread:get("index") + thread:get("wrapped") * thread:get("count")
      for status, n in pairs(thread:get("statuses")) do
         by_status[status] = (by_status[status] or 0) + n
      end
   end
   local parts = {}
   for status, n in pairs(by_status) do
      table.insert(parts, status .. ":" .. n)
   end
   local errors = summary.errors
   io.write(string.format(
      "BENCH requests=%d duration_us=%d rps=%.2f p50_us=%d p90_us=%d p99_us=%d max_us=%d "
         .. "non2xx=%d accepted=%d duplicate=%d wrapped=%d sent=%d "
         .. "connect_errors=%d read_errors=%d write_errors=%d timeouts=%d statuses=%s\n",
      summary.requests, summary.duration, summary.requests / (summary.duration / 1e6),
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
      non2xx_total, accepted_total, duplicate_total, wrapped_total, sent,
      errors.connect, errors.read, errors.write, errors.timeout,
      #parts > 0 and table.concat(parts, ",") or "-"
   ))
end
