# syntax=docker/dockerfile:1
# hop with its own PostgreSQL, in one image:
#   docker build -t hop --build-arg VERSION=$(git describe --tags --always) .
#   docker run -p 8080:8080 -v hop-data:/data --stop-timeout 30 hop
# The first start creates the database in the volume and logs a generated API key once
# (or pass -e HOP_API_KEY=...). The data survives `docker rm`; back it up with
# `docker exec CONTAINER hop backup /data/hop.dump`. With -e DATABASE_URL=... (and
# REDIS_URL=...) hop uses those servers instead: see docker-compose.yml.
# scripts/image-check.sh runs the same steps on a machine without Docker.

FROM golang:1.26 AS build
WORKDIR /src
# Modules first, so source edits do not invalidate the download layer.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG VERSION=dev
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X github.com/hop-dev/hop/app.Version=${VERSION}" \
      -o /out/hop .

# Alpine, because its PostgreSQL package leaves LLVM (JIT, off in hop's tuning) to a
# separate package: Debian's postgresql-15 alone pulls in some 400 MB. tini is PID 1 so
# that SIGTERM reaches hop alone (hop stops PostgreSQL after draining) and strays are reaped.
FROM alpine:3.21
ARG PG_MAJOR=15
# The server's directory is linked to one fixed path (checked here, so a package layout
# change fails the build, not the first start); the hop user owns /data, which a new
# named volume inherits.
RUN apk add --no-cache "postgresql${PG_MAJOR}" "postgresql${PG_MAJOR}-client" tini \
 && initdb="$(command -v initdb || echo "/usr/libexec/postgresql${PG_MAJOR}/initdb")" \
 && bin="$(dirname "$(readlink -f "$initdb")")" \
 && for t in initdb postgres pg_dump pg_restore pg_resetwal; do test -x "$bin/$t" || { echo "no $t in $bin" >&2; exit 1; }; done \
 && ln -s "$bin" /usr/local/lib/hop-pg \
 && adduser -D -H -u 10001 -s /sbin/nologin hop \
 && mkdir -p /data && chown hop:hop /data && chmod 700 /data
COPY --from=build /out/hop /usr/local/bin/hop
# Defaults only; every setting can be overridden by its environment variable
# (see config.yaml), or mount another file here.
COPY config.yaml /etc/hop/config.yaml
ENV HOP_CONFIG=/etc/hop/config.yaml \
    HOP_DATA_DIR=/data \
    HOP_PG_BINARIES=/usr/local/lib/hop-pg
VOLUME /data
EXPOSE 8080
USER hop:hop
# The first start runs initdb before hop answers: allow for it.
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 CMD ["hop", "health"]
ENTRYPOINT ["/sbin/tini", "--", "hop"]
CMD ["serve"]
