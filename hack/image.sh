#!/usr/bin/env bash
# Builds the two images from the Dockerfile, as users do:
#   $IMAGE_REPO/node-cache:$IMAGE_TAG and $IMAGE_REPO/lrpdns:$IMAGE_TAG
# Needs a Docker engine (DOCKER_HOST; make e2e starts one where none answers,
# hack/docker.sh). Where the Dockerfile's base images cannot be had (no
# registry) it builds local ones (hack/local-bases.sh) and hands them in as
# build args, with the modules vendored into the build context, so the
# build needs no network; the Dockerfile is the same.
#   BUILDER_IMAGE=... BASE_IMAGE=...   use these bases
set -o errexit -o nounset -o pipefail
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"
IMAGE_REPO=${IMAGE_REPO:-ghcr.io/lrpdns}
IMAGE_TAG=${IMAGE_TAG:-$VERSION}
if ! docker info >/dev/null 2>&1; then
  echo "image: no Docker engine answers 'docker info'; make image needs one (make build builds the binaries without it; as root, hack/docker.sh up starts one)" >&2
  exit 1
fi
args=(--build-arg "VERSION=$VERSION")
ctx=.
have() { docker image inspect "$1" >/dev/null 2>&1 || timeout 60 docker pull -q "$1" >/dev/null 2>&1; }
if [[ -z "${BUILDER_IMAGE:-}${BASE_IMAGE:-}" ]] && ! { have golang:1.26 && have gcr.io/distroless/static-debian12:nonroot; }; then
  echo "image: the Dockerfile's base images cannot be had here; building local ones (hack/local-bases.sh)" >&2
  eval "$(hack/local-bases.sh)"
fi
if [[ -n "${BUILDER_IMAGE:-}" ]]; then args+=(--build-arg "BUILDER_IMAGE=$BUILDER_IMAGE"); fi
if [[ -n "${BASE_IMAGE:-}" ]]; then args+=(--build-arg "BASE_IMAGE=$BASE_IMAGE"); fi
if [[ -n "${BUILDER_IMAGE:-}" ]]; then
  # The build cannot reach the module proxy: the modules go in the context.
  ctx=$(mktemp -d)
  trap 'rm -rf "$ctx"' EXIT
  git ls-files -z --cached --others --exclude-standard | xargs -0 -I{} cp --parents -P {} "$ctx/" 2>/dev/null || true
  cp .dockerignore "$ctx/"
  go mod vendor -o "$ctx/vendor"
  args+=(--build-arg GOFLAGS=-mod=vendor)
fi
for target in node-cache lrpdns; do
  DOCKER_BUILDKIT=1 docker build -q --target "$target" "${args[@]}" -t "$IMAGE_REPO/$target:$IMAGE_TAG" "$ctx" >/dev/null
  # The image runs as shipped (its user, its entrypoint) and says what it is.
  got=$(docker run --rm --network none "$IMAGE_REPO/$target:$IMAGE_TAG" --version 2>&1) ||
    { echo "image: docker run $IMAGE_REPO/$target:$IMAGE_TAG --version failed: $got" >&2; exit 1; }
  [[ "$got" == *"$VERSION"* ]] || { echo "image: $target --version printed '$got', want version $VERSION" >&2; exit 1; }
  echo "image: $IMAGE_REPO/$target:$IMAGE_TAG ($(docker image inspect -f '{{.Size}}' "$IMAGE_REPO/$target:$IMAGE_TAG" | awk '{printf "%.1f MB", $1/1e6}')): $got" >&2
done
