-- Fits of POINTS points each, spread over 1000 series (bench_fit_0..999).
dofile(os.getenv("BENCH_DIR") .. "/wrk/common.lua")

local points = tonumber(os.getenv("POINTS") or "1000")
local headers = { ["Content-Type"] = "application/json" }
local body

function init(args)
    math.randomseed(os.time())
    local ts, vs = {}, {}
    for i = 1, points do
        ts[i] = tostring(1700000000 + i * 60)
        vs[i] = string.format("%.4f", 100 + math.random() * 10)
    end
    body = '{"timestamps":[' .. table.concat(ts, ",") .. '],"values":[' .. table.concat(vs, ",") .. ']}'
end

function request()
    return wrk.format("POST", "/fit/bench_fit_" .. math.random(0, 999), headers, body)
end
