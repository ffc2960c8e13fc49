# syntax=docker/dockerfile:1
# hop: a static binary on distroless, running as non-root.
#   docker build -t hop --build-arg VERSION=$(git describe --tags --always) .
#   docker run -p 8080:8080 -e DATABASE_URL=... -e REDIS_URL=... -e HOP_API_KEY=... hop

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

# static-debian12 has CA certificates and /etc/passwd, and no shell: `hop health`
# replaces curl in the health check. Time zones and GeoIP data are embedded in hop.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/hop /hop
# Defaults only; every setting can be overridden by its environment variable
# (see config.yaml), or mount another file here.
COPY config.yaml /etc/hop/config.yaml
ENV HOP_CONFIG=/etc/hop/config.yaml
EXPOSE 8080
USER nonroot:nonroot
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 CMD ["/hop", "health"]
ENTRYPOINT ["/hop"]
CMD ["serve"]
