#!/usr/bin/env bash
# hop load benchmarks: redirect throughput vs a bare Echo 302 baseline (every click
# accounted for), end-to-end ingest rate and lag drain, the stats endpoint with 100k and
# 10M raw clicks, click-to-stats freshness. Called by `make bench` after `make build`.
# Prints figures (never pass/fail) and writes them to bench/results/<timestamp>.txt.
#
# Needs Go, wrk, and PostgreSQL + Redis on 127.0.0.1 (make services). Settings:
#   BENCH_QUICK=1          ~2-minute smoke version
#   BENCH_DURATION=10s     wrk duration per run          BENCH_RUNS=3   alternating runs
#   BENCH_RAW_ROWS=N       raw clicks for the stats bench (default 10,000,000; quick 200,000)
#   BENCH_SCENARIOS=redirect,freshness,ingest,stats      BENCH_KEEP=1  keep databases and keys
#   BENCH_DATABASE_URL, BENCH_REDIS_URL                  (defaults: the local services)
#   BENCH_HOP=path         hop binary (default bin/hop)
#   BENCH_EMBEDDED=1       hop on its embedded PostgreSQL (no DATABASE_URL)   BENCH_NO_REDIS=1  hop without Redis
#   BENCH_HOST=go.example.com  redirect links on this branded domain, requests with its Host
#   BENCH_LIVE_CLIENTS=100 clients on /live, BENCH_WEBHOOK=1 one webhook, attached during the hop runs
#   BENCH_LIVE_PER_LINK=1  each of those clients on one link's feed instead of every click
# See bench/README.md.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

for tool in go wrk; do
  command -v "$tool" >/dev/null 2>&1 || { echo "bench: $tool is not installed" >&2; exit 1; }
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/hopbench.XXXXXX")
if [ "${BENCH_KEEP:-}" = 1 ]; then
  trap 'echo "bench: logs kept in $tmp" >&2' EXIT
else
  trap 'rm -rf "$tmp"' EXIT
fi

hop=${BENCH_HOP:-$root/bin/hop}
if [ ! -x "$hop" ]; then
  echo "bench: $hop missing (run make build); building hop into $tmp" >&2
  hop=$tmp/hop
  CGO_ENABLED=0 go build -trimpath -o "$hop" .
fi
echo "bench: building helpers into $tmp" >&2
go build -o "$tmp/bare" ./bench/bare
go build -o "$tmp/hopbench" ./bench/hopbench

"$tmp/hopbench" -root "$root" -hop "$hop" -bare "$tmp/bare" -lua "$root/bench" \
  -results "$root/bench/results" -tmp "$tmp"
