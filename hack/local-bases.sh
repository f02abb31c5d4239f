#!/usr/bin/env bash
# Builds, where no registry can be reached, the two base images our
# Dockerfile starts from, and prints the build args that name them:
#   BUILDER_IMAGE=lrpdns.local/golang:GOVERSION   Debian minbase (hack/rootfs.sh,
#     the same root filesystem as the suite's glibc client) with this
#     machine's Go toolchain in /usr/local/go, in place of golang:1.26; the
#     build needs no git or certificates, the modules come vendored
#   BASE_IMAGE=lrpdns.local/static:nonroot        hack/static-image.sh's base,
#     user 65532, in place of gcr.io/distroless/static-debian12:nonroot
# Cached by content. Needs a Docker engine and root.
set -o errexit -o nounset -o pipefail
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"
goroot=$(go env GOROOT) gover=$(go env GOVERSION)
builder=lrpdns.local/golang:${gover#go}
rootfs=$(hack/rootfs.sh "")
key=$( { echo "$rootfs"; sed -n '/^# --- builder ---$/,$p' "$0"; cat "$goroot/VERSION"; } | sha256sum | cut -c1-16)
if [[ "$(docker image inspect -f '{{index .Config.Labels "lrpdns.local/key"}}' "$builder" 2>/dev/null)" != "$key" ]]; then
  # --- builder ---
  echo "local-bases: building $builder (Debian and $goroot)" >&2
  dir=$LRPDNS_CACHE/build/golang-image
  rm -rf "$dir"; mkdir -p "$dir/usr/local"
  tar -C "$dir" -xf "$rootfs"
  cp -a "$goroot" "$dir/usr/local/go"
  rm -rf "$dir/usr/local/go/pkg/obj" "$dir/usr/local/go/.git"
  mkdir -p "$dir/go"
  tar --sort=name --numeric-owner -C "$dir" -c . | docker import --change "LABEL lrpdns.local/key=$key" \
    --change 'ENV PATH=/go/bin:/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV GOPATH=/go GOTOOLCHAIN=local' --change 'WORKDIR /go' - "$builder" >/dev/null
  rm -rf "$dir"
fi
echo "BUILDER_IMAGE=$builder"
echo "BASE_IMAGE=$(USER_ID=65532 hack/static-image.sh lrpdns.local/static:nonroot)"
