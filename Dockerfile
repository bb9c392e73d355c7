# syntax=docker/dockerfile:1
# Multi-stage build: a static, cgo-free binary (SQLite is embedded WebAssembly)
# in a distroless image that runs as a non-root user. Built as `make build`
# does: stripped (-s -w), -trimpath, and -tags nomsgpack (gin's MessagePack
# binding out; the service binds JSON only).
#   docker build --build-arg VERSION=$(git describe --tags --always) -t notificationservice .
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG VERSION=dev
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -tags nomsgpack -ldflags "-s -w -X main.version=${VERSION}" \
    -o /out/notificationservice ./cmd/notificationservice
# The embedded default keeps SQLite in ./data (/app/data); the runtime image
# has no shell to create it, so it is made here and handed to the non-root user.
RUN mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
WORKDIR /app
COPY --from=build /out/notificationservice /app/notificationservice
COPY config/config.yaml /app/config/config.yaml
# 65532 is distroless's nonroot user. Without PostgreSQL (NOTIFY_DATABASE_URL)
# the database lives here: mount a volume to keep it.
COPY --from=build --chown=65532:65532 /out/data /app/data
VOLUME /app/data
USER nonroot:nonroot
# Listen on every interface inside the container (the default is loopback).
# /healthz, /readyz and /metrics are on the same port. On this address serve
# refuses the built-in development secret: give the container your own with
#   docker run -e NOTIFY_AUTH_HMAC_SECRET=<at least 32 bytes> -e NOTIFY_WEBHOOKS_SECRET_KEY=<at least 32 bytes> ...
# (or NOTIFY_AUTH_ALLOW_DEV_SECRET=true for a throwaway demo; docs/configuration.md).
ENV NOTIFY_HTTP_ADDR=0.0.0.0:8080
EXPOSE 8080
# The image has no shell or curl: the binary probes itself (GET /healthz on
# http.addr; `healthcheck -ready` would probe /readyz instead).
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/app/notificationservice", "healthcheck", "-timeout", "4s"]
ENTRYPOINT ["/app/notificationservice"]
CMD ["serve"]
