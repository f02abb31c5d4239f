# Two images from one build: node-cache (the per-node cache) and lrpdns
# (controller and verify). Static binaries on distroless, non-root.
#   make image    # or: docker build --target node-cache .
#
# Offline (no registry, no module proxy in the build), the base images come
# as build args and the modules as vendor/ in the context, which is how
# make image and make e2e build here:
#   --build-arg BUILDER_IMAGE=... --build-arg BASE_IMAGE=... --build-arg GOFLAGS=-mod=vendor
ARG BUILDER_IMAGE=golang:1.26
ARG BASE_IMAGE=gcr.io/distroless/static-debian12:nonroot

FROM --platform=$BUILDPLATFORM ${BUILDER_IMAGE} AS build
WORKDIR /src
ARG GOFLAGS=
COPY go.mod go.sum ./
RUN case " $GOFLAGS " in *" -mod=vendor "*) ;; *) go mod download ;; esac
COPY . .
ARG VERSION=dev
ARG TARGETOS=linux
ARG TARGETARCH
ENV CGO_ENABLED=0
RUN --mount=type=cache,target=/root/.cache/go-build \
    export GOOS=$TARGETOS GOARCH=$TARGETARCH \
 && go build -trimpath -ldflags "-s -w -X github.com/lrpdns/lrpdns/internal/version.Version=${VERSION}" -o /out/node-cache ./cmd/node-cache \
 && go build -trimpath -ldflags "-s -w -X github.com/lrpdns/lrpdns/internal/version.Version=${VERSION}" -o /out/lrpdns ./cmd/lrpdns

FROM ${BASE_IMAGE} AS node-cache
COPY --from=build /out/node-cache /node-cache
USER 65532:65532
EXPOSE 5353/udp 5353/tcp 8080 8181 9253
ENTRYPOINT ["/node-cache"]

FROM ${BASE_IMAGE} AS lrpdns
COPY --from=build /out/lrpdns /lrpdns
USER 65532:65532
ENTRYPOINT ["/lrpdns"]
