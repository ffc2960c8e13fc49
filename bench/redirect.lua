-- GET /{slug} for random slugs from $BENCH_SLUGS (one per line) with browser headers;
-- half the requests carry a utm_* query string, which hop forwards to the target.
-- Usage: BENCH_SLUGS=slugs.txt [BENCH_HOST=go.example.com] wrk -t2 -c64 -d10s --latency -s bench/redirect.lua http://127.0.0.1:PORT
package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
require("common")

local agents = {
  "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
  "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
  "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
  "Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0",
  "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Mobile Safari/537.36",
}
local referers = { "https://news.ycombinator.com/", "https://www.google.com/", "https://t.co/abc", nil }

local reqs = {}

function init(args)
  counts = {}
  math.randomseed(os.time() * 1000 + (tid or 0))
  local slugs = read_lines(os.getenv("BENCH_SLUGS"))
  -- BENCH_HOST: the short domain the links are on, sent as the Host header.
  local host = os.getenv("BENCH_HOST")
  -- Pre-built requests: every slug with each browser profile.
  for i, slug in ipairs(slugs) do
    for j, ua in ipairs(agents) do
      local h = {
        ["User-Agent"] = ua,
        ["Accept"] = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        ["Accept-Language"] = "en-US,en;q=0.9",
      }
      if host and host ~= "" then h["Host"] = host end
      local ref = referers[(i + j) % #referers + 1]
      if ref then h["Referer"] = ref end
      local path = "/" .. slug
      if (i + j) % 2 == 0 then path = path .. "?utm_source=newsletter&utm_medium=email&utm_campaign=launch" end
      table.insert(reqs, wrk.format("GET", path, h))
    end
  end
end

function request()
  return reqs[math.random(#reqs)]
end
