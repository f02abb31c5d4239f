#!/usr/bin/env bash
# Builds the two images (needs a Docker engine):
#   $IMAGE_REPO/node-cache:$IMAGE_TAG and $IMAGE_REPO/lrpdns:$IMAGE_TAG
set -o errexit -o nounset -o pipefail
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"
IMAGE_REPO=${IMAGE_REPO:-ghcr.io/lrpdns}
IMAGE_TAG=${IMAGE_TAG:-$VERSION}
if ! docker info >/dev/null 2>&1; then
  echo "image: no Docker engine answers 'docker info'; make image needs one (make build builds the binaries without it)" >&2
  exit 1
fi
for target in node-cache lrpdns; do
  docker build --target "$target" --build-arg VERSION="$VERSION" -t "$IMAGE_REPO/$target:$IMAGE_TAG" .
done
