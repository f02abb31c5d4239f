# syntax=docker/dockerfile:1
# Two images from one build: node-cache (the per-node cache, lean) and
# lrpdns (controller and verify). Static binaries on distroless, non-root.
#   make image    # or: docker build --target node-cache .
ARG GO_VERSION=1.26
FROM golang:${GO_VERSION} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ENV CGO_ENABLED=0
RUN go build -trimpath -ldflags "-s -w -X github.com/lrpdns/lrpdns/internal/version.Version=${VERSION}" -o /out/node-cache ./cmd/node-cache \
 && go build -trimpath -ldflags "-s -w -X github.com/lrpdns/lrpdns/internal/version.Version=${VERSION}" -o /out/lrpdns ./cmd/lrpdns

FROM gcr.io/distroless/static-debian12:nonroot AS node-cache
COPY --from=build /out/node-cache /node-cache
USER 65532:65532
EXPOSE 5353/udp 5353/tcp 8080 8181 9253
ENTRYPOINT ["/node-cache"]

FROM gcr.io/distroless/static-debian12:nonroot AS lrpdns
COPY --from=build /out/lrpdns /lrpdns
USER 65532:65532
ENTRYPOINT ["/lrpdns"]
