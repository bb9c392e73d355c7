# syntax=docker/dockerfile:1
# Multi-stage build: a static, cgo-free binary (SQLite is embedded WebAssembly)
# in a distroless image that runs as a non-root user.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG VERSION=dev
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" \
    -o /out/notificationservice ./cmd/notificationservice

FROM gcr.io/distroless/static-debian12:nonroot
WORKDIR /app
COPY --from=build /out/notificationservice /app/notificationservice
COPY config/config.yaml /app/config/config.yaml
# The embedded default keeps SQLite under ./data; mount a volume there, or set
# NOTIFY_DATABASE_URL to use PostgreSQL.
USER nonroot:nonroot
ENV NOTIFY_HTTP_ADDR=0.0.0.0:8080
EXPOSE 8080
ENTRYPOINT ["/app/notificationservice"]
CMD ["serve"]
