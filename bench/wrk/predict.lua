-- Predictions over SERIES series named s0..s<SERIES-1>, random series and
-- values per request. TARGET=baseline sends the same requests to /baseline.
-- LOCATION=/predict-alert/ sends them to another predict location; VALUE=100
-- sends that value every time instead of random ones.
dofile(os.getenv("BENCH_DIR") .. "/wrk/common.lua")

local series = tonumber(os.getenv("SERIES") or "1")
local fixed = os.getenv("ID")  -- one series by name (a forest), instead of s0..
local baseline = os.getenv("TARGET") == "baseline"
local location = os.getenv("LOCATION") or "/predict/"
local value = os.getenv("VALUE")
local headers = { ["Content-Type"] = "application/json" }
local counter = 0

function setup(thread)
    counter = counter + 1
    thread:set("seed", counter)
end

function init(args)
    math.randomseed(os.time() * 1000 + (seed or 0))
end

function request()
    local id = series == 1 and 0 or math.random(0, series - 1)
    local body = string.format('{"timestamp":"1700000000","value":%.3f}',
                               value and tonumber(value) or 50 + math.random() * 10)
    local name = fixed or ("s" .. id)
    local path = baseline and ("/baseline/" .. name) or (location .. name)
    return wrk.format("POST", path, headers, body)
end
