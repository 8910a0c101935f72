-- wrk script: every request carries a different user id in the "uid"
-- cookie (10,000 ids, rotated), so every split hashes a varying key.
-- Requests are formatted once, in init(), so wrk's own cost per request
-- stays small and the same for every configuration.  Extra headers come
-- from the arguments after "--": name:value pairs; "uid-header=NAME"
-- puts the id in that header ("u<n>") instead of the cookie.
--
--   wrk -t1 -c32 -d5s -s rotate.lua http://127.0.0.1:PORT/ -- X-Country:US
--   wrk -t1 -c32 -d5s -s rotate.lua http://127.0.0.1:PORT/ -- uid-header=X-User

local requests = {}
local n = 10000
local i = 0

function init(args)
    local headers = {}
    local id = nil

    for _, a in ipairs(args) do
        local k, v = a:match("^([^:]+):(.*)$")
        if k then
            headers[k] = v
        else
            id = a:match("^uid%-header=(.+)$") or id
        end
    end

    -- a different starting point per thread, the same set of ids
    local base = (tonumber(tostring(wrk.thread):match("0x(%x+)"), 16) or 0)
    i = base % n

    for u = 0, n - 1 do
        if id then
            headers[id] = "u" .. u
        else
            headers["Cookie"] = "uid=u" .. u
        end
        requests[u] = wrk.format("GET", "/", headers)
    end
end

function request()
    i = (i + 1) % n
    return requests[i]
end

function done(summary, latency, requests)
    local errors = summary.errors.connect + summary.errors.read
                   + summary.errors.write + summary.errors.status
                   + summary.errors.timeout
    io.write(string.format(
        "BENCH {\"requests\": %d, \"duration_us\": %d, \"errors\": %d, "
        .. "\"p50_us\": %d, \"p99_us\": %d, \"max_us\": %d}\n",
        summary.requests, summary.duration, errors,
        latency:percentile(50), latency:percentile(99), latency.max))
end
