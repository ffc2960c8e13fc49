#!/usr/bin/env bash
# Runs the container image's steps on this machine, for where there is no Docker daemon:
# builds hop as the Dockerfile does, links PostgreSQL's binaries to one directory as the
# image does, and runs hop as an unprivileged user with the image's environment
# (HOP_CONFIG, HOP_DATA_DIR, HOP_PG_BINARIES) and health check. Then it checks what
# `docker run -p 8080:8080 -v hop-data:/data hop` promises: the first start logs a
# generated API key once, links redirect and count, the data survives a stop and a new
# run on the same directory (docker rm + run), SIGTERM leaves no process, HOP_API_KEY is
# taken instead of generating one, and `hop backup` works beside the running server.
# It prints the time to the first 302 and the memory of hop plus its PostgreSQL.
#
#   scripts/image-check.sh [DATA_DIR]     (default: a new directory under /tmp, removed after)
#
# Env: IMAGE_CHECK_PORT (default 18080), IMAGE_CHECK_USER (when run as root; default
# nobody: the image's user is an ordinary account without a home).
set -euo pipefail
cd "$(dirname "$0")/.."

port=${IMAGE_CHECK_PORT:-18080}
work=$(mktemp -d /tmp/hop-image.XXXXXX)
chmod 755 "$work"
data=${1:-}
own_data=0
if [ -z "$data" ]; then data="$work/data"; own_data=1; fi
pid=""

cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill -TERM "$pid"; wait "$pid" || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "image-check: FAIL: $*" >&2; [ -f "$work/hop.log" ] && tail -n 30 "$work/hop.log" >&2; exit 1; }
step() { echo "image-check: $*"; }

# --- build stage: static binary, as in the Dockerfile ---
step "building a static hop (CGO_ENABLED=0 -trimpath)"
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X github.com/hop-dev/hop/app.Version=image-check" -o "$work/hop" .
if ldd "$work/hop" >/dev/null 2>&1; then fail "hop is dynamically linked"; fi
chmod 755 "$work/hop"

# --- final stage: PostgreSQL's directory linked to one path, checked ---
initdb=$(command -v initdb || ls -d /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n1 || true)
[ -n "$initdb" ] || fail "no initdb: install PostgreSQL's server package (Debian: postgresql)"
bin=$(dirname "$(readlink -f "$initdb")")
for t in initdb postgres pg_dump pg_restore pg_resetwal; do [ -x "$bin/$t" ] || fail "no $t in $bin"; done
ln -s "$bin" "$work/hop-pg"
mkdir -p "$work/etc/hop" && cp config.yaml "$work/etc/hop/config.yaml" && chmod -R a+rX "$work/etc"
step "PostgreSQL binaries: $bin ($("$bin/postgres" --version))"

# USER hop: an unprivileged account owns the data directory (the image's /data, 0700).
if [ "$(id -u)" = 0 ]; then
  user=${IMAGE_CHECK_USER:-nobody}
  id "$user" >/dev/null || fail "no user $user"
  as=(setpriv --reuid="$user" --regid="$(id -g "$user")" --clear-groups --)
else
  user=$(id -un); as=()
fi
mkdir -p "$data" && chmod 700 "$data"
[ "$(id -u)" = 0 ] && chown "$user:$(id -g "$user")" "$data"
step "running as $user with HOP_DATA_DIR=$data"

hopenv=(env -i PATH=/usr/local/bin:/usr/bin:/bin
  HOP_CONFIG="$work/etc/hop/config.yaml" HOP_DATA_DIR="$data" HOP_PG_BINARIES="$work/hop-pg"
  HOP_ADDR=":$port" HOP_LOG_FORMAT=json
  HOP_RATE_LIMIT_REDIRECT=100-S) # the check sends its redirects from one address faster than the default 10-S
url="http://127.0.0.1:$port"

# start [ENV=VALUE...]: like `docker run`, then wait as the HEALTHCHECK would (start-period 60s).
start() {
  : >"$work/hop.log"
  "${as[@]}" "${hopenv[@]}" "$@" "$work/hop" serve >>"$work/hop.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 600); do
    "${as[@]}" "${hopenv[@]}" "$work/hop" health >/dev/null 2>&1 && return 0
    kill -0 "$pid" 2>/dev/null || fail "hop exited during start-up"
    sleep 0.1
  done
  fail "hop not healthy within 60s"
}

# stop: `docker stop` sends SIGTERM; then nothing may be left running on the data.
stop() {
  kill -TERM "$pid"
  wait "$pid" || fail "hop exited with an error after SIGTERM"
  pid=""
  for p in /proc/[0-9]*; do
    [ "$(readlink "$p/cwd" 2>/dev/null)" = "$(readlink -f "$data/pg")" ] && fail "process ${p#/proc/} still runs on $data/pg"
  done
  return 0
}

# mem FIELD: the sum of FIELD (Rss, or Pss, which splits shared pages such as
# shared_buffers between the processes using them) over hop and its PostgreSQL.
mem() {
  local total=0 n p pg
  pg=$(readlink -f "$data/pg")
  for p in "/proc/$pid" /proc/[0-9]*; do
    if [ "$p" = "/proc/$pid" ] || [ "$(readlink "$p/cwd" 2>/dev/null)" = "$pg" ]; then
      n=$(awk -v f="$1:" '$1 == f {print $2}' "$p/smaps_rollup" 2>/dev/null || true); total=$((total + ${n:-0}))
    fi
  done
  echo "$((total / 1024))"
}

ua='Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0'
clicks() { for _ in $(seq 1 "$2"); do
  code=$(curl -s -o /dev/null -w '%{http_code}' -A "$ua" "$url/$1"); [ "$code" = 302 ] || fail "GET /$1 answered $code"
done; }
total_clicks() { curl -sf -H "Authorization: Bearer $key" "$url/links/$1/stats" | sed -n 's/.*"total_clicks":\([0-9]*\).*/\1/p'; }
wait_clicks() { for _ in $(seq 1 300); do [ "$(total_clicks "$1")" = "$2" ] && return 0; sleep 0.1; done
  fail "stats of $1 show $(total_clicks "$1") clicks, want $2"; }

# --- first run on an empty volume ---
[ -z "$(ls -A "$data")" ] || fail "$data is not empty"
t0=$(date +%s%N)
start
key=$(sed -n 's/.*GENERATED ONE.*"api_key":"\([^"]*\)".*/\1/p' "$work/hop.log")
[ -n "$key" ] || fail "the first start did not log a generated API key"
slug=$(curl -sf -H "Authorization: Bearer $key" -H 'Content-Type: application/json' \
  -d '{"url":"https://example.com/image-check"}' "$url/links" | sed -n 's/.*"slug":"\([^"]*\)".*/\1/p')
[ -n "$slug" ] || fail "could not create a link"
clicks "$slug" 1
t1=$(date +%s%N)
step "first start: API key logged once; time from start to the first 302: $(( (t1 - t0) / 1000000 )) ms"
clicks "$slug" 19
wait_clicks "$slug" 20
step "20 redirects answered and counted; memory of hop + its PostgreSQL: PSS $(mem Pss) MiB (RSS summed $(mem Rss) MiB)"
"${as[@]}" "${hopenv[@]}" "$work/hop" backup "$data/check.dump" >/dev/null || fail "hop backup beside the running hop"
step "hop backup beside the running server: $(stat -c %s "$data/check.dump") bytes"
rm -f "$data/check.dump"
stop
step "SIGTERM: hop and its PostgreSQL stopped, nothing left running"

# --- docker rm + docker run with the same volume ---
t0=$(date +%s%N)
start
t1=$(date +%s%N)
grep -q "GENERATED ONE" "$work/hop.log" && fail "the second start generated another API key"
clicks "$slug" 1
wait_clicks "$slug" 21
step "re-run on the same data: healthy after $(( (t1 - t0) / 1000000 )) ms, link and counts kept, no new API key"
stop

# --- a fresh volume with HOP_API_KEY ---
if [ "$own_data" = 1 ]; then
  data="$work/data2"; mkdir -p "$data" && chmod 700 "$data"
  [ "$(id -u)" = 0 ] && chown "$user:$(id -g "$user")" "$data"
  hopenv=("${hopenv[@]/HOP_DATA_DIR=*/HOP_DATA_DIR=$data}")
  start HOP_API_KEY=image-check-key-0123456789abcdef0123456789
  grep -q "GENERATED ONE" "$work/hop.log" && fail "an API key was generated although HOP_API_KEY was set"
  curl -sf -o /dev/null -H "Authorization: Bearer image-check-key-0123456789abcdef0123456789" "$url/links" || fail "HOP_API_KEY not accepted"
  step "HOP_API_KEY taken on a fresh volume; nothing generated"
  stop
fi
step "OK"
