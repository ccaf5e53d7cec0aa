-- GET one URL (path and query in BENCH_PATH) over and over.
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")

local req

function init(args)
  req = wrk.format("GET", os.getenv("BENCH_PATH"), {})
end

function request()
  return req
end
