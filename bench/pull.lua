-- wrk script: rotate over the instances listed in $BENCH_TOKENS ("id token etag" per line).
-- With BENCH_MODE=304 it sends If-None-Match (the unchanged-poll path), else a full pull.
-- With BENCH_DELAY_MS each connection waits that long between requests (a paced load).
local instances = {}
local index = 0
local mode = os.getenv("BENCH_MODE") or "200"
local pause = tonumber(os.getenv("BENCH_DELAY_MS") or "0")

function init(args)
  for line in io.lines(os.getenv("BENCH_TOKENS")) do
    local id, token, etag = line:match("(%S+) (%S+) (%S+)")
    instances[#instances + 1] = {id = id, token = token, etag = etag}
  end
  index = math.random(#instances)
end

function request()
  index = index % #instances + 1
  local instance = instances[index]
  local headers = {["Authorization"] = "Bearer " .. instance.token}
  if mode == "304" then headers["If-None-Match"] = instance.etag end
  return wrk.format("GET", "/api/v1/instances/" .. instance.id .. "/config?format=env", headers)
end

if pause > 0 then
  function delay()
    return pause
  end
end
