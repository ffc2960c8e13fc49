-- GET /links/{slug}/stats?start=&end= for random slugs from $BENCH_SLUGS and random
-- 30-day windows within the last $BENCH_DAYS days, authenticated with $BENCH_KEY.
package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
require("common")

local reqs = {}

function init(args)
  counts = {}
  math.randomseed(os.time() * 1000 + (tid or 0))
  local slugs = read_lines(os.getenv("BENCH_SLUGS"))
  local days = tonumber(os.getenv("BENCH_DAYS") or "365")
  local key = os.getenv("BENCH_KEY")
  local now = os.time()
  local h = { ["Authorization"] = "Bearer " .. key, ["Accept"] = "application/json" }
  -- 50,000 pre-built requests per thread (random slug, random window ending within the
  -- seeded range): ~100k distinct requests of the 336k possible, so the stats handler's
  -- 1,000-response cache answers ~1% of them, as with truly random traffic.
  for i = 1, 50000 do
    local slug = slugs[math.random(#slugs)]
    local endt = now - math.random(0, days - 30) * 86400
    local start = endt - 29 * 86400
    local path = string.format("/links/%s/stats?start=%s&end=%s", slug,
      os.date("!%Y-%m-%d", start), os.date("!%Y-%m-%d", endt))
    table.insert(reqs, wrk.format("GET", path, h))
  end
end

function request()
  return reqs[math.random(#reqs)]
end
