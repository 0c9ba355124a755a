-- Observes: one point a request into SERIES streams named <PREFIX>0..,
-- timestamps increasing from T0 (each run of the bench starts past the
-- last), so that every point is learned.
-- POINTS=n sends n points a request into one stream per connection instead.
-- TARGET=baseline sends the same requests to /baseline-observe.
dofile(os.getenv("BENCH_DIR") .. "/wrk/common.lua")

local series = tonumber(os.getenv("SERIES") or "1")
local prefix = os.getenv("PREFIX") or "o"
local detector = os.getenv("DETECTOR") or "adaptive"
local points = tonumber(os.getenv("POINTS") or "1")
local baseline = os.getenv("TARGET") == "baseline"
local headers = { ["Content-Type"] = "application/json" }
local counter = 0

function setup(thread)
    counter = counter + 1
    thread:set("tid", counter)
end

local t0 = tonumber(os.getenv("T0") or "1700000000")
local t = t0
local conn = 0

function init(args)
    math.randomseed(os.time() * 1000 + (tid or 0))
    -- Threads start apart in time so that their points never collide.
    t = t0 + (tid or 0) * 10000000
end

function request()
    local path
    local body
    if points == 1 then
        t = t + 1
        local id = series == 1 and 0 or math.random(0, series - 1)
        body = string.format('{"timestamp":%d,"value":%.3f}', t, 50 + math.random() * 10)
        path = "/observe/" .. prefix .. id .. "?detector=" .. detector
    else
        conn = conn + 1
        local ts, vs = {}, {}
        for i = 1, points do
            t = t + 1
            ts[i] = tostring(t)
            vs[i] = string.format("%.3f", 50 + 10 * math.sin(t / 50) + math.random())
        end
        body = '{"timestamps":[' .. table.concat(ts, ",") .. '],"values":[' .. table.concat(vs, ",") .. ']}'
        path = "/observe/" .. prefix .. (tid or 0) .. "?detector=" .. detector
    end
    if baseline then path = "/baseline-observe/" .. prefix end
    return wrk.format("POST", path, headers, body)
end
