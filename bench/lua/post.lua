-- POST a fixed body round-robin over BENCH_STREAMS streams named
-- BENCH_PATH (one stream) or BENCH_PATH0 .. BENCH_PATH<n-1> (many).
-- Requests are formatted once in init(): request() must cost wrk nothing.
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")

local n = tonumber(os.getenv("BENCH_STREAMS") or "1")
local prefix = os.getenv("BENCH_PATH") or "/bench/a"
local ctype = os.getenv("BENCH_CONTENT_TYPE") or "application/octet-stream"
local body = os.getenv("BENCH_BODY") or string.rep("x", 100)
local reqs = {}
local i = 0

function init(args)
  for k = 1, n do
    local path = prefix
    if n > 1 then path = prefix .. (k - 1) end
    reqs[k] = wrk.format("POST", path, { ["Content-Type"] = ctype }, body)
  end
end

function request()
  i = i % n + 1
  return reqs[i]
end
